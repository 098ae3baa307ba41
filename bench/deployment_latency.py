"""`prefect deployment run` of the pipeline deployment -> the model process starts.

The operational setup of `scripts/operate start` (server, process work pool, worker polling
every ROMPY_TASKS_WORKER_POLL seconds, default 1), in a temporary directory. Each trial is
what an operator types: `prefect deployment run model-pipeline/veros-acc --param ...`; the
latency runs from that command's start to the model's start as recorded in the run's
`logs/run.log`. Trials wait for the run to finish before the next one.

    .venv/bin/python bench/deployment_latency.py [--trials 5]
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import BIN, median, spread
from services import free_port

REPO = Path(__file__).resolve().parent.parent


def model_started(run_dir: Path, deadline: float) -> float:
    """The model's start time (epoch seconds) from the first line of its run log."""
    log = run_dir / "logs" / "run.log"
    while time.time() < deadline:
        if log.is_file() and (first := log.read_text().split("\n", 1)[0]).startswith("# "):
            return datetime.fromisoformat(first.split()[1]).timestamp()
        time.sleep(0.05)
    raise SystemExit(f"the model of {run_dir} did not start")


def wait_finished(run_dir: Path, deadline: float) -> None:
    while not (run_dir / "rompy_tasks_run.json").is_file() and time.time() < deadline:
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    latencies = []
    with tempfile.TemporaryDirectory(prefix="rompy-deploy-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            ROMPY_TASKS_OPERATE_DIR=str(work / "operate"),
            ROMPY_TASKS_PORT=str(port),
            ROMPY_TASKS_RUNS=str(work / "runs"),
            PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        )
        subprocess.run([str(REPO / "scripts" / "operate"), "start"], env=env, check=True, stderr=subprocess.DEVNULL)
        env["PREFECT_API_AUTH_STRING"] = (work / "operate" / "api-auth").read_text().strip()  # as operate says
        try:
            for trial in range(args.trials):
                run_id = f"latency{trial}"
                overrides = json.dumps({"config.run_id": run_id, "config.period.duration": "2d"})
                start = time.time()
                subprocess.run(
                    [str(BIN / "prefect"), "deployment", "run", "model-pipeline/veros-acc", "--param",
                     f"overrides={overrides}"],
                    env=env, check=True, stdout=subprocess.DEVNULL,
                )  # fmt: skip
                latencies.append(model_started(work / "runs" / run_id, start + 120) - start)
                wait_finished(work / "runs" / run_id, start + 300)
        finally:
            subprocess.run([str(REPO / "scripts" / "operate"), "stop"], env=env, stderr=subprocess.DEVNULL)
    print(f"`prefect deployment run model-pipeline/veros-acc` -> model process started, {args.trials} trials:")
    print(f"  median {median(latencies):.2f} s   {spread(latencies)}")


if __name__ == "__main__":
    main()
