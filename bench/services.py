"""Real Prefect services started from Python: `prefect server start` and workers.

The end-to-end tests and the benchmarks use these (scripts/operate is the shell version for
a lasting local setup). Each service runs in its own session and is stopped with its whole
process group.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rompy_tasks.backends.guard import api_headers
from rompy_tasks.backends.process import kill_group
from rompy_tasks.local_server import free_port

BIN = Path(sys.executable).parent


@contextmanager
def prefect_server(home: Path, log: Path) -> Iterator[dict[str, str]]:
    """A real `prefect server start` on a free loopback port; yields the env for its clients."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"prefect server did not start; see {log}") from None
                time.sleep(0.5)
        yield {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(home)}
    finally:
        kill_group(proc.pid, proc, grace=20)


@contextmanager
def prefect_worker(pool: str, worker_type: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """A real `prefect worker start` polling `pool`."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", worker_type],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        kill_group(proc.pid, proc, grace=20)


def prefect_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def api_request(
    api_url: str, method: str, path: str, body: dict | None = None, attempts: int = 6, auth: str | None = None
) -> Any:
    """One call to the Prefect REST API, retried like Prefect's own client.

    The server answers 503 for errors a client should retry (e.g. SQLite busy while the
    scheduler inserts runs), and 429/502 under load; a busy SQLite server may also not answer
    within the timeout. `auth`: the server's auth string.
    """
    request = urllib.request.Request(
        f"{api_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers=api_headers(auth),
    )
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code not in {429, 502, 503} or attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2**attempt)
        except TimeoutError:
            if attempt == attempts - 1:
                raise
