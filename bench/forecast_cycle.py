"""Forecast cycles through the operational setup, against a bare `veros run` of the same cycle.

scripts/operate starts a real Prefect server, the process pool, the deployments and a worker.
Then, for consecutive hot-started cycles of `model-forecast/veros-acc-forecast`:

- latency: from `prefect deployment run ... --param cycle=T` being called to the model process
  starting (the `started` line our process backend writes into the cycle's logs/run.log);
- cycle:   from that call to the cycle's record saying `completed` (forcing cut, generate, model,
  analyze + visualize postprocessing, restart bookkeeping, retention, artifacts);
- scheduled: a run scheduled through the API 20 s ahead (as the cron schedule does): from the
  scheduled time to the model process starting (the worker prefetches due runs);
- bare:    `veros run` of exactly the same cycle (same setup files, forcing, restart, command
  line, copied out of the cycle directory), whole process.

The first (cold) cycle warms up and is not counted. Medians of the hot cycles.

    .venv/bin/python bench/forecast_cycle.py [--cycles 3] [--poll 1]
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services import api_request, free_port

from rompy_tasks.forecast import cycle_id, floor_cycle

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEPLOYMENT = "model-forecast/veros-acc-forecast"


def model_started(log: Path) -> datetime:
    first = log.read_text().splitlines()[0]  # "# <iso time> started in <dir>: <command>"
    return datetime.fromisoformat(first.split()[1])


def wait_for(record: Path, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.is_file():
            data = json.loads(record.read_text())
            if data["status"] in {"completed", "failed"}:
                return data
        time.sleep(0.2)
    raise SystemExit(f"{record} did not complete in {timeout} s")


def run_cycle(cycle: datetime, runs: Path, env: dict[str, str]) -> tuple[float, float, dict]:
    """Trigger one cycle from the shell; return (latency, cycle wall time, record)."""
    record_path = runs / "acc-forecast" / "cycles" / f"{cycle_id(cycle)}.json"
    called = datetime.now(UTC)
    subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", DEPLOYMENT, "--param", f"cycle={cycle.isoformat()}"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    record = wait_for(record_path)
    if record["status"] != "completed":
        raise SystemExit(f"cycle {cycle_id(cycle)} failed: {record.get('reason')}")
    started = model_started(Path(record["run_dir"]) / "logs" / "run.log")
    finished = datetime.fromisoformat(record["written"])
    return (started - called).total_seconds(), (finished - called).total_seconds(), record


def scheduled_latency(cycle: datetime, runs: Path, api: str, auth: str) -> float:
    """Schedule the cycle 20 s ahead through the API, as the scheduler does; scheduled time -> model start."""
    deployment = api_request(api, "GET", f"/deployments/name/{DEPLOYMENT}", auth=auth)
    when = datetime.now(UTC) + timedelta(seconds=20)
    body = {
        "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": when.isoformat()}},
        "parameters": {"cycle": cycle.isoformat()},
    }
    api_request(api, "POST", f"/deployments/{deployment['id']}/create_flow_run", body, auth=auth)
    record = wait_for(runs / "acc-forecast" / "cycles" / f"{cycle_id(cycle)}.json")
    return (model_started(Path(record["run_dir"]) / "logs" / "run.log") - when).total_seconds()


def bare_veros(record: dict, work: Path) -> float:
    """The same cycle's model run alone: its inputs copied out, its exact command, whole process."""
    source = Path(record["run_dir"])
    target = work / f"bare-{record['run_id']}"
    target.mkdir()
    for name in ["acc.py", "rompy_tasks_setup.py", "forcing", "restart"]:
        item = source / name
        (shutil.copytree if item.is_dir() else shutil.copy)(item, target / name)
    header = (source / "logs" / "run.log").read_text().splitlines()[0]
    command = shlex.split(header.split(": ", 1)[1])
    command[0] = str(BIN / command[0])
    begin = time.perf_counter()
    subprocess.run(command, cwd=target, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=3, help="hot cycles measured")
    parser.add_argument("--poll", type=int, default=1, help="worker poll interval, seconds (operate's default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rompy-bench-forecast-") as tmp:
        work = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(
            ROMPY_TASKS_PORT=str(port),
            ROMPY_TASKS_OPERATE_DIR=str(work / "op"),
            ROMPY_TASKS_RUNS=str(work / "runs"),
            ROMPY_TASKS_WORKER_POLL=str(args.poll),
            OMP_NUM_THREADS="1",
        )
        client = {
            **env,
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_HOME": str(work / "op/prefect-home"),
        }
        operate = REPO / "scripts" / "operate"
        subprocess.run([operate, "start"], env=env, check=True, stderr=subprocess.DEVNULL)
        client["PREFECT_API_AUTH_STRING"] = (work / "op" / "api-auth").read_text().strip()  # as operate says
        try:
            first = floor_cycle(datetime.now(UTC), timedelta(hours=12)) - timedelta(days=1)
            run_cycle(first, work / "runs", client)  # cold start, warm-up
            latencies, cycles, bare = [], [], []
            for k in range(1, args.cycles + 1):
                latency, wall, record = run_cycle(first + k * timedelta(hours=12), work / "runs", client)
                assert record["start"] == "hot", record
                latencies.append(latency)
                cycles.append(wall)
                bare.append(bare_veros(record, work))
            scheduled = scheduled_latency(
                first + (args.cycles + 1) * timedelta(hours=12),
                work / "runs",
                client["PREFECT_API_URL"],
                client["PREFECT_API_AUTH_STRING"],
            )
        finally:
            subprocess.run([operate, "stop"], env=env, stderr=subprocess.DEVNULL)

    m_lat, m_cycle, m_bare = (statistics.median(x) for x in (latencies, cycles, bare))
    print(f"Veros ACC forecast cycle (48 h, hot start, wind forcing, analyze + visualize), {args.cycles} hot cycles,")
    print(f"worker poll {args.poll} s, medians:")
    print(f"  deployment run -> model start        {m_lat:7.2f} s   {sorted(round(x, 2) for x in latencies)}")
    print(f"  scheduled time -> model start        {scheduled:7.2f} s   (one run, scheduled 20 s ahead)")
    print(f"  deployment run -> cycle completed    {m_cycle:7.2f} s   {sorted(round(x, 2) for x in cycles)}")
    print(f"  bare veros run of the same cycle     {m_bare:7.2f} s   {sorted(round(x, 2) for x in bare)}")
    print(f"  ratio (full cycle / bare veros)      {m_cycle / m_bare:7.2f}x")


if __name__ == "__main__":
    main()
