"""`rompy-tasks ensemble`: run an ensemble (`ensemble FILE`), or validate one and every member."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from flows.cli.common import SetOption, connect_api, err, invalid, out, run_flow, valid
from rompy_tasks.core.errors import ConfigError


class RunsByDefault(TyperGroup):
    """A command group whose first argument may be a file: `ensemble FILE` runs it (the `run`
    subcommand), while `ensemble validate FILE` validates, as `forecast validate` does."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=RunsByDefault,
    no_args_is_help=True,
    help="Ensembles: `ensemble FILE` runs one, `ensemble validate FILE` checks it",
)


@app.command("run")
def ensemble(
    file: Annotated[Path, typer.Argument(help="Ensemble YAML/JSON file")],
    set_: SetOption = None,
    indexes: Annotated[str | None, typer.Option(help="Members to run, e.g. 0,3-5")] = None,
    max_parallel: Annotated[int | None, typer.Option(min=1, help="Members running at once")] = None,
) -> None:
    """Run an ensemble: many members of one pipeline, resuming completed ones.

    The terminal shows progress, warnings and errors; every member's log lines go to the
    Prefect UI and to its run directory (`-v`, the global option, prints them here as well).
    """
    from rompy_tasks.ensemble import load_ensemble, parse_indexes

    try:
        config, members = load_ensemble(file, set_)
        selected = parse_indexes(indexes) if indexes else None
        if selected is not None and (bad := [i for i in selected if i >= len(members)]):
            raise ConfigError.single("--indexes", f"{bad} outside 0..{len(members) - 1}")
    except ConfigError as error:
        raise invalid(error) from None

    connect_api()
    from flows.ensemble import model_ensemble
    from flows.progress import ensemble_progress

    run_ids = [m.run_id for m in members if selected is None or m.index in selected]
    result = run_flow(
        lambda **kw: model_ensemble(ensemble=config, indexes=selected, max_parallel=max_parallel, **kw),
        f"rompy-tasks ensemble: {config.name} ({len(members)} members)",
        f"Ensemble {config.name}",
        ensemble_progress(err, run_ids),
        quiet=True,
    )
    table = Table("member", "run id", "status", "attempts", "seconds", title=f"Ensemble {config.name}")
    for m in result.members:
        seconds = f"{m.duration_seconds:.1f}" if m.duration_seconds is not None else ""
        table.add_row(str(m.index), m.run_id, m.status, str(m.attempts), seconds)
    out.print(table)
    out.print(f"Ensemble directory: {result.ensemble_dir}")


@app.command("validate")
def ensemble_validate(
    file: Annotated[Path, typer.Argument(help="Ensemble YAML/JSON file")],
    set_: SetOption = None,
) -> None:
    """Validate an ensemble file and every member; list every problem with its field path."""
    from rompy_tasks.ensemble import load_ensemble

    config, members = valid(load_ensemble, file, set_)
    out.print(
        f"[green]valid[/]: ensemble {config.name}, {len(members)} member(s) "
        f"({', '.join(m.run_id for m in members[:5])}{', ...' if len(members) > 5 else ''}), "
        f"model {config.pipeline.config.config.model_type} on {config.pipeline.backend.type}",
        soft_wrap=True,
    )
