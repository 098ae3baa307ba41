"""A full disk under the run directory: the model's own error survives, nothing is half-written (15.3).

The run directory lives on a real 1 MiB tmpfs that the model fills before it fails.
"""

import json
import os
import subprocess

import pytest
from conftest import run_cli
from helpers import shell_doc, write_yaml

pytestmark = pytest.mark.faults


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted in tmp_path (root only), unmounted afterwards."""
    if os.getuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_disk_full_keeps_the_models_error_and_leaves_no_partial_manifest(prefect_api, small_disk, tmp_path):
    fill = "dd if=/dev/zero of=out.bin bs=64k count=64; echo model gives up; exit 3"
    doc = shell_doc(small_disk, ["sh", "-c", fill], run_id="full")
    result = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Run full failed: ModelRunError: model exited with code 3" in result.stderr, "the model's own error"
    run_dir = small_disk / "runs" / "full"
    manifest = run_dir / "rompy_tasks_run.json"
    assert f"could not write the run manifest {manifest}: No space left on device" in result.stderr
    assert not manifest.exists() or json.loads(manifest.read_text()), "no 0-byte or partial manifest"
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name], "no temporary file left behind"
    assert "model gives up" in (run_dir / "logs" / "run.log").read_text(), "the model's log is kept"


def test_a_full_disk_in_a_stage_names_the_stage_and_the_file(prefect_api, small_disk, tmp_path):
    """Issue 28.6: `[Errno 28] No space left on device` named neither the file nor the stage."""
    source = tmp_path / "bathy.nc"
    source.write_bytes(os.urandom(2 * 1024 * 1024))  # larger than the 1 MiB disk of the run directory
    doc = shell_doc(small_disk, ["true"], run_id="full")
    doc["inputs"] = [{"id": "bathy", "source": str(source)}]
    doc["cache_dir"] = str(tmp_path / "cache")  # on the roomy disk: the copy into the run directory fails
    result = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 1, result.stderr[-2000:]
    placed = small_disk / "runs" / "full" / "bathy.nc"
    assert f"StageError: generate stage: No space left on device while writing {placed}" in result.stderr, (
        result.stderr[-2000:]
    )
    assert "MiB free in" in result.stderr and "Traceback" not in result.stderr
