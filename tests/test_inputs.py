"""Static inputs by URI (issue 25.1): fetched once into a cache, linked read-only into each run.

Real servers on loopback (nginx over HTTP, moto's S3 API) and the user's command in a fresh process.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import shell_doc, shell_ensemble_doc, write_yaml

from rompy_tasks.inputs import StaticInput, cache_dir, fetch, place

BATHY = os.urandom(3 * 1024 * 1024)  # a 3 MiB "bathymetry"
SHA = hashlib.sha256(BATHY).hexdigest()


def _pipeline(tmp_path: Path, source: str, run_id: str = "r", **extra) -> Path:
    doc = shell_doc(tmp_path, ["sh", "-c", "sha256sum bathy.nc > seen.txt"], run_id=run_id)
    doc["inputs"] = [{"id": "bathy", "source": source, **extra}]
    doc["cache_dir"] = str(tmp_path / "cache")
    return write_yaml(tmp_path / f"{run_id}.yaml", doc)


def test_an_ensemble_fetches_a_shared_input_once_over_http(tmp_path, http_server, prefect_api):
    from services import served_requests

    www, url, log = http_server
    (www / "bathy.nc").write_bytes(BATHY)
    doc = shell_ensemble_doc(tmp_path, ["sh", "-c", "sha256sum bathy.nc > seen.txt"], {"n": 4}, max_parallel=4)
    doc["pipeline"]["inputs"] = [{"id": "bathy", "source": f"{url}/bathy.nc", "sha256": SHA}]
    doc["pipeline"]["cache_dir"] = str(tmp_path / "cache")
    ran = run_cli("ensemble", str(write_yaml(tmp_path / "ens.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert ran.returncode == 0, ran.stderr[-3000:]
    bodies = [sent for status, sent, _ in served_requests(log) if sent > 0]
    assert sum(bodies) == len(BATHY), f"the file came once for four members: {served_requests(log)}"
    blob = tmp_path / "cache" / "blobs" / SHA
    for member in range(4):
        run_dir = tmp_path / "runs" / "ens" / f"m_m{member:03d}"
        placed = run_dir / "bathy.nc"
        assert placed.stat().st_ino != blob.stat().st_ino, "the run's own copy, no inode shared with the cache"
        assert placed.stat().st_mode & 0o777 == 0o444 and not placed.is_symlink()
        assert (run_dir / "seen.txt").read_text().startswith(SHA), "the model read the file"
        manifest = json.loads((run_dir / "rompy_tasks_run.json").read_text())
        assert manifest["inputs"] == [{"id": "bathy", "uri": f"{url}/bathy.nc", "sha256": SHA, "path": "bathy.nc"}]


# A model that updates its input in place and hides it: same size, mode and modification time restored.
REWRITE_INPUT = """
import os, sys
path = "bathy.nc"
before = os.stat(path)
os.chmod(path, 0o644)
with open(path, "r+b") as handle:
    data = handle.read()
    handle.seek(0)
    handle.write(data[::-1])
os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
os.chmod(path, 0o444)
"""


def test_a_model_that_rewrites_its_input_changes_only_its_own_copy(tmp_path):
    """Issue 36.1: the cached bytes that later runs, members and cycles trust stay what was pinned."""
    source = tmp_path / "bathy.nc"
    source.write_bytes(BATHY)
    doc = shell_doc(tmp_path, ["python3", "-c", REWRITE_INPUT], run_id="writer")
    doc["inputs"] = [{"id": "bathy", "source": str(source), "sha256": SHA}]
    doc["cache_dir"] = str(tmp_path / "cache")
    ran = run_cli("run", str(write_yaml(tmp_path / "writer.yaml", doc)))
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (tmp_path / "runs" / "writer" / "bathy.nc").read_bytes() == BATHY[::-1], "the model did rewrite it"
    blob = tmp_path / "cache" / "blobs" / SHA
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == SHA, "the cache still holds the pinned bytes"
    ran = run_cli("run", str(_pipeline(tmp_path, str(source), run_id="reader", sha256=SHA)))
    assert ran.returncode == 0, ran.stderr[-3000:]
    reader = tmp_path / "runs" / "reader"
    assert (reader / "seen.txt").read_text().startswith(SHA), "the next run read the pinned bytes"
    assert json.loads((reader / "rompy_tasks_run.json").read_text())["inputs"][0]["sha256"] == SHA


def test_a_wrong_checksum_fails_the_run_and_keeps_nothing(tmp_path, http_server, prefect_api):
    www, url, _ = http_server
    (www / "bathy.nc").write_bytes(BATHY)
    path = _pipeline(tmp_path, f"{url}/bathy.nc", sha256="0" * 64)
    ran = run_cli("run", str(path), env={"PREFECT_API_URL": prefect_api})
    assert ran.returncode == 1 and f"has sha256 {SHA}, not the {'0' * 64} given" in ran.stderr, ran.stderr[-2000:]
    assert not list((tmp_path / "cache" / "blobs").iterdir()), "nothing of it cached"
    assert not (tmp_path / "runs" / "r" / "logs" / "run.log").exists(), "no model ran"


def test_a_changed_source_or_a_damaged_cache_entry_is_fetched_again(tmp_path):
    source = tmp_path / "bathy.nc"
    source.write_bytes(BATHY)
    cache = cache_dir(tmp_path / "cache")
    item = StaticInput(id="bathy", source=str(source))
    first = fetch(item, cache)
    assert fetch(item, cache).fetched == first.fetched, "the same version is not fetched twice"
    blob = cache / "blobs" / first.sha256
    os.chmod(blob, 0o644)
    blob.write_bytes(b"damaged")  # e.g. a model that wrote through its link (as root, permissions do not stop it)
    again = fetch(item, cache)
    assert again.fetched > first.fetched and blob.read_bytes() == BATHY, "a damaged entry is never used"
    source.write_bytes(BATHY[::-1])
    changed = fetch(item, cache)
    assert changed.sha256 == hashlib.sha256(BATHY[::-1]).hexdigest()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert place(item, changed, cache, run_dir).read_bytes() == BATHY[::-1]


def test_an_input_from_s3(tmp_path, s3, prefect_api):
    import s3fs

    s3fs.S3FileSystem().pipe("data/grids/bathy.nc", BATHY)
    ran = run_cli("run", str(_pipeline(tmp_path, "s3://data/grids/bathy.nc")), env={"PREFECT_API_URL": prefect_api})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert (tmp_path / "runs" / "r" / "seen.txt").read_text().startswith(SHA)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"source": "https://example.org/"}, "names no file"),
        ({"source": "x.nc", "sha256": "abc"}, "inputs[0].sha256"),
        ({"source": "x.nc", "unknown": 1}, "inputs[0].unknown"),
        ({"source": "foo://host/bathy.nc"}, "inputs[0].source: Value error, unknown URL scheme 'foo'"),
    ],
)
def test_bad_inputs_are_invalid_with_their_field_path(tmp_path, entry, message):
    doc = shell_doc(tmp_path, "true")
    doc["inputs"] = [entry]
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_the_cache_is_bounded_least_recently_used_first_and_the_cache_command_shows_and_prunes_it(tmp_path):
    cache = cache_dir(tmp_path / "cache")
    sources = []
    for k in range(3):
        source = tmp_path / f"grid{k}.nc"
        source.write_bytes(os.urandom(1024 * 1024))
        sources.append(StaticInput(id=f"g{k}", source=str(source)))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    placed = place(sources[0], fetch(sources[0], cache), cache, run_dir)
    for item in sources[1:]:
        fetch(item, cache)
    fetch(sources[1], cache)  # used again: now the least recently used is grid0, then grid2
    from rompy_tasks.inputs import prune

    removed = prune(cache, 2 * 1024 * 1024)
    assert [Path(e.uri).name for e in removed] == ["grid0.nc"]
    assert placed.read_bytes() == (tmp_path / "grid0.nc").read_bytes(), "a run's input outlives its cache entry"
    shown = run_cli("cache", "show", "--cache-dir", str(cache), env={"COLUMNS": "200"})
    assert shown.returncode == 0 and "grid1.nc" in shown.stdout and "grid0.nc" not in shown.stdout, shown.stdout
    emptied = run_cli("cache", "prune", "--cache-dir", str(cache))
    assert emptied.returncode == 0 and "removed 2 entries" in emptied.stdout
    assert not list((cache / "blobs").iterdir())


GRID_FILES = {"grid.nc": os.urandom(300_000), "sub/mask.nc": os.urandom(200_000), "sub/deeper/x.txt": b"x"}


def _tree_sha(files: dict[str, bytes]) -> str:
    lines = "".join(
        f"{name}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n" for name, data in sorted(files.items())
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def _placed_tree(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_directory_input_over_http_is_fetched_once_for_an_ensemble_and_keyed_by_its_files(
    tmp_path, http_server, prefect_api
):
    """Issue 25.1: a grid directory (nginx's listing) fetched once, each member a read-only tree of copies."""
    www, url, log = http_server
    _write_tree(www / "grid", GRID_FILES)
    doc = shell_ensemble_doc(tmp_path, ["sh", "-c", "ls -R grid > seen.txt"], {"n": 3}, max_parallel=3)
    doc["pipeline"]["inputs"] = [{"id": "grid", "source": f"{url}/grid/", "sha256": _tree_sha(GRID_FILES)}]
    doc["pipeline"]["cache_dir"] = str(tmp_path / "cache")
    ran = run_cli("ensemble", str(write_yaml(tmp_path / "ens.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert ran.returncode == 0, ran.stderr[-3000:]
    requests = [line.split(" ", 2) for line in log.read_text().splitlines()]  # status, bytes, "range" path
    # listings and their redirects (/grid -> /grid/) left out
    file_bodies = [int(sent) for status, sent, rest in requests if status != "301" and not rest.endswith("/")]
    assert sum(file_bodies) == sum(map(len, GRID_FILES.values())), f"each file came once: {requests}"
    for member in range(3):
        run_dir = tmp_path / "runs" / "ens" / f"m_m{member:03d}"
        assert _placed_tree(run_dir / "grid") == GRID_FILES
        placed = run_dir / "grid" / "sub" / "mask.nc"
        assert placed.stat().st_mode & 0o777 == 0o444 and placed.stat().st_nlink == 1, "a read-only copy"
        manifest = json.loads((run_dir / "rompy_tasks_run.json").read_text())
        assert manifest["inputs"][0]["sha256"] == _tree_sha(GRID_FILES) and manifest["inputs"][0]["path"] == "grid"


def test_a_changed_file_in_a_directory_source_is_fetched_again_and_a_wrong_tree_checksum_fails(tmp_path):
    source = tmp_path / "grid"
    _write_tree(source, GRID_FILES)
    cache = cache_dir(tmp_path / "cache")
    item = StaticInput(id="grid", source=str(source))
    first = fetch(item, cache)
    assert first.sha256 == _tree_sha(GRID_FILES) and fetch(item, cache).fetched == first.fetched
    changed = {**GRID_FILES, "sub/mask.nc": os.urandom(200_000)}
    _write_tree(source, changed)
    second = fetch(item, cache)
    assert second.sha256 == _tree_sha(changed)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert _placed_tree(place(item, second, cache, run_dir)) == changed
    from rompy_tasks.core.errors import StageError

    with pytest.raises(StageError, match="not the 000"):
        fetch(StaticInput(id="grid", source=str(source), sha256="0" * 64), cache)


def test_a_directory_input_from_s3(tmp_path, s3, prefect_api):
    import s3fs

    fs = s3fs.S3FileSystem()
    for name, data in GRID_FILES.items():
        fs.pipe(f"data/grids/grid/{name}", data)
    doc = shell_doc(tmp_path, ["true"], run_id="r")
    doc["inputs"] = [{"id": "grid", "source": "s3://data/grids/grid"}]
    doc["cache_dir"] = str(tmp_path / "cache")
    ran = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert _placed_tree(tmp_path / "runs" / "r" / "grid") == GRID_FILES
