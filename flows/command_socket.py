"""What the `rompy-tasks` client (flows/entry.py), the CLI and the warm command process share.

Where a warm command process listens (one socket per data directory and process context), how a
request is framed, the hooks a command runs with its exit code, and how to stop the warm
processes. Stdlib only, so the client starts fast; no module here imports the warm process.
"""

import fcntl
import hashlib
import os
import resource
import signal
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from rompy_tasks.data_dir import open_private, private_dir, process_matches, read_private

HEADER = struct.Struct("!Q")  # the request's length, before the request (JSON)
# what decides which modules (our code, plugins) a command imports, besides the interpreter
IMPORT_ENVIRONMENT = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONUSERBASE")
EXIT_HOOKS: list[Callable[[int], None]] = []  # called with a command's exit code, last (entry, warm)


def commands_dir() -> Path:
    """Beside the local server's directory (local_server.server_dir): private to this user (0700, checked).

    Raises UnsafeDataDir where another user could have made or changed it: no warm process then.
    """
    return private_dir("commands")


def environment_key() -> str:
    """One warm process per Python environment and process context.

    A command must run with its own installation and plugins, and where the caller's own process
    would have run: in its cgroup (a SLURM allocation, a systemd slice), on its CPUs, with its
    resource limits, priority, groups and namespaces. The warm process is started from the first
    command's context, so a caller in another context gets (and starts) its own.
    """
    parts = [sys.executable, sys.prefix, *(os.environ.get(name, "") for name in IMPORT_ENVIRONMENT)]
    parts += [_read("/proc/self/cgroup"), repr(sorted(os.sched_getaffinity(0)))]
    parts += [repr(resource.getrlimit(getattr(resource, n))) for n in dir(resource) if n.startswith("RLIMIT_")]
    parts += [repr(os.getpriority(os.PRIO_PROCESS, 0)), repr((os.getgid(), sorted(os.getgroups())))]
    parts += [_readlink(f"/proc/self/ns/{ns}") for ns in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def socket_path() -> Path:
    return commands_dir() / f"{environment_key()}.sock"


def lock_held(lock_path: Path) -> bool:
    """True if a warm command process holds `lock_path` (each holds its `<key>.lock` for life)."""
    try:
        lock = os.fdopen(open_private(lock_path))
    except OSError:
        return False  # a link or gone: not a lock of ours
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False  # nobody holds it
        except BlockingIOError:
            return True


def warm_process_serving() -> bool:
    """True if this environment's warm command process runs (serving, or still importing)."""
    return lock_held(socket_path().with_suffix(".lock"))


def stop_all() -> int:
    """SIGTERM the warm command processes of this data directory; how many there were."""
    return sum(stop_warm_process(lock_path) for lock_path in commands_dir().glob("*.lock"))


def stop_warm_process(lock_path: Path | None = None) -> bool:
    """SIGTERM the warm command process holding `lock_path` (default: this environment's); True if one ran."""
    lock_path = lock_path or socket_path().with_suffix(".lock")
    if not lock_held(lock_path):
        return False
    try:
        pid_text = read_private(lock_path.with_suffix(".pid")).strip()
    except OSError:
        pid_text = ""
    # only the warm process serving this very socket, never whatever pid a file names
    if pid_text.isdigit() and process_matches(int(pid_text), "flows.warm", str(lock_path.with_suffix(".sock"))):
        try:
            os.kill(int(pid_text), signal.SIGTERM)
            return True
        except ProcessLookupError:
            pass
    return False
