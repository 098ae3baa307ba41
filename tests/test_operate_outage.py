"""A forecaster's outage and recovery, end to end (issue 14): scripts/operate's real server (on
PostgreSQL) and worker, the `model-forecast/veros-acc-forecast` deployment, real Veros cycles.

Cycles c0..c5 run in order; then the worker dies for four days of cycles, and the runs the
scheduler would have created are created through the API, late. When a worker is back, the
late cycles run one at a time, oldest first, each hot-starting from its predecessor; the ones
past `max_lateness` (2 d) end in a state named Skipped; no cycle runs twice; retention keeps
the newest six cycle directories.
"""

import http.server
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import run_cli
from helpers import table_rows, wait_for
from operated import OPERATE, Operated

from rompy_tasks.forecast import cycle_id, floor_cycle

pytestmark = [pytest.mark.e2e, pytest.mark.veros]
OPERATE_DATABASE = "postgres"  # operational use: the server on PostgreSQL (SQLite locks under this load)

DEPLOYMENT = "model-forecast/veros-acc-forecast"
TWELVE_HOURS = timedelta(hours=12)
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class AlertReceiver(http.server.ThreadingHTTPServer):
    """The webhook the alerts go to: keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.alerts: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.alerts.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"


@pytest.fixture(scope="module")
def alert_receiver() -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    yield receiver
    receiver.shutdown()


@pytest.fixture(scope="module")
def operate_env(alert_receiver: AlertReceiver) -> dict[str, str]:
    """scripts/operate installs the alerts (deployments/alerts.yaml) for this receiver."""
    return {"ROMPY_TASKS_ALERT_WEBHOOK": alert_receiver.url}


def create_run(operated: Operated, deployment_id: str, due: datetime, cycle: datetime | None = None) -> str:
    """A run as the scheduler creates one (due at `due`), or, with `cycle`, as an operator names one."""
    body: dict = {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due.isoformat()}}}
    if cycle is not None:
        body["parameters"] = {"cycle": cycle.isoformat()}
    return operated.api("POST", f"/deployments/{deployment_id}/create_flow_run", body)["id"]


def final_states(operated: Operated, run_ids: list[str], seconds: float) -> dict[str, dict]:
    """Each run's final state, waiting up to `seconds` for all of them."""
    deadline = time.monotonic() + seconds
    query = {"flow_runs": {"id": {"any_": run_ids}}, "limit": len(run_ids)}
    while True:
        runs = {run["id"]: run for run in operated.api("POST", "/flow_runs/filter", query)}
        if all(run["state"]["type"] in FINAL for run in runs.values()):
            return runs
        assert time.monotonic() < deadline, [r["state"]["name"] for r in runs.values()] + [operated.worker_log()]
        time.sleep(3)


def history(operated: Operated) -> list[tuple[str, str, str]]:
    """(cycle, status, start) per line of the forecast's history.log, in the order written."""
    lines = (operated.runs / "acc-forecast" / "cycles" / "history.log").read_text().splitlines()
    return [tuple(line.split()[1:4]) for line in lines]


def record(operated: Operated, cycle: datetime) -> dict:
    return json.loads((operated.runs / "acc-forecast" / "cycles" / f"{cycle_id(cycle)}.json").read_text())


def kill_worker(operated: Operated) -> None:
    """The outage: the worker's whole process group dies at once."""
    pid = int((operated.tmp / "op" / "worker.pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)
    assert wait_for(lambda: subprocess.run([OPERATE, "status"], env=operated.env).returncode != 0, 30)


def test_after_an_outage_late_cycles_run_serially_oldest_first_each_from_its_predecessor(operated, alert_receiver):
    deployment = operated.deployment(DEPLOYMENT)
    for schedule in deployment["schedules"]:  # no real cron run may join in while the test runs
        operated.api("PATCH", f"/deployments/{deployment['id']}/schedules/{schedule['id']}", {"active": False})
    now = datetime.now(UTC)
    newest = floor_cycle(now, TWELVE_HOURS)
    cycles = [newest - (13 - k) * TWELVE_HOURS for k in range(14)]  # c0 .. c13 (c13: the current cycle)

    # c0..c5, asked for by name, all at once: the deployment runs them one at a time, in order
    named = [create_run(operated, deployment["id"], now, cycle) for cycle in cycles[:6]]
    runs = final_states(operated, named, 600)
    assert {r["state"]["type"] for r in runs.values()} == {"COMPLETED"}, operated.worker_log()
    starts = [(c, status, start) for c, status, start in history(operated) if status == "running"]
    assert starts == [(cycle_id(c), "running", "cold" if k == 0 else "hot") for k, c in enumerate(cycles[:6])]
    for before, cycle in zip(cycles[:5], cycles[1:6], strict=True):
        assert record(operated, cycle)["restart_cycle"] == cycle_id(before)

    # the outage: no worker while c6..c13 fall due; the scheduler's runs pile up, late
    kill_worker(operated)
    late = [create_run(operated, deployment["id"], cycle) for cycle in cycles[6:]]
    time.sleep(5)
    assert all(operated.api("GET", f"/flow_runs/{r}")["state"]["type"] == "SCHEDULED" for r in late)
    lines_before = len(history(operated))
    restarted = subprocess.run([OPERATE, "start"], env=operated.env, capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    runs = final_states(operated, late, 900)

    states = {cycle_id(c): runs[r]["state"]["name"] for c, r in zip(cycles[6:], late, strict=True)}
    names = {runs[r]["name"] for r in late}
    assert names == {f"acc-forecast-{cycle_id(c)}" for c in cycles[6:]}
    # c6..c9 are more than 2 days late: Skipped, not run; c10..c13 ran
    assert states == {
        **{cycle_id(c): "Skipped" for c in cycles[6:10]},
        **{cycle_id(c): "Completed" for c in cycles[10:]},
    }
    assert all(record(operated, c)["status"] == "skipped" for c in cycles[6:10])
    skipped_types = {runs[r]["state"]["type"] for c, r in zip(cycles[6:], late, strict=True) if c in cycles[6:10]}
    assert skipped_types == {"CANCELLED"}, "grey in the UI, not counted as completed"
    assert not any((operated.runs / "acc-forecast" / cycle_id(c)).exists() for c in cycles[6:10])
    # one at a time, oldest first, each from its predecessor (c10 finds no restart within 4 cycles: cold)
    recovery = [(c, status) for c, status, _ in history(operated)[lines_before:] if status in {"running", "completed"}]
    expected = [(cycle_id(c), status) for c in cycles[10:] for status in ("running", "completed")]
    assert recovery == expected, "serial and in order, each exactly once"
    assert record(operated, cycles[10])["start"] == "cold"
    for before, cycle in zip(cycles[10:13], cycles[11:], strict=True):
        assert (record(operated, cycle)["start"], record(operated, cycle)["restart_cycle"]) == ("hot", cycle_id(before))
    # nothing ran twice over the whole test; retention kept the newest six cycle directories
    ran = [c for c, status, _ in history(operated) if status == "running"]
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 10
    kept = sorted(p.name for p in (operated.runs / "acc-forecast").iterdir() if p.name != "cycles")
    assert kept == sorted(cycle_id(c) for c in cycles[4:6] + cycles[10:])

    # the morning check, from the shell, on the same forecast file the deployment includes
    status = run_cli(
        "forecast", "status", "examples/veros-forecast/forecast.yaml", "--last", "8",
        env={"ROMPY_TASKS_RUNS": str(operated.runs), "COLUMNS": "200"},
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {row[0]: row for row in table_rows(status.stdout)}
    assert list(rows) == [cycle_id(c) for c in reversed(cycles[6:])]
    assert rows[cycle_id(cycles[13])][1:3] == ["completed", f"hot from {cycle_id(cycles[12])}"]
    assert all(rows[cycle_id(c)][1] == "skipped" for c in cycles[6:10])

    # a cycle that fails (an override it cannot run with) alerts too
    failed = operated.deployment_run(
        DEPLOYMENT, f"cycle={cycles[13].isoformat()}", 'overrides={"forecast_length": "1h"}'
    )
    assert "Failed" in failed.stdout, failed.stdout[-2000:]
    # the alert receiver got exactly one notification per skipped or failed cycle, nothing else
    expected = sorted(
        [f"Forecast cycle acc-forecast-{cycle_id(c)}: Skipped" for c in cycles[6:10]]
        + [f"Forecast cycle acc-forecast-{cycle_id(cycles[13])}: Failed"]
    )
    assert wait_for(lambda: len(alert_receiver.alerts) >= len(expected), 120), alert_receiver.alerts
    time.sleep(10)  # anything more would arrive by now
    assert sorted(alert["subject"] for alert in alert_receiver.alerts) == expected
    assert all("ended" in alert["body"] for alert in alert_receiver.alerts)


def test_a_forecast_with_no_completed_cycle_for_too_long_alerts_as_overdue(operated, alert_receiver):
    """The proactive automation: installed again from the shell with a 20 s window instead of 18 h."""
    alert_receiver.alerts.clear()
    env = {**operated.client_env, "PREFECT_API_AUTH_STRING": operated.auth}
    installed = run_cli("alerts", "install", alert_receiver.url, "--overdue-after", "20s", env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr[-2000:]
    assert installed.stdout.count("installed automation") == 2
    overdue = "Forecast overdue: veros-acc-forecast"
    assert wait_for(lambda: any(a["subject"] == overdue for a in alert_receiver.alerts), 120), alert_receiver.alerts
    body = alert_receiver.alerts[0]["body"]
    assert "No cycle of veros-acc-forecast completed in the last 20 s (its overdue window)" in body
    automations = operated.api("POST", "/automations/filter", {})
    assert sorted(a["name"] for a in automations) == sorted(
        ["rompy-tasks: forecast cycle failed, crashed or skipped", "rompy-tasks: forecast overdue"]
    ), "installing again replaced the automations"
