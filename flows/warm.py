"""The warm command process: Prefect and our flows imported once, a fork per command.

`python -m flows.warm SOCKET` (started by flows/entry.py). It imports what a command needs,
then, single-threaded, accepts one request at a time on SOCKET (a Unix socket only its user
can reach): the command's argv, environment, working directory, umask and terminal (file
descriptors 0-2). It forks; the child takes all of those over, runs the command as
`rompy-tasks` would and reports its exit code back on the connection.

It refuses (the client then runs the command itself) when its code or the installed plugins
changed since it started (it exits then), and exits after `IDLE_SECONDS` without a command
(`ROMPY_TASKS_WARM_IDLE`, default 30 minutes).
`rompy-tasks server stop` stops it too (`command_socket.stop_all`).
"""

import fcntl
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from flows.command_socket import EXIT_HOOKS, HEADER, commands_dir
from rompy_tasks.data_dir import open_private, write_private

IDLE_SECONDS = float(os.environ.get("ROMPY_TASKS_WARM_IDLE", "1800"))  # then it exits
PLUGIN_GROUPS = ("rompy_tasks.config", "rompy_tasks.run", "rompy_tasks.postprocess", "rompy.config")
SOURCES = [Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "rompy_tasks"]


def fingerprint(loaded: list[str] = ()) -> str:
    """What the imported code is: our source files, the `loaded` module files (path, size, mtime),
    the installed distributions (their metadata directories name their versions) and the plugin
    entry points. An edited plugin module or an upgraded dependency changes it."""
    digest = hashlib.sha256()
    files = [str(path) for root in SOURCES for path in sorted(root.rglob("*.py"))]
    for path in [*files, *loaded]:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0gone\n".encode())
    for directory in sys.path:
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith((".dist-info", ".egg-info", ".pth")))
        except OSError:  # also "" (the working directory: never imported from, -P)
            continue
        digest.update(f"{directory}\0{'/'.join(names)}\n".encode())
    for group in PLUGIN_GROUPS:
        for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
            digest.update(f"{group}\0{ep.name}\0{ep.value}\n".encode())
    return digest.hexdigest()


def loaded_module_files() -> list[str]:
    """The files of every module imported now (plugins and dependencies included)."""
    return sorted({f for m in list(sys.modules.values()) if isinstance(f := getattr(m, "__file__", None), str)})


def warm_up() -> None:
    """Import what commands need, without starting any thread (the process forks afterwards)."""
    import anyio._backends._asyncio  # noqa: F401  (what a flow run imports on its first API call)
    import prefect.deployments.steps  # noqa: F401  (a deployment's pull steps)
    import prefect.engine  # noqa: F401  (`rompy-tasks engine`: a worker's flow run)
    import prefect.flow_engine  # noqa: F401
    import prefect.task_engine  # noqa: F401
    import prefect.utilities.visualization  # noqa: F401

    import flows.cli.root  # noqa: F401
    import flows.ensemble  # noqa: F401
    import flows.forecast  # noqa: F401
    import flows.pipeline  # noqa: F401
    from rompy_tasks.plugins import pipeline_config_class

    pipeline_config_class()


def serve(path: Path) -> None:
    commands_dir()  # private to us, checked (else UnsafeDataDir: no warm process)
    lock = os.fdopen(open_private(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT), "w")  # held for life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another one serves this socket
    write_private(path.with_suffix(".pid"), f"{os.getpid()}\n")
    os.chdir("/")
    before = fingerprint()  # before importing: an edit during the imports is seen
    warm_up()
    loaded = loaded_module_files()
    if fingerprint() != before:
        return  # changed while importing: serve nothing stale
    started = fingerprint(loaded)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    listener.settimeout(IDLE_SECONDS)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    print(f"{time.strftime('%FT%T')} warm command process {os.getpid()} serving {path}", flush=True)
    while True:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            break
        with connection:
            request, fds = _receive(connection)
            if request is None:
                continue
            if connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[4:8] != os.getuid().to_bytes(
                4, sys.byteorder
            ):
                _close(fds)
                continue  # only our own user may run commands here (the socket is 0600 anyway)
            if fingerprint(loaded) != started or threading.active_count() != 1:
                _reply(connection, {"refused": "the installed code changed; this process exits"})
                _close(fds)
                break
            pid = os.fork()
            if pid == 0:
                listener.close()
                lock.close()  # the lock stays the server's alone: a command outliving it must not hold it
                _run_command(connection, request, fds)  # never returns
            _close(fds)
            _reply(connection, {"pid": pid})
    path.unlink(missing_ok=True)


def _receive(connection: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
    if len(data) < HEADER.size or len(fds) != 3:
        _close(fds)
        return None, []
    (length,) = HEADER.unpack(data[: HEADER.size])
    body = data[HEADER.size :]
    while len(body) < length:
        chunk = connection.recv(length - len(body))
        if not chunk:
            _close(fds)
            return None, []
        body += chunk
    return json.loads(body), fds


def _reply(connection: socket.socket, message: dict[str, Any]) -> None:
    try:
        connection.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _run_command(connection: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the client's command, run it, report the exit code, exit."""
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    _close(fds)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    sys.argv = ["rompy-tasks", *request["argv"]]
    threading.Thread(target=_die_with_client, args=(connection,), daemon=True).start()

    from prefect.context import refresh_global_settings_context

    import flows
    from flows.cli.common import reset_consoles
    from flows.cli.root import main

    flows.set_prefect_defaults()
    refresh_global_settings_context()
    reset_consoles()
    EXIT_HOOKS.append(lambda code: _reply(connection, {"exit": code}))
    main()


def _die_with_client(connection: socket.socket) -> None:
    """The client sends nothing more: the connection ends only when it exits or dies. If it ends
    before this command does, the command dies as the client's own process would have (SIGKILL)."""
    try:
        while connection.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
