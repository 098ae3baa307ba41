"""The operational setup end to end: scripts/operate (real `prefect server start`, process pool,
`prefect deploy` of deployments/prefect.yaml, a real worker), then `prefect deployment run --param`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from servers import free_port

PREFECT = Path(sys.executable).parent / "prefect"


@pytest.mark.veros
def test_deployment_run_with_field_overrides_through_a_real_worker(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        ROMPY_TASKS_PORT=str(port),
        ROMPY_TASKS_OPERATE_DIR=str(tmp_path / "op"),
        ROMPY_TASKS_RUNS=str(tmp_path / "runs"),
    )
    operate = REPO / "scripts" / "operate"
    started = subprocess.run([operate, "start"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        client_env = {
            **env,
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_HOME": str(tmp_path / "op" / "prefect-home"),
        }
        ran = subprocess.run(
            [
                PREFECT,
                "deployment",
                "run",
                "model-pipeline/veros-acc",
                "--param",
                'overrides={"config.period.duration": "2d", "config.run_id": "from-the-shell"}',
                "--watch",
                "--watch-timeout",
                "300",
            ],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        worker_log = (tmp_path / "op" / "worker.log").read_text()
        assert ran.returncode == 0 and "Completed" in ran.stdout, ran.stdout[-1500:] + worker_log[-3000:]
        staging = tmp_path / "runs" / "from-the-shell"
        assert "runlen 172800" in (staging / "logs" / "run.log").read_text(), "the override reached the model"
        assert sorted(p.name for p in (staging / "plots").glob("*.png")) == [
            "acc.energy.k_m.png",
            "acc.snapshot.temp.png",
        ]
    finally:
        stopped = subprocess.run([operate, "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0
    assert subprocess.run([operate, "status"], env=env, capture_output=True).returncode != 0, "nothing left running"
