"""Own a child process tree: start it in its own session, stream its output, kill it all.

Used by the local backend, and by the SLURM backend inside the allocation. The model
starts in a new session (its own process group); stdout and stderr are merged and
streamed line by line to a log file and a callback as they arrive. Timeout, Ctrl-C or
cancellation send SIGTERM to the whole group, then SIGKILL after a grace period; after a
normal exit any leftover group member is killed too, so no orphan survives. If this process
itself is SIGKILLed (nothing can run then), the whole group dies too: the model's leader by
the kernel (PR_SET_PDEATHSIG, set by util-linux `setpriv --pdeathsig` just before it execs the
model) and the rest of the group by this process's `guard`, so a re-run never races a model
(or a wrapper's children) left over from the run before. Descendants that leave the group
(`setsid`) are found too: each run is contained in a cgroup of its own where cgroup v2 is
writable and by a tag in its environment (`guard.kill_run`). Starting through `setpriv`
rather than a `preexec_fn` lets Python start the child with vfork (a full fork of a large
orchestrator costs milliseconds per model) and runs no Python code in the forked child.
"""

import ctypes
import os
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from rompy_tasks.backends import guard
from rompy_tasks.backends.base import BaseBackendConfig, LineSink, RunResult, raise_for_exit, stage_log_path
from rompy_tasks.core.errors import ModelRunError
from rompy_tasks.core.run_files import open_for_append

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun

TERM_GRACE_SECONDS = 10.0

# Process groups of the models running now, so that whoever cancels many runs at once (an
# ensemble's flow, interrupted in its main thread) can take every tree down.
_running_groups: set[int] = set()
_running_lock = threading.Lock()
_refusing = threading.Event()  # set while stopping: a retry must not start a model again


def allow_starting() -> None:
    """Let models start again after `terminate_running` (a new batch in the same process)."""
    _refusing.clear()


def terminate_running(grace: float = TERM_GRACE_SECONDS) -> int:
    """SIGTERM (then SIGKILL) every model process group started here that still runs; how many.

    Until `allow_starting`, no new model starts in this process.
    """
    with _running_lock:
        _refusing.set()
        groups = list(_running_groups)
    workers = [threading.Thread(target=kill_group, args=(pgid, None, grace)) for pgid in groups]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(groups)


@dataclass
class ProcessOutcome:
    exit_code: int
    timed_out: bool
    started: datetime
    ended: datetime

    @property
    def duration_seconds(self) -> float:
        return (self.ended - self.started).total_seconds()


_PR_SET_PDEATHSIG = 1
SETPRIV = shutil.which("setpriv")


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL me when the thread that started me dies (no setpriv here)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _check_executable(argv0: str, cwd: Path, env: Mapping[str, str]) -> None:
    """Raise FileNotFoundError/PermissionError as exec would, before anything starts."""
    path = Path(cwd, argv0) if os.sep in argv0 else shutil.which(argv0, path=env.get("PATH"))
    if path is None or not Path(path).exists():
        raise FileNotFoundError(2, "No such file or directory", argv0)
    if not os.access(path, os.X_OK) or Path(path).is_dir():
        raise PermissionError(13, "Permission denied", argv0)


def _dying_with_parent(argv: list[str]) -> tuple[list[str], bool]:
    """`argv` started so that it is SIGKILLed when the thread that started it dies.

    Returns the command to start and whether a `preexec_fn` must do it instead.
    """
    if SETPRIV is None:
        return argv, True
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv], False


@dataclass(frozen=True)
class Containment:
    """One model run's processes, wherever they went: its cgroup (if one could be made) and its tag."""

    tag: str
    cgroup: str | None

    @classmethod
    def new(cls) -> "Containment":
        tag = secrets.token_hex(8)
        return cls(tag, guard.run_cgroup(tag))

    @property
    def guarded(self) -> str:
        return f"{self.tag} {self.cgroup or '-'}"

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv`, entering the run's cgroup first (the shell's pid is the model's: it execs)."""
        if self.cgroup is None:
            return argv
        enter = 'echo $$ > "$0/cgroup.procs" 2>/dev/null; exec "$@"'  # no cgroup: the tag still contains it
        return ["/bin/sh", "-c", enter, self.cgroup, *argv]

    def kill(self) -> int:
        return guard.kill_run(self.tag, self.cgroup)


# What lets a process act on the Prefect API or its database as the orchestrator does: a worker,
# a flow run and a SLURM worker job hold them, a model (or a batch command) never needs them.
ORCHESTRATOR_SECRETS = frozenset(
    {
        "PREFECT_API_AUTH_STRING",
        "PREFECT_API_KEY",
        "PREFECT_SERVER_API_AUTH_STRING",
        "PREFECT_API_DATABASE_CONNECTION_URL",
        "PREFECT_API_DATABASE_PASSWORD",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL",
        "PREFECT_SERVER_DATABASE_PASSWORD",
    }
)


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without the orchestrator's secrets, plus `extra` (the backend's
    env_vars and resolved secret_env); Python children write unbuffered so logs stream."""
    env = {name: value for name, value in os.environ.items() if name not in ORCHESTRATOR_SECRETS}
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra)
    return env


def mpi_launch(mpiexec: str, ranks: int, command: list[str]) -> list[str]:
    """`command` started as `ranks` MPI ranks by the launcher `mpiexec` (its words split, never a shell)."""
    return [*shlex.split(mpiexec), "-n", str(ranks), *command]


def mpi_environment() -> dict[str, str]:
    """What an MPI launcher needs in the model's environment: as root, Open MPI's consent to run
    (it refuses root otherwise; the model's process tree is still owned and killed as one)."""
    if os.geteuid() != 0:
        return {}
    return {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def resolve_executable(argv0: str, env: Mapping[str, str]) -> str:
    """Find a bare command on the child's PATH, else beside this interpreter (same virtualenv)."""
    if os.sep in argv0 or shutil.which(argv0, path=env.get("PATH")):
        return argv0
    sibling = Path(sys.executable).parent / argv0
    return str(sibling) if sibling.exists() else argv0


def emit_line(log_handle, on_line: LineSink | None, text: str) -> None:
    """One model output line: to the log file at once, then to the callback (whose failure is ignored)."""
    log_handle.write(text + "\n")
    log_handle.flush()
    if on_line is not None:
        try:
            on_line(text)
        except Exception:  # a logging failure must never stop the model or the log file
            pass


def _pump(stream, log_handle, on_line: LineSink | None) -> None:
    for line in iter(stream.readline, ""):
        emit_line(log_handle, on_line, line.rstrip("\n"))
    stream.close()


def kill_group(pgid: int, proc: subprocess.Popen | None = None, grace: float = TERM_GRACE_SECONDS) -> str:
    """SIGTERM the process group, wait up to `grace` s for it to go, then SIGKILL what is left.

    Returns what it took, for the run log.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return "nothing left to stop"
    deadline = time.monotonic() + grace
    if proc is not None:
        exited_within(proc, grace)
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.05)
    outcome = "stopped by SIGTERM"
    if grace > 0 and time.monotonic() >= deadline:
        outcome = f"SIGKILLed after ignoring SIGTERM for {grace:g} s"
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        exited_within(proc, None)
    return outcome


def exited_within(proc: subprocess.Popen, timeout: float | None) -> bool:
    """Wait up to `timeout` s (None: for ever) for `proc` to exit, and reap it if it did.

    Never takes Popen's waitpid lock: `Popen.wait(timeout)` polls with that lock taken, and a
    signal (SIGTERM, Ctrl-C) handled just after it is taken leaks it, after which every
    `Popen.wait` (the one that reaps the killed model) hangs for ever. So: a pidfd to wait on,
    and `os.waitpid` to reap.
    """
    if proc.returncode is not None:
        return True
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # reaped already (by Popen itself: it set returncode)
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    if not readable:
        return False
    try:
        _, status = os.waitpid(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    except ChildProcessError:  # reaped meanwhile by Popen itself, which sets returncode
        pass
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_process(
    command: list[str] | str,
    *,
    cwd: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_line: LineSink | None = None,
    shell: bool = False,
    grace: float = TERM_GRACE_SECONDS,
) -> ProcessOutcome:
    """Run `command` to completion (or timeout) and return its outcome; never leaves children."""
    env = dict(env) if env is not None else child_environment({})
    if not shell:
        command = [resolve_executable(command[0], env), *command[1:]]
    started = datetime.now(UTC)
    with open_for_append(log_path) as log_handle:
        shown = command if isinstance(command, str) else " ".join(command)
        log_handle.write(f"# {started.isoformat()} started in {cwd}: {shown}\n")
        log_handle.flush()
        contained = Containment.new()
        proc = _start(command, cwd, env, shell, log_handle, log_path, contained)
        reader = threading.Thread(target=_pump, args=(proc.stdout, log_handle, on_line), daemon=True)
        reader.start()
        try:
            timed_out = _wait_owning(proc, timeout, grace, log_handle)
        finally:
            if escaped := contained.kill():  # descendants that left the group (setsid), and their output pipe
                log_handle.write(f"# killed {escaped} process(es) of the run that had left its process group\n")
            guard.unwatch("run", contained.guarded)
            reader.join(timeout=10)
        ended = datetime.now(UTC)
        log_handle.write(
            f"# {ended.isoformat()} {'timed out' if timed_out else 'exited'} with code {proc.returncode}\n"
        )
    return ProcessOutcome(proc.returncode, timed_out, started, ended)


def _start(
    command: list[str] | str,
    cwd: Path,
    env: dict[str, str],
    shell: bool,
    log_handle: IO[str],
    log_path: Path,
    contained: Containment,
) -> subprocess.Popen:
    """Start the model in its own session and containment, dying with this process; registered to be stopped."""
    argv = ["/bin/sh", "-c", command] if shell else list(command)
    argv, needs_preexec = _dying_with_parent(contained.wrap(argv))
    env = {**env, guard.RUN_TAG: contained.tag}
    guard.watch("run", contained.guarded)
    try:
        if _refusing.is_set():
            raise OSError("the orchestrator is stopping; no model starts now")
        if not shell:
            _check_executable(command[0], cwd, env)  # setpriv would only report it as exit 127
        proc = subprocess.Popen(  # noqa: S603 - argv list; a shell only when the user asked
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if needs_preexec else None,  # noqa: PLW1509 - one syscall
            text=True,
            errors="replace",
            bufsize=1,
        )
    except OSError as err:
        contained.kill()
        guard.unwatch("run", contained.guarded)
        log_handle.write(f"# cannot start: {err}\n")
        raise ModelRunError(f"cannot start the model: {err}", None, str(log_path), [str(err)]) from None
    guard.watch("group", proc.pid)
    with _running_lock:
        _running_groups.add(proc.pid)
        if _refusing.is_set():  # started while a stop was under way
            kill_group(proc.pid, None, grace=0)
    return proc


def _wait_owning(proc: subprocess.Popen, timeout: float | None, grace: float, log_handle: IO[str]) -> bool:
    """Wait for the model; whatever ends the wait, no process of its group outlives it. Timed out?"""
    try:
        if exited_within(proc, timeout):
            return False
        kill_group(proc.pid, proc, grace)
        return True
    except BaseException as err:
        how = kill_group(proc.pid, proc, grace)  # Ctrl-C, SIGTERM, cancellation: take the tree down
        log_handle.write(f"# {datetime.now(UTC).isoformat()} cancelled ({type(err).__name__}): model {how}\n")
        raise
    finally:
        kill_group(proc.pid, None, grace=0)  # orphans left by a model that exited
        with _running_lock:
            _running_groups.discard(proc.pid)
        guard.unwatch("group", proc.pid)


def execute_process(
    backend: BaseBackendConfig,
    run: "ModelRun",
    command: list[str] | str,
    *,
    on_line: LineSink | None = None,
    shell: bool = False,
    timeout: float | None = None,
    details: dict | None = None,
) -> RunResult:
    """Run a backend's model process for `run` here: the typed result, or the typed error on failure.

    The process-based backends' one way to run a model: in `backend.cwd_for(run)`, with the
    backend's environment variables, output to the run stage's log, `timeout` defaulting to
    the backend's.
    """
    timeout = backend.timeout if timeout is None else timeout
    log_path = stage_log_path(run.staging_dir, "run")
    outcome = run_process(
        command,
        cwd=backend.cwd_for(run),
        log_path=log_path,
        env=child_environment(backend.model_environment()),
        timeout=timeout,
        on_line=on_line,
        shell=shell,
    )
    result = RunResult(
        backend=backend.type,
        command=command,
        exit_code=outcome.exit_code,
        started=outcome.started,
        ended=outcome.ended,
        duration_seconds=outcome.duration_seconds,
        log_path=log_path,
        details=details or {},
    )
    return raise_for_exit(result, outcome.timed_out, timeout)
