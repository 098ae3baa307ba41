"""rompy's docker volume modes reach the real engine (issue 12).

Before, rompy's SELinux `:Z` mounts were rejected (only ro and rw were accepted).
"""

import pytest
from conftest import run_cli
from helpers import shell_doc, write_yaml

pytestmark = pytest.mark.docker


def _docker_doc(tmp_path, volume: str) -> dict:
    backend = {"type": "docker", "image": "rompy-tasks/base:bookworm", "volumes": [volume]}
    return shell_doc(tmp_path, ["cp", "/data/input.txt", "copied.txt"], run_id="zmount", backend=backend)


def test_a_selinux_relabelled_read_only_mount_runs(engine, prefect_api, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("from the host\n")
    path = write_yaml(tmp_path / "p.yaml", _docker_doc(tmp_path, f"{data}:/data:ro,Z"))
    result = run_cli("run", str(path), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "runs" / "zmount" / "copied.txt").read_text() == "from the host\n"


@pytest.mark.parametrize("mode", ["X", "ro,rw", "Z,Z"])
def test_other_volume_modes_are_invalid(tmp_path, mode):
    path = write_yaml(tmp_path / "p.yaml", _docker_doc(tmp_path, f"{tmp_path}:/data:{mode}"))
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert f"mode must be ro or rw, optionally with SELinux z or Z (e.g. ro,Z), not '{mode}'" in result.stderr


def test_more_cpus_than_the_engine_has_names_the_key(engine, prefect_api, tmp_path):
    """rompy's examples/configs/docker_backend.yml asks for `cpu: 4`; rompy uses it only for
    `mpiexec -n`, here it is also the container's limit, and the engine refused with its own words."""
    more = engine.info()["NCPU"] + 2
    backend = {
        "type": "docker",
        "image": "rompy-tasks/base:bookworm",
        "timeout": 7200,
        "cpu": more,
        "memory": "2g",
        "mpiexec": "",
        "env_vars": {"MODEL_THREADS": "4", "DATA_DIR": "/app/data"},
        "remove_container": True,
        "user": "root",
    }
    path = write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, ["true"], run_id="cpus", backend=backend))
    result = run_cli("run", str(path), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"cpu: {more} is more than the {more - 2} CPU(s) of the Docker engine" in result.stderr, result.stderr
    assert not (tmp_path / "runs" / "cpus" / "logs" / "run.log").exists(), "no container was started"
