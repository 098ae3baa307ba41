"""Shared fixtures: one real Prefect API for the session, helpers for real processes.

The Prefect test harness starts a real API server (SQLite in a temp dir). Its URL is also
handed to CLI subprocesses, so they use it instead of each starting a temporary server.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from operated import OPERATE, Operated
from services import free_port

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "flows.entry"]  # what the `rompy-tasks` script runs: warm commands too


@pytest.fixture(scope="session", autouse=True)
def own_data_dir(tmp_path_factory: pytest.TempPathFactory):
    """Commands that start the reused local Prefect server keep it in a temp dir, stopped at the end."""
    os.environ["ROMPY_TASKS_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    os.environ["ROMPY_TASKS_WARM_IDLE"] = "120"  # warm command processes of other data dirs end soon after
    yield
    from flows import command_socket
    from rompy_tasks import local_server

    command_socket.stop_all()
    local_server.stop()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real Prefect API server for the whole session; returns its URL."""
    results = tmp_path_factory.mktemp("prefect-results")
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(results)
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # No flow heartbeats in tests: saves about 1 s per flow and subflow.
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield PREFECT_API_URL.value()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run the real `rompy-tasks` CLI in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*CLI, *args], cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def start_cli(*args: str, api_url: str, cwd: Path | None = None) -> subprocess.Popen:
    """The real CLI in the background (to signal it), against the session's Prefect API."""
    return subprocess.Popen(
        [*CLI, *args],
        cwd=cwd or REPO,
        env={**os.environ, "PREFECT_API_URL": api_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def process_gone(pid: int) -> bool:
    """True if `pid` no longer runs (gone or a zombie awaiting its reaper)."""
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return state == "" or state.startswith("Z")


@pytest.fixture(scope="session")
def cluster() -> str:
    """The SLURM cluster of scripts/slurm-cluster (started when we are root); its partition."""
    script = REPO / "scripts" / "slurm-cluster"
    if subprocess.run([script, "status"], capture_output=True).returncode != 0:
        if os.getuid() != 0:
            pytest.skip("no SLURM cluster answering, and not root to start one (scripts/slurm-cluster)")
        subprocess.run([script, "start"], check=True)
    return "debug"


def queue_empty() -> bool:
    return subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip() == ""


def wait_queue_empty(seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not queue_empty() and time.monotonic() < deadline:
        time.sleep(0.5)
    return queue_empty()


@pytest.fixture(scope="session")
def engine():
    """The Docker engine; started here when we are root, skipped (with the reason) otherwise."""
    from rompy_tasks.backends.docker import docker_client

    script = REPO / "scripts" / "docker-engine"
    if subprocess.run([script, "status"], capture_output=True).returncode != 0:
        if os.getuid() != 0:
            pytest.skip("no Docker engine with the rompy-tasks images, and not root to start one")
        subprocess.run([script, "start"], check=True)
    return docker_client()


@pytest.fixture(scope="module")
def january_forcing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic ACC wind forcing for late December to mid January 2026 (a real NetCDF file)."""
    from datetime import datetime

    from rompy_tasks.synthetic import write_synthetic_wind

    path = tmp_path_factory.mktemp("forcing") / "wind.nc"
    return write_synthetic_wind(path, datetime(2025, 12, 25), datetime(2026, 1, 15))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what needs real infrastructure by the fixture it uses, so `-m "not slurm"` works."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "cluster" in fixtures:
            item.add_marker(pytest.mark.slurm)
        if "engine" in fixtures:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="module")
def operate_env() -> dict[str, str]:
    """Extra environment for scripts/operate start (a module overrides this fixture to add some)."""
    return {}


@pytest.fixture(scope="module")
def operated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, operate_env: dict[str, str]
) -> Iterator[Operated]:
    """scripts/operate start (server with auth, pool, deployments, worker) for the module.

    A module that sets `OPERATE_DATABASE = "postgres"` gets the server on PostgreSQL; its state
    then lives in a directory under /tmp the `postgres` user can traverse (pytest's are 0700).
    Stopped afterwards, checking nothing is left running.
    """
    database = getattr(request.module, "OPERATE_DATABASE", "sqlite")
    if database == "postgres":
        base = Path(tempfile.mkdtemp(prefix="rompy-operate-", dir="/tmp"))
        base.chmod(0o711)
    else:
        base = tmp_path_factory.mktemp("operate")
    op = Operated(base, free_port())
    op.env.update(ROMPY_TASKS_PG_PORT=str(free_port()), **operate_env)
    started = subprocess.run(
        [OPERATE, "start", "--database", database], env=op.env, capture_output=True, text=True, timeout=600
    )
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        yield op
    finally:
        stopped = subprocess.run([OPERATE, "stop"], env=op.env, capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0
        status = subprocess.run([OPERATE, "status"], env=op.env, capture_output=True)
        assert status.returncode != 0, "nothing left running"
        if database == "postgres":
            shutil.rmtree(base)


@pytest.fixture
def http_server(tmp_path):
    """nginx on loopback serving tmp_path/www, with byte ranges (skips where nginx is not installed)."""
    from services import NGINX, nginx_serving

    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (scripts/test installs Debian's nginx-light as root)")
    www = tmp_path / "www"
    www.mkdir()
    with nginx_serving(www, tmp_path / "nginx") as (url, log):
        yield www, url, log


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """An S3-compatible endpoint on loopback (moto's server mode) with a bucket `data`; the
    environment points fsspec's s3fs at it (skips where moto is not installed)."""
    from services import s3_endpoint

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("s3fs") is None:
        pytest.skip("moto and s3fs are not installed (the dev extra installs them)")
    with s3_endpoint(tmp_path / "moto") as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("data")
        yield env
