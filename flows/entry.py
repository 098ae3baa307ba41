"""The `rompy-tasks` command: hand the command to the warm command process, or run it here.

Importing Prefect and our flows costs a command about 1.2 s, most of a short run's overhead.
A warm command process (flows/warm.py, one per data directory and Python environment) keeps
them imported and forks a fresh process for each command, which gets this terminal (stdin,
stdout, stderr), environment, working directory and umask. Ctrl-C and SIGTERM here are passed
on to it; if this process dies, that process kills itself, as this one would have died.

Only stdlib is imported here, so a warm command starts in a few tens of milliseconds. Without a
warm process (the first command, or `ROMPY_TASKS_WARM=0`) the command runs in this process as
before and starts one in the background when it ends. Commands that run no flow always run here.
"""

import json
import os
import signal
import socket
import struct
import sys

from flows.command_socket import EXIT_HOOKS, HEADER, commands_dir, environment_key, socket_path
from flows.global_options import split_global_options
from rompy_tasks.data_dir import UnsafeDataDir, open_private

FLOW_COMMANDS = {"run", "pipeline", "generate", "postprocess", "engine"}  # and ensemble, forecast run|backfill
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def wants_warm(argv: list[str]) -> bool:
    """Only commands that run flows; the others (validate, status, ...) need no Prefect."""
    argv, options = split_global_options(argv)  # rompy's -v etc. may stand anywhere
    if os.environ.get("ROMPY_TASKS_WARM", "1") == "0" or len(argv) < 2 or {"--help", "-h"} & set(argv):
        return False
    if options.version:
        return False
    command, second = argv[0], argv[1]
    if command == "forecast":
        return second in {"run", "backfill"}
    if command == "ensemble":
        return second != "validate"  # `ensemble FILE` and `ensemble run FILE` run it
    return command in FLOW_COMMANDS


def run_warm(argv: list[str]) -> int | None:
    """The command's exit code from the warm process, or None when there is none to take it.

    Our environment, working directory and terminal go only to a process of our own user, in our
    own private directory (checked from the data directory down).
    """
    try:
        path = socket_path()
    except (UnsafeDataDir, OSError):
        return None  # run here, and start no warm process (start_warm_process fails the same way)
    if len(str(path)) > 100:  # AF_UNIX paths are at most 108 bytes
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
        if not _peer_is_us(connection):
            connection.close()
            return None
        request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": _umask()}).encode()
        socket.send_fds(connection, [HEADER.pack(len(request)) + request], [0, 1, 2])
        replies = ReplyLines(connection)
        reply = replies.next()
    except OSError:
        connection.close()
        return None
    if reply.get("pid") is None:  # refused: stale code or a busy process; run here
        connection.close()
        return None
    return follow(replies, int(reply["pid"]))


KILLED_EXIT_CODE = 128 + signal.SIGKILL  # what a shell reports for a command killed with SIGKILL


def follow(replies: "ReplyLines", pid: int) -> int:
    """Pass signals on to the command's process and wait for its exit code."""

    def forward(signum: int, frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    while True:
        try:
            ended = replies.next()
            break
        except InterruptedError:
            continue
        except OSError:
            ended = {}
            break
    if "exit" not in ended:  # it died without reporting: killed (SIGKILL, the OOM killer)
        sys.stderr.write(
            f"rompy-tasks: the command's process {pid} was killed before it finished; its guard stopped "
            "its models and marked its runs Crashed\n"
        )
        return KILLED_EXIT_CODE
    return int(ended["exit"])


class ReplyLines:
    """The warm process's replies, one JSON line each: its pid, then the exit code. Both may
    arrive in one read (a command that ends at once), so what follows a line is kept."""

    def __init__(self, connection: socket.socket):
        self.connection, self.buffer = connection, b""

    def next(self) -> dict:
        """The next reply; {} when the connection ends first."""
        while b"\n" not in self.buffer:
            chunk = self.connection.recv(4096)
            if not chunk:
                return {}
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)


def _peer_is_us(connection: socket.socket) -> bool:
    """True if the process listening on the socket runs as our user (SO_PEERCRED: pid, uid, gid)."""
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", credentials)
    return uid == os.getuid()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main() -> None:
    argv = sys.argv[1:]
    if wants_warm(argv):
        code = run_warm(argv)
        if code is not None:
            sys.exit(code)
    from flows.cli.root import main as run_here

    if wants_warm(argv):  # none answered: start one for the next command, once this one has ended
        EXIT_HOOKS.append(lambda code: start_warm_process())
    run_here()


def start_warm_process() -> None:
    """Start the warm command process in the background, in its own session; it exits when idle."""
    import subprocess

    try:
        directory = commands_dir()
        log = os.fdopen(open_private(directory / f"{environment_key()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND))
    except (UnsafeDataDir, OSError):
        return
    subprocess.Popen(  # noqa: S603 - our interpreter and module
        [sys.executable, "-P", "-m", "flows.warm", str(socket_path())],  # -P: not the cwd's modules
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        env={**os.environ, "ROMPY_TASKS_WARM": "0"},
    )
    log.close()


if __name__ == "__main__":
    main()
