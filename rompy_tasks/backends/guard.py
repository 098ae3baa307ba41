"""A watchdog that takes an orchestrator's models down with it, even after SIGKILL.

`PR_SET_PDEATHSIG` reaches only the model's direct child; a model started through a wrapper
(`sh -c 'a & b & wait'`, an `mpirun`, a launcher script) would leave its children running
beside a re-run in the same directory. So each orchestrator process starts one guard: a
small stdlib-only Python process, in its own session (terminal signals do not reach it),
that reads what to watch from a pipe only the orchestrator holds:

    +group <pgid>    -group <pgid>     a model's process group (local backend, SLURM worker)
    +slurm <name>    -slurm <name>     SLURM jobs named <name> (one ensemble's worker jobs)

When the pipe ends (the orchestrator exited or died, however), it SIGKILLs every group still
listed and cancels every SLURM job still listed, then exits; after a clean run nothing is listed.
The guard runs this file as a script (`python -I -S guard.py`), so it imports nothing of ours;
`watch`/`unwatch` are the orchestrator's side.
"""

import os
import signal
import subprocess
import sys
import threading

_lock = threading.Lock()
_pipe: tuple[int, int] | None = None  # (pid of the orchestrator that started the guard, write end)
_guard: subprocess.Popen | None = None


def _send(line: str) -> None:
    """Tell this process's guard one line, starting the guard first if this process has none."""
    global _pipe, _guard
    with _lock:
        if _pipe is None or _pipe[0] != os.getpid():  # none yet, or inherited through a fork
            read_end, write_end = os.pipe()  # both ends close-on-exec: no model inherits them
            _guard = subprocess.Popen(  # noqa: S603 - our own script, no shell
                [sys.executable, "-I", "-S", __file__],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            os.close(read_end)
            _pipe = (os.getpid(), write_end)
        try:
            os.write(_pipe[1], (line + "\n").encode())
        except BrokenPipeError:  # someone killed the guard: the next line starts a new one
            os.close(_pipe[1])
            _pipe = None


def watch(kind: str, value: object) -> None:
    """Kill this (`group` pgid) or cancel these (`slurm` job name) if this process dies."""
    _send(f"+{kind} {value}")


def unwatch(kind: str, value: object) -> None:
    """Forget what `watch` registered (it ended normally)."""
    _send(f"-{kind} {value}")


def main() -> None:
    groups: set[int] = set()
    slurm_names: set[str] = set()
    for line in sys.stdin:
        op, _, arg = line.strip().partition(" ")
        if op in ("+group", "-group") and arg.isdigit():
            (groups.add if op == "+group" else groups.discard)(int(arg))
        elif op in ("+slurm", "-slurm") and arg:
            (slurm_names.add if op == "+slurm" else slurm_names.discard)(arg)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    for name in slurm_names:
        subprocess.run(["scancel", "--name", name], check=False, capture_output=True)  # noqa: S603, S607


if __name__ == "__main__":
    main()
