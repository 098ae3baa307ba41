"""A forecaster's outage and recovery, end to end (issue 14): scripts/operate's real server (on
PostgreSQL) and worker, the `model-forecast/veros-acc-forecast` deployment, real Veros cycles.

Cycles c0..c5 run in order; then the worker dies for four days of cycles, and the runs the
scheduler would have created are created through the API, late. When a worker is back, the
late cycles run one at a time, oldest first, each hot-starting from its predecessor; the ones
past `max_lateness` (2 d) end in a state named Skipped; no cycle runs twice; retention keeps
the newest six cycle directories.
"""

import json
import os
import signal
import subprocess
import time
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


def test_after_an_outage_late_cycles_run_serially_oldest_first_each_from_its_predecessor(operated):
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
