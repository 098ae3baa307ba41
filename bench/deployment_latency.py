"""`prefect deployment run` of the pipeline deployment -> the model process starts: our worker
against Prefect's process worker, on the same server, pool and deployment, in one sitting.

The operational setup of `scripts/operate start` (server, `rompy-tasks` work pool, deployments,
workers polling every ROMPY_TASKS_WORKER_POLL seconds, default 1), in a temporary directory.
Each trial is what an operator types: `prefect deployment run model-pipeline/veros-acc --param
...`; the latency runs from that command's start to the model's start as recorded in the run's
`logs/run.log`, and is split at the flow run's creation in the API (before it: Prefect's CLI,
the same for both workers). Trials wait for the run to be final in the API, and 2 s more, before the next one. First our
worker (flows/worker.py: it starts as soon as the run is scheduled, forked from its warm
process), then Prefect's `process` worker on the same pool (a new interpreter per run).
Each worker's first run after it started is reported apart from the median.

    .venv/bin/python bench/deployment_latency.py [--trials 10]
"""

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import BIN, median, spread, wait_warm
from services import free_port

REPO = Path(__file__).resolve().parent.parent
OPERATE = str(REPO / "scripts" / "operate")


def model_started(run_dir: Path, deadline: float) -> float:
    """The model's start time (epoch seconds) from the first line of its run log."""
    log = run_dir / "logs" / "run.log"
    while time.time() < deadline:
        if log.is_file() and (first := log.read_text().split("\n", 1)[0]).startswith("# "):
            return datetime.fromisoformat(first.split()[1]).timestamp()
        time.sleep(0.05)
    raise SystemExit(f"the model of {run_dir} did not start")


def read_flow_run(flow_run_id: str):
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return await client.read_flow_run(flow_run_id)

    return asyncio.run(read())


def wait_finished(flow_run_id: str, deadline: float) -> None:
    """Until the run is final in the API, then a quiet moment: the next trial starts on an idle host
    (on SQLite, a run's start that overlaps another's last writes can meet a 503 and a 2 s retry)."""
    while not read_flow_run(flow_run_id).state.is_final() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(2.0)


def trial(work: Path, env: dict[str, str], run_id: str) -> tuple[float, float]:
    """(command start -> flow run created, created -> model started) of one deployment run."""
    overrides = json.dumps({"config.run_id": run_id, "config.period.duration": "2d"})
    start = time.time()
    ran = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", "model-pipeline/veros-acc", "--param", f"overrides={overrides}"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    model = model_started(work / "runs" / run_id, start + 120)
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", ran.stdout).group(1)
    wait_finished(flow_run_id, start + 300)
    created = read_flow_run(flow_run_id).created.timestamp()
    return created - start, model - created


def series(name: str, work: Path, env: dict[str, str], trials: int) -> dict[str, object]:
    first = sum(trial(work, env, f"{name}-first"))
    splits = [trial(work, env, f"{name}{n}") for n in range(trials)]
    totals = [a + b for a, b in splits]
    return {"first": first, "totals": totals, "cli": [a for a, _ in splits], "worker": [b for _, b in splits]}


def start_prefect_worker(work: Path, env: dict[str, str]) -> subprocess.Popen:
    """Prefect's own process worker on the same pool, polling as often as ours."""
    log = open(work / "prefect-worker.log", "w")  # noqa: SIM115 - the worker's for its life
    worker_env = {**env, "PREFECT_WORKER_QUERY_SECONDS": env.get("ROMPY_TASKS_WORKER_POLL", "1")}
    return subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "rompy-process", "--type", "process"],
        env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop_prefect_worker(worker: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL: Prefect's worker once took over 30 s to end on SIGTERM, and the
    figures were printed only after it."""
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        print("  (Prefect's process worker did not end 30 s after SIGTERM: killed)")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)


def report(name: str, result: dict[str, object]) -> None:
    totals, cli, worker = result["totals"], result["cli"], result["worker"]
    print(f"  {name:<26} median {median(totals):.2f} s   {spread(totals)}")
    print(f"  {'':<26} CLI to the run's creation {median(cli):.2f} s, creation to model {median(worker):.2f} s;"
          f" first run after the worker started {result['first']:.2f} s")  # fmt: skip
    slow = [f"{a + b:.2f} s = {a:.2f} + {b:.2f}" for a, b in zip(cli, worker, strict=True) if a + b > 2.0]
    if slow:  # which side a slow trial lost its time on
        print(f"  {'':<26} trials over 2 s (CLI + worker): {'; '.join(slow)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rompy-deploy-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            ROMPY_TASKS_OPERATE_DIR=str(work / "operate"),
            ROMPY_TASKS_DATA_DIR=str(work / "data"),  # the worker's warm process, ours alone
            ROMPY_TASKS_PORT=str(port),
            ROMPY_TASKS_RUNS=str(work / "runs"),
            PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        )
        subprocess.run([OPERATE, "start"], env=env, check=True, stderr=subprocess.DEVNULL)
        env["PREFECT_API_AUTH_STRING"] = (work / "operate" / "api-auth").read_text().strip()  # as operate says
        os.environ.update(env)  # read_flow_run's client
        prefect_worker = None
        try:
            wait_warm(env)  # the worker started its warm process: an idle, ready host
            ours = series("ours", work, env, args.trials)
            subprocess.run([OPERATE, "stop", "worker"], env=env, check=True, stderr=subprocess.DEVNULL)
            prefect_worker = start_prefect_worker(work, env)
            time.sleep(5)  # started and polling
            theirs = series("prefect", work, env, args.trials)
            command = "`prefect deployment run model-pipeline/veros-acc`"
            print(f"{command} -> model process started, {args.trials} trials each:")
            report("rompy-tasks worker", ours)
            report("Prefect's process worker", theirs)
            print(f"  ratio (ours / Prefect's, medians): {median(ours['totals']) / median(theirs['totals']):.2f}x")
        finally:
            if prefect_worker is not None:
                stop_prefect_worker(prefect_worker)
            subprocess.run([OPERATE, "stop"], env=env, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
