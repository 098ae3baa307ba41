"""The operational stack of scripts/operate, as tests drive it (see the `operated` fixture)."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from services import api_request

REPO = Path(__file__).resolve().parent.parent
PREFECT = Path(sys.executable).parent / "prefect"
OPERATE = REPO / "scripts" / "operate"


class Operated:
    """One scripts/operate stack in `tmp`: its API (with its auth string), deployments and worker log."""

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

    @property
    def auth(self) -> str:
        """The API's auth string: scripts/operate makes one and keeps it beside its state."""
        return (self.tmp / "op" / "api-auth").read_text().strip()

    def api(self, method: str, path: str, body: dict | None = None) -> dict | list:
        return api_request(f"{self.url}/api", method, path, body, auth=self.auth)

    def deployment(self, name: str) -> dict:
        return self.api("GET", f"/deployments/name/{name}")

    def deployment_run(self, name: str, *params: str) -> subprocess.CompletedProcess:
        args = [PREFECT, "deployment", "run", name, "--watch", "--watch-timeout", "300"]
        for param in params:
            args += ["--param", param]
        env = {**self.client_env, "PREFECT_API_AUTH_STRING": self.auth}
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)

    def flow_run_of(self, ran: subprocess.CompletedProcess) -> dict:
        """The flow run a `deployment_run` created (from the id it printed)."""
        return self.api("GET", f"/flow_runs/{re.search(r'UUID: ([0-9a-f-]{36})', ran.stdout).group(1)}")

    def final_flow_run(self, run_id: str, seconds: float = 300) -> dict:
        """The flow run `run_id` once it has ended (the worker picks it up and runs it)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            run = self.api("GET", f"/flow_runs/{run_id}")
            if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                return run
            time.sleep(1)
        raise AssertionError(f"flow run {run_id} did not end: {self.worker_log()}")

    def worker_log(self) -> str:
        return (self.tmp / "op" / "worker.log").read_text()[-3000:]
