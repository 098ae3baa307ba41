"""`rompy-tasks cache`: the static inputs' cache (show, prune)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.common import out, valid

app = typer.Typer(no_args_is_help=True, help="The cache of static inputs fetched by URI (show, prune)")
CacheDirOption = Annotated[
    Path | None, typer.Option("--cache-dir", help="The cache (default: ROMPY_TASKS_CACHE_DIR or the data directory)")
]


@app.command("show")
def cache_show(cache_dir: CacheDirOption = None) -> None:
    """Every cached source version, least recently used first, and the total size."""
    from rompy_tasks.inputs import cache_dir as find_cache
    from rompy_tasks.inputs import cached_entries, max_cache_bytes

    cache = valid(find_cache, cache_dir)
    table = Table("source", "sha256", "MB", "fetched", "last used", title=f"Cache {escape(str(cache))}")
    entries = cached_entries(cache)
    for _, entry in entries:
        table.add_row(
            escape(entry.uri),
            entry.sha256[:12],
            f"{entry.size / 1e6:.1f}",
            f"{entry.fetched:%Y-%m-%d %H:%M}",
            f"{entry.used:%Y-%m-%d %H:%M}",
        )
    out.print(table)
    total = sum({blob.sha256: blob.size for _, e in entries for blob in e.blobs()}.values())
    out.print(f"{len(entries)} source version(s), {total / 1e6:.1f} MB of {max_cache_bytes() / 1e9:.1f} GB allowed")


@app.command("prune")
def cache_prune(
    cache_dir: CacheDirOption = None,
    max_size_gb: Annotated[float, typer.Option("--max-size-gb", min=0, help="Keep at most this much")] = 0.0,
) -> None:
    """Remove the least recently used entries until the cache holds at most --max-size-gb (0: empty it).

    Run directories keep their inputs (each has its own copy)."""
    from rompy_tasks.inputs import cache_dir as find_cache
    from rompy_tasks.inputs import prune

    removed = prune(valid(find_cache, cache_dir), int(max_size_gb * 1024**3))
    for entry in removed:
        out.print(f"removed {escape(entry.uri)} ({entry.sha256[:12]}, {entry.size / 1e6:.1f} MB)", soft_wrap=True)
    out.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}")
