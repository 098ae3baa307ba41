"""The operational setup end to end: scripts/operate (real `prefect server start`, process pool,
`prefect deploy` of deployments/prefect.yaml, a real worker), then runs triggered the three ways
users trigger them: `prefect deployment run --param` from the shell, a scheduled run created
through the API, and the UI's run form (rendered by headless Chromium)."""

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO
from services import api_request, free_port

from rompy_tasks.forecast import cycle_id, floor_cycle

pytestmark = pytest.mark.e2e

PREFECT = Path(sys.executable).parent / "prefect"
OPERATE = REPO / "scripts" / "operate"
TWELVE_HOURS = timedelta(hours=12)


class Operated:
    def __init__(self, tmp: Path, port: int):
        self.tmp, self.port = tmp, port
        self.url = f"http://127.0.0.1:{port}"
        self.runs = tmp / "runs"
        self.env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        self.env.update(
            ROMPY_TASKS_PORT=str(port), ROMPY_TASKS_OPERATE_DIR=str(tmp / "op"), ROMPY_TASKS_RUNS=str(self.runs)
        )
        self.client_env = {
            **self.env,
            "PREFECT_API_URL": f"{self.url}/api",
            "PREFECT_HOME": str(tmp / "op/prefect-home"),
        }

    def api(self, method: str, path: str, body: dict | None = None) -> dict | list:
        return api_request(f"{self.url}/api", method, path, body)

    def deployment(self, name: str) -> dict:
        return self.api("GET", f"/deployments/name/{name}")

    def deployment_run(self, name: str, *params: str) -> subprocess.CompletedProcess:
        args = [PREFECT, "deployment", "run", name, "--watch", "--watch-timeout", "300"]
        for param in params:
            args += ["--param", param]
        return subprocess.run(args, env=self.client_env, capture_output=True, text=True, timeout=400)

    def worker_log(self) -> str:
        return (self.tmp / "op" / "worker.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def operated(tmp_path_factory):
    """scripts/operate start for the module; stop afterwards and check nothing is left running."""
    op = Operated(tmp_path_factory.mktemp("operate"), free_port())
    started = subprocess.run([OPERATE, "start"], env=op.env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        yield op
    finally:
        stopped = subprocess.run([OPERATE, "stop"], env=op.env, capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0
        status = subprocess.run([OPERATE, "status"], env=op.env, capture_output=True)
        assert status.returncode != 0, "nothing left running"


@pytest.mark.veros
def test_pipeline_deployment_run_with_field_overrides(operated):
    ran = operated.deployment_run(
        "model-pipeline/veros-acc", 'overrides={"config.period.duration": "2d", "config.run_id": "from-the-shell"}'
    )
    assert ran.returncode == 0 and "Completed" in ran.stdout, ran.stdout[-1500:] + operated.worker_log()
    staging = operated.runs / "from-the-shell"
    assert "runlen 172800" in (staging / "logs" / "run.log").read_text(), "the override reached the model"
    assert sorted(p.name for p in (staging / "plots").glob("*.png")) == ["acc.energy.k_m.png", "acc.snapshot.temp.png"]


@pytest.mark.veros
def test_the_scheduled_start_time_drives_the_cycle_then_a_shell_run_hot_starts_from_it(operated):
    deployment = operated.deployment("model-forecast/veros-acc-forecast")
    # the schedules from prefect.yaml: 00Z (with its own parameters) and 12Z, in UTC
    schedules = {s["schedule"]["cron"]: s for s in deployment["schedules"]}
    assert set(schedules) == {"0 0 * * *", "0 12 * * *"}
    assert all(s["schedule"]["timezone"] == "UTC" and s["active"] for s in schedules.values())
    assert schedules["0 0 * * *"]["parameters"] == {"overrides": {"forecast_length": "72h"}}
    # the server's scheduler creates the coming runs: 00Z and 12Z, the 00Z ones with their parameters
    deadline = time.monotonic() + 120
    while not (upcoming := _scheduled_runs(operated, deployment["id"])):
        assert time.monotonic() < deadline, "the scheduler created no runs (see the server log)"
        time.sleep(2)
    for run in upcoming:
        start = datetime.fromisoformat(run["expected_start_time"])
        assert (start.hour, start.minute, start.second) in {(0, 0, 0), (12, 0, 0)} and start > datetime.now(UTC)
        assert run["parameters"]["overrides"] == ({"forecast_length": "72h"} if start.hour == 0 else {})

    # a run scheduled 20 h ago (a late one the worker picks up at once): its cycle is that time,
    # floored to 12 h, not the wall clock
    scheduled = datetime.now(UTC) - timedelta(hours=20)
    cycle = floor_cycle(scheduled, TWELVE_HOURS)
    assert cycle != floor_cycle(datetime.now(UTC), TWELVE_HOURS)
    run = operated.api(
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": scheduled.isoformat()}}},
    )
    deadline = time.monotonic() + 300
    while (state := operated.api("GET", f"/flow_runs/{run['id']}")["state"]["type"]) not in {"COMPLETED", "FAILED"}:
        assert time.monotonic() < deadline and state not in {"CRASHED", "CANCELLED"}, state + operated.worker_log()
        time.sleep(2)
    assert state == "COMPLETED", operated.worker_log()
    flow_run = operated.api("GET", f"/flow_runs/{run['id']}")
    assert flow_run["name"] == f"acc-forecast-{cycle_id(cycle)}"
    forecast_dir = operated.runs / "acc-forecast"
    record = json.loads((forecast_dir / "cycles" / f"{cycle_id(cycle)}.json").read_text())
    assert record["status"] == "completed" and record["start"] == "cold"
    # the derived period: a cold start spins up for a day (spinup: 1d) and runs 48 h past the cycle
    assert datetime.fromisoformat(record["period_start"]) == cycle - timedelta(days=1)
    assert datetime.fromisoformat(record["period_end"]) == cycle + timedelta(hours=48)
    assert (forecast_dir / cycle_id(cycle) / "plots" / "acc.snapshot.surface_taux.png").is_file()

    # the next cycle from the shell: it hot-starts from the scheduled one
    following = cycle + TWELVE_HOURS
    ran = operated.deployment_run("model-forecast/veros-acc-forecast", f"cycle={following.isoformat()}")
    assert ran.returncode == 0 and "Completed" in ran.stdout, ran.stdout[-1500:] + operated.worker_log()
    record = json.loads((forecast_dir / "cycles" / f"{cycle_id(following)}.json").read_text())
    assert (record["status"], record["start"], record["restart_cycle"]) == ("completed", "hot", cycle_id(cycle))
    assert (forecast_dir / cycle_id(following) / "acc.snapshot.nc").is_file()

    artifacts = operated.api(
        "POST",
        "/artifacts/filter",
        {"artifacts": {"key": {"any_": [f"forecast-acc-forecast-{cycle_id(following).lower()}"]}}},
    )
    assert artifacts and "hot start" in artifacts[0]["data"], "the per-cycle summary artifact"


def _scheduled_runs(operated: Operated, deployment_id: str) -> list[dict]:
    query = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}
    return [r for r in operated.api("POST", "/flow_runs/filter", query) if r["auto_scheduled"]]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-first-run",
    "--virtual-time-budget=20000",
    "--window-size=1400,2400",
]


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (scripts/test installs Debian's chromium as root)"
)
def test_the_ui_renders_the_forecast_run_form(operated, tmp_path):
    deployment = operated.deployment("model-forecast/veros-acc-forecast")
    page = f"{operated.url}/deployments/deployment/{deployment['id']}/run"
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for label in [
        "Cycle Interval",
        "Forecast Length",
        "Spinup",
        "Lookback Cycles",
        "Cold Start Ok",
        "Keep Cycles",
        "Max Lateness",
        "Forcing",
        "Bbox",
        "cycle (Optional)",
        "force (Optional)",
        "overrides (Optional)",
    ]:
        assert f">{label}" in dom.stdout, f"the run form has no field {label!r}"
    shot = tmp_path / "run-form.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--screenshot={shot}", page], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
