"""The demo on every backend, as Getting started shows it: `rompy-tasks run examples/veros-acc/pipeline.yaml
--backend-config examples/backends/<backend>.yaml`, in a fresh process (5 model days: one snapshot)."""

import pytest
from conftest import REPO, run_cli
from helpers import VEROS_IMAGE

pytestmark = pytest.mark.veros
DEMO = REPO / "examples" / "veros-acc" / "pipeline.yaml"
IMAGE = VEROS_IMAGE  # the image scripts/docker-engine built for the installed Veros


def run_demo(backend: str, tmp_path, prefect_api: str):
    ran = run_cli(
        "run", str(DEMO), "--backend-config", str(REPO / "examples" / "backends" / f"{backend}.yaml"),
        "--set", "config.period.duration=5d", "--set", f"config.run_id=demo-{backend}",
        env={"PREFECT_API_URL": prefect_api, "ROMPY_TASKS_OUTPUT": str(tmp_path), "ROMPY_TASKS_VEROS_IMAGE": IMAGE},
        timeout=600,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    run_dir = tmp_path / f"demo-{backend}"
    assert (run_dir / "acc.snapshot.nc").is_file() and (run_dir / "analysis" / "summary.json").is_file()
    return (run_dir / "rompy_tasks_run.json").read_text()


def test_the_demo_on_the_local_backend_file(tmp_path, prefect_api):
    assert '"type": "local"' in run_demo("local", tmp_path, prefect_api)


@pytest.mark.docker
def test_the_demo_in_docker(engine, tmp_path, prefect_api):
    manifest = run_demo("docker", tmp_path, prefect_api)
    assert '"container_id"' in manifest and VEROS_IMAGE in manifest


@pytest.mark.slurm
def test_the_demo_on_slurm(cluster, tmp_path, prefect_api):
    assert '"slurm_job_id"' in run_demo("slurm", tmp_path, prefect_api)
