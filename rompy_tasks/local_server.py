"""The local Prefect server that the CLI starts once, in the background, and then reuses.

Without `PREFECT_API_URL` every Prefect flow would start a temporary API server (7-18 s a
command). Instead `rompy-tasks run` (and `ensemble`, `forecast run|backfill`) starts one
`prefect server start` on loopback the first time and reuses it afterwards; `rompy-tasks
server start|stop|status` manage it by hand. Its home (database, UI files), its log and a
small state file live in `<data dir>/rompy-tasks/server/`, where the data dir is
`$ROMPY_TASKS_DATA_DIR`, else `$XDG_DATA_HOME`, else `~/.local/share`.

A new server's database takes Prefect about 9 s to create (migrations, block types), so
installing (`scripts/setup`, or `rompy-tasks server prepare`) initialises one home once, in
the virtualenv, per Prefect version; a first start copies it, and Prefect's own start-up
checks then find nothing to do. Without that template the first start simply takes longer.

A restarted server keeps its port when it is free (running commands reconnect to the same
URL). The state file records the server's pid, port and process start time; a pid is trusted
only while that process still has the same start time (pids are reused), and a server is
reused only while it answers its health check. Concurrent first starts are serialised by
a file lock, so two commands never start two servers.

On a shared host (an HPC login node) other local users reach the same loopback port. So the
server requires an auth string (HTTP basic auth, Prefect's `PREFECT_SERVER_API_AUTH_STRING`),
kept in `server/auth` (0600, in 0700 directories); the CLI sends it (`PREFECT_API_AUTH_STRING`
in its environment, which its workers and SLURM jobs inherit; it is never written into a job
script or a log), and the UI asks for it once. A server started without one is replaced.
"""

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rompy_tasks.data_dir import (
    open_private,
    private_dir,
    process_matches,
    read_private,
    write_private,
)
from rompy_tasks.orchestrators import crash_runs_of_dead_orchestrators, process_start_time

STARTUP_TIMEOUT_SECONDS = 180.0
STOP_GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    started: int  # the process start time, in clock ticks since boot (/proc/<pid>/stat field 22)
    auth: bool = False  # it requires the auth string (servers of older versions did not)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVER_COMMAND = ("prefect", "server", "start")  # what a recorded pid's command line must show
AUTH_USER = "rompy-tasks"


def server_dir() -> Path:
    """Where the local server keeps its home, log and state: private to this user (0700, checked)."""
    return private_dir("server")


def auth_path() -> Path:
    return server_dir() / "auth"


def auth_string() -> str:
    """The local server's `user:password`, made once (0600); the UI's login asks for this whole string."""
    path = auth_path()
    try:
        return read_private(path).strip()
    except FileNotFoundError:
        import secrets

        write_private(path, f"{AUTH_USER}:{secrets.token_urlsafe(24)}\n")
        return read_private(path).strip()


def log_path() -> Path:
    return server_dir() / "server.log"


def _state_path() -> Path:
    return server_dir() / "server.json"


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _recorded() -> ServerInfo | None:
    """The server the state file names, if that very process still runs."""
    try:
        info = ServerInfo(**json.loads(read_private(_state_path())))
    except (OSError, ValueError, TypeError):
        return None
    same = process_start_time(info.pid) == info.started and process_matches(info.pid, *SERVER_COMMAND)
    return info if same else None


def status() -> ServerInfo | None:
    """The running local server that answers its health check, or None."""
    info = _recorded()
    return info if info is not None and healthy(info.api_url) else None


@contextmanager
def _locked() -> Iterator[None]:
    with os.fdopen(open_private(server_dir() / "server.lock", os.O_RDWR | os.O_CREAT), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port(preferred: int = 0) -> int:
    """`preferred` if it is free on loopback, else any free port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is fine
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_path() -> Path:
    return server_dir() / "port"


def _last_port() -> int:
    """The port the server had last time (0 if none): a restart keeps its URL, so running
    commands reconnect and the UI's address stays the same."""
    try:
        return int(read_private(_port_path()))
    except (OSError, ValueError):
        return 0


def _server_environment(home: Path, port: int, auth: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    if auth:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def template_home() -> Path:
    """The initialised Prefect server home for this installation and Prefect version."""
    from importlib.metadata import version

    return Path(sys.prefix) / "share" / "rompy-tasks" / f"prefect-home-{version('prefect')}"


def _launch(home: Path, port: int, log: Path, auth: str | None = None) -> subprocess.Popen:
    prefect = Path(sys.executable).parent / "prefect"
    with os.fdopen(open_private(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a") as out:
        return subprocess.Popen(  # noqa: S603 - fixed argv
            [str(prefect), "server", "start"],
            env=_server_environment(home, port, auth),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command; stopped by `rompy-tasks server stop`
        )


def _wait_healthy(proc: subprocess.Popen, info: ServerInfo, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(info.api_url, timeout=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            _terminate(info)
            raise RuntimeError(f"the local Prefect server did not start; see {log}")
        time.sleep(0.1)


def prepare_template(timeout: float = STARTUP_TIMEOUT_SECONDS) -> tuple[Path, bool]:
    """Initialise the template home once (a server started and stopped in it); and whether it was made now."""
    template = template_home()
    if template.is_dir():
        return template, False
    staging = template.with_name(f"{template.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log = staging.parent / f"{staging.name}.log"
    port = free_port()
    proc = _launch(staging, port, log)
    info = ServerInfo(pid=proc.pid, port=port, started=process_start_time(proc.pid) or 0)
    try:
        _wait_healthy(proc, info, log, timeout)
        _terminate(info)
        proc.wait()
        os.replace(staging, template)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        log.unlink(missing_ok=True)
    return template, True


def start(timeout: float = STARTUP_TIMEOUT_SECONDS) -> tuple[ServerInfo, bool]:
    """The local server, started if it is not running; and whether this call started it."""
    with _locked():
        running = status()
        if running is not None and running.auth:
            return running, False
        stale = _recorded()
        if stale is not None:  # ours, alive, but not answering (or open to every local user): replace it
            _terminate(stale)
        home = server_dir() / "prefect-home"
        if not home.exists() and template_home().is_dir():
            shutil.copytree(template_home(), home)
        private_dir("server", "prefect-home")  # 0700: the database holds every run's parameters
        port = free_port(_last_port())
        proc = _launch(home, port, log_path(), auth_string())
        info = ServerInfo(pid=proc.pid, port=port, started=process_start_time(proc.pid) or 0, auth=True)
        write_private(_state_path(), json.dumps(asdict(info)))
        write_private(_port_path(), str(port))
        _wait_healthy(proc, info, log_path(), timeout)
        crashed = crash_runs_of_dead_orchestrators(info.api_url, auth_string())
        if crashed:  # their orchestrators died while no server answered: they would show Running for good
            print(f"marked Crashed {len(crashed)} run(s) whose command died: {', '.join(crashed)}", file=sys.stderr)
        return info, True


def _terminate(info: ServerInfo) -> None:
    """SIGTERM the server's process group, SIGKILL it after a grace period; forget it."""
    try:
        os.killpg(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while process_start_time(info.pid) == info.started and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_start_time(info.pid) == info.started:
            os.killpg(info.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if _state_path().is_file() and _recorded() is None:
        _state_path().unlink(missing_ok=True)


def stop() -> ServerInfo | None:
    """Stop the local server if it runs; the server that was stopped, or None."""
    with _locked():
        info = _recorded()
        if info is None:
            _state_path().unlink(missing_ok=True)
            return None
        _terminate(info)
        return info


def configured_api_url() -> str | None:
    """The Prefect API the user configured: `PREFECT_API_URL`, else their active Prefect profile's.

    Read without importing Prefect, so that the local server can be started (or found) before
    Prefect's settings are loaded and every thread of the command sees the same API.
    """
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    import tomllib

    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        document = tomllib.loads(path.read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or document.get("active", "ephemeral")
    return (document.get("profiles", {}).get(active) or {}).get("PREFECT_API_URL") or None
