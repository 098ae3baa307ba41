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


NGINX = "/usr/sbin/nginx"


@contextmanager
def nginx_serving(directory: Path, work: Path) -> Iterator[tuple[str, Path]]:
    """nginx (Debian's) serving `directory` on loopback, with byte ranges as real data servers do
    (Python's http.server has none, so fsspec would fetch whole files). Yields the base URL and
    the access log, one line per request: `<status> <body bytes sent> "<range asked>" <path>`."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = work / "access.log"
    config = work / "nginx.conf"
    config.write_text(
        f"""pid {work / "nginx.pid"};
error_log {work / "error.log"};
events {{ worker_connections 64; }}
http {{
    log_format bytes '$status $body_bytes_sent "$http_range" $uri';
    access_log {log} bytes;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    server {{ listen 127.0.0.1:{port}; root {directory.resolve()}; autoindex on; }}
}}
"""
    )
    process = subprocess.Popen(  # noqa: S603 - Debian's nginx with our own config
        [
            NGINX,
            "-c",
            str(config),
            "-p",
            str(work),
            "-g",
            "daemon off; user root;" if os.getuid() == 0 else "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "stderr.log", "wb"),  # noqa: SIM115 - the child's
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_answers(url, process, work / "stderr.log", 15)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=10)


def served_requests(log: Path) -> list[tuple[int, int, str]]:
    """(status, body bytes, range asked) of each request for a file in an nginx access log of
    `nginx_serving`; the readiness probes (`/`, written to the log a moment later) left out."""
    requests = []
    for line in log.read_text().splitlines():
        status, sent, rest = line.split(" ", 2)
        asked, _, path = rest.rpartition(" ")
        if path != "/":
            requests.append((int(status), int(sent), asked.strip('"')))
    return requests


def bytes_served(log: Path) -> int:
    """The body bytes served for files (what a client fetched), from `nginx_serving`'s access log."""
    return sum(sent for _, sent, _ in served_requests(log))


@contextmanager
def s3_endpoint(work: Path, port: int | None = None) -> Iterator[dict[str, str]]:
    """An S3-compatible API on loopback (moto's server mode), on `port` or a free one. Yields the
    environment a client (fsspec's s3fs, boto3) needs to reach it: endpoint and throwaway credentials."""
    port = port or free_port()
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "moto.log", "wb")  # noqa: SIM115 - the child's
    process = subprocess.Popen(  # noqa: S603 - moto's console script from our environment
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_answers(endpoint, process, work / "moto.log")
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - moto's throwaway credentials
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@contextmanager
def opendap_server(directory: Path, work: Path) -> Iterator[str]:
    """pydap's OPeNDAP server on loopback serving the NetCDF files of `directory`; yields its URL."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "pydap.log", "wb")  # noqa: SIM115 - the child's
    process = subprocess.Popen(  # noqa: S603 - pydap's console script from our environment
        [str(Path(sys.executable).parent / "pydap"), "--data", str(directory), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_answers(url, process, work / "pydap.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _wait_answers(url: str, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    """Until `url` answers at all (any HTTP status); the server's log if it exits or never answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=1).read()  # noqa: S310 - our loopback server
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer: {log.read_text()[-800:]}") from None
            time.sleep(0.1)
