"""The input cache is trusted by every later run: only its user may change it, and pruning it
removes blobs under it and nothing else (issue 36.4)."""

import json
import os

import pytest
from conftest import run_cli
from helpers import shell_doc, write_yaml


def _pipeline(tmp_path, cache):
    source = tmp_path / "bathy.nc"
    source.write_bytes(b"depths")
    doc = shell_doc(tmp_path, "true")
    doc["inputs"] = [{"id": "bathy", "source": str(source)}]
    doc["cache_dir"] = str(cache)
    return write_yaml(tmp_path / "p.yaml", doc)


@pytest.mark.parametrize("how", ["world-writable", "group-writable", "another user's", "a link"])
def test_a_cache_another_user_could_change_is_refused(tmp_path, how):
    cache = tmp_path / "cache"
    if how == "a link":
        (tmp_path / "elsewhere").mkdir()
        cache.symlink_to(tmp_path / "elsewhere")
    else:
        cache.mkdir()
        os.chmod(cache, {"world-writable": 0o777, "group-writable": 0o770}.get(how, 0o700))
    if how == "another user's":
        if os.geteuid() != 0:
            pytest.skip("making a directory another user's needs root")
        os.chown(cache, 65534, 65534)
    path = _pipeline(tmp_path, cache)
    for verb in ("validate", "run"):
        ran = run_cli(verb, str(path))
        assert ran.returncode == 2 and "cache_dir:" in ran.stderr, ran.stderr[-2000:]
        assert "another user could change the inputs" in ran.stderr
    assert not (tmp_path / "runs").exists() and not list(cache.iterdir()), "nothing written"
    ran = run_cli("cache", "show", "--cache-dir", str(cache))
    assert ran.returncode == 2 and "cache_dir:" in ran.stderr, ran.stderr[-2000:]


def test_prune_never_follows_a_planted_record_out_of_the_cache(tmp_path):
    """Before, a record naming `sha256: "../../victim"` made `cache prune` delete tmp_path/victim."""
    victim = tmp_path / "victim"
    victim.write_text("another user's file")
    cache = tmp_path / "cache"
    (cache / "sources").mkdir(parents=True)
    (cache / "blobs").mkdir()
    os.chmod(cache, 0o700)
    record = {
        "uri": "planted", "version": "v", "sha256": "../../victim", "size": 10**12, "mtime_ns": 0,
        "files": None, "fetched": "2026-01-01T00:00:00Z", "used": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    (cache / "sources" / "planted.json").write_text(json.dumps(record))
    tree = {**record, "sha256": "a" * 64, "files": [{"path": "x", "sha256": "../../victim", "size": 1, "mtime_ns": 0}]}
    (cache / "sources" / "tree.json").write_text(json.dumps(tree))
    ran = run_cli("cache", "prune", "--cache-dir", str(cache), "--max-size-gb", "0")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert victim.read_text() == "another user's file"
    assert run_cli("cache", "show", "--cache-dir", str(cache)).returncode == 0
