"""Warm commands: `rompy-tasks run` forked from a process that keeps Prefect imported (issue 10).

The user's command (`python -m flows.entry`, what the `rompy-tasks` script runs) hands a
flow command to the warm process of its data directory, which runs it in a fork that takes
over the caller's terminal, environment, directory and umask; signals are passed on, and a
caller that dies takes its command down with it. Changed code is never served stale.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, REPO, process_gone
from helpers import flow_run_states, shell_doc, wait_for, write_yaml

from flows.command_socket import socket_path
from flows.entry import wants_warm


def _report_doc(tmp_path: Path, run_id: str, command: str) -> Path:
    """A pipeline whose model runs `command` through sh, with a relative output_dir."""
    doc = shell_doc(tmp_path, ["sh", "-c", command], run_id=run_id)
    doc["config"]["output_dir"] = "runs"  # relative: the caller's working directory counts
    return write_yaml(tmp_path / f"{run_id}.yaml", doc)


def _run(args: list[str], cwd: Path, env: dict[str, str], umask: int = 0o022) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(umask),  # noqa: PLW1509 - one syscall
    )


def _warm_pid() -> int | None:
    """The warm process's pid once it accepts commands (its pid file comes before its imports, and
    a killed one leaves its socket file behind: only a connection says it serves)."""
    import socket

    pid_file = socket_path().with_suffix(".pid")
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:  # an empty request is ignored
        try:
            probe.connect(str(socket_path()))
        except OSError:
            return None
    return None if process_gone(pid) else pid


def _wait_warm() -> int:
    assert wait_for(lambda: _warm_pid() is not None, 60), "a warm command process started after the first command"
    return _warm_pid()


def test_a_warm_command_is_the_callers_own_in_all_but_its_process(tmp_path, prefect_api):
    env = {"PREFECT_API_URL": prefect_api, "GREETING": "from the caller"}
    command = 'echo "$GREETING" > greeting.txt; pwd > cwd.txt; echo $PPID > orchestrator.txt; echo printed'
    first = _run(["run", str(_report_doc(tmp_path, "first", command))], tmp_path, env)
    assert first.returncode == 0, first.stderr[-2000:]
    warm = _wait_warm()

    second = _run(["run", str(_report_doc(tmp_path, "second", command))], tmp_path, env, umask=0o077)
    assert second.returncode == 0, second.stderr[-2000:]
    run_dir = tmp_path / "runs" / "second"
    assert (run_dir / "greeting.txt").read_text() == "from the caller\n"
    assert (run_dir / "cwd.txt").read_text().strip() == str(run_dir)  # the relative output_dir, from our cwd
    assert (run_dir / "greeting.txt").stat().st_mode & 0o777 == 0o600, "the caller's umask"
    assert "Run directory:" in second.stdout and "printed" in second.stderr, "the caller's terminal (stdout, stderr)"
    orchestrator = int((run_dir / "orchestrator.txt").read_text())
    parent = (
        int(Path(f"/proc/{orchestrator}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if not process_gone(orchestrator)
        else None
    )
    assert parent in (warm, None), "forked by the warm process"
    assert orchestrator != int((tmp_path / "runs" / "first" / "orchestrator.txt").read_text())

    invalid = _run(["run", str(tmp_path / "second.yaml"), "--set", "config.period.start=never"], tmp_path, env)
    assert invalid.returncode == 2 and "config.period.start" in invalid.stderr
    failing = _run(["run", str(_report_doc(tmp_path, "failing", "exit 3"))], tmp_path, env)
    assert failing.returncode == 1 and "exited with code 3" in failing.stderr


def test_a_caller_in_another_process_context_is_not_served_by_this_one(tmp_path, prefect_api):
    """`nice rompy-tasks run` (or taskset, ulimit, a SLURM allocation's cgroup): the model runs
    with the caller's context, never the warm process's."""
    env = {"PREFECT_API_URL": prefect_api}
    nice_field = "cut -d' ' -f19 /proc/self/stat > nice.txt"
    assert _run(["run", str(_report_doc(tmp_path, "plain", nice_field))], tmp_path, env).returncode == 0
    _wait_warm()
    for run_id in ("niced", "niced-again"):  # in its own process, then from its own warm process
        niced = subprocess.run(
            [*CLI, "run", str(_report_doc(tmp_path, run_id, nice_field))],
            cwd=tmp_path,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=lambda: os.nice(5),  # noqa: PLW1509 - one syscall
        )
        assert niced.returncode == 0, niced.stderr[-2000:]
        assert (tmp_path / "runs" / run_id / "nice.txt").read_text().strip() == "5", run_id
    assert (tmp_path / "runs" / "plain" / "nice.txt").read_text().strip() == "0"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_to_the_caller_reaches_the_model(tmp_path, prefect_api, sig):
    env = {"PREFECT_API_URL": prefect_api}
    assert _run(["run", str(_report_doc(tmp_path, "warmup", "true"))], tmp_path, env).returncode == 0
    _wait_warm()
    path = _report_doc(tmp_path, "sleeper", "echo $$ > model.pid; exec sleep 300")
    caller = subprocess.Popen([*CLI, "run", str(path)], cwd=tmp_path, env={**os.environ, **env})
    pid_file = tmp_path / "runs" / "sleeper" / "model.pid"
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 120), "the model started"
    model = int(pid_file.read_text())
    caller.send_signal(sig)
    caller.wait(timeout=60)
    assert wait_for(lambda: process_gone(model), 30), f"the model died with its caller ({sig.name})"
    if sig == signal.SIGTERM:
        assert caller.returncode != 0


@pytest.mark.parametrize("changed", ["ours", "a dependency"])
def test_changed_code_is_never_served_stale(tmp_path, prefect_api, changed):
    """Ours, and (issue 27.6) any module the warm process loaded: a plugin, a dependency."""
    import yaml

    env = {"PREFECT_API_URL": prefect_api}
    assert _run(["run", str(_report_doc(tmp_path, "one", "true"))], tmp_path, env).returncode == 0
    warm = _wait_warm()
    source = REPO / "rompy_tasks" / "pipeline.py" if changed == "ours" else Path(yaml.__file__)
    times = source.stat()
    try:
        os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns + 1_000_000_000))  # as an edit or upgrade would
        ran = _run(["run", str(_report_doc(tmp_path, "two", "echo $PPID > parent.txt"))], tmp_path, env)
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert wait_for(lambda: process_gone(warm), 30), "the stale warm process exits"
        assert wait_for(lambda: _warm_pid() not in (None, warm), 60), "a fresh one starts after the command"
    finally:
        os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns))


def test_a_command_outliving_its_warm_process_does_not_keep_the_next_from_starting(tmp_path, prefect_api):
    env = {"PREFECT_API_URL": prefect_api}
    assert _run(["run", str(_report_doc(tmp_path, "one", "true"))], tmp_path, env).returncode == 0
    warm = _wait_warm()
    path = _report_doc(tmp_path, "long", "echo $$ > model.pid; exec sleep 300")
    long = subprocess.Popen([*CLI, "run", str(path)], cwd=tmp_path, env={**os.environ, **env})
    try:
        pid_file = tmp_path / "runs" / "long" / "model.pid"
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 120), "the model started"
        os.kill(warm, signal.SIGTERM)  # idle timeout, upgrade, server stop: the forked command runs on
        assert wait_for(lambda: process_gone(warm), 30)
        assert _run(["run", str(_report_doc(tmp_path, "two", "true"))], tmp_path, env).returncode == 0
        assert wait_for(lambda: _warm_pid() not in (None, warm), 60), "a new warm process took over"
        assert long.poll() is None, "the long command still runs"
    finally:
        long.send_signal(signal.SIGTERM)
        long.wait(timeout=60)


def test_server_stop_stops_the_warm_process(tmp_path, prefect_api):
    env = {"PREFECT_API_URL": prefect_api}
    assert _run(["run", str(_report_doc(tmp_path, "one", "true"))], tmp_path, env).returncode == 0
    warm = _wait_warm()
    stopped = _run(["server", "stop"], tmp_path, env)
    assert stopped.returncode == 0
    assert wait_for(lambda: process_gone(warm), 30)
    off = _run(["run", str(_report_doc(tmp_path, "off", "true"))], tmp_path, {**env, "ROMPY_TASKS_WARM": "0"})
    assert off.returncode == 0
    time.sleep(3)
    assert _warm_pid() is None, "ROMPY_TASKS_WARM=0: commands run in their own process and start none"


def test_only_commands_that_run_flows_use_a_warm_process():
    warm = [["run", "f.yaml"], ["pipeline", "f.yaml"], ["ensemble", "f.yaml"], ["forecast", "backfill", "f.yaml"]]
    cold = [["validate", "f.yaml"], ["ensemble", "validate", "f.yaml"], ["forecast", "status"], ["run", "--help"]]
    assert all(wants_warm(argv) for argv in warm)
    assert not any(wants_warm(argv) for argv in cold)


def test_both_replies_in_one_read_are_both_taken():
    """A command that ends at once: the pid and the exit code can arrive in one read (the client
    crashed with JSONDecodeError on the two lines read as one)."""
    import socket as sockets

    from flows.entry import FORWARDED_SIGNALS, ReplyLines, follow

    handlers = {signum: signal.getsignal(signum) for signum in FORWARDED_SIGNALS}  # follow() forwards them
    ours, theirs = sockets.socketpair()
    try:
        theirs.sendall(b'{"pid": 4194304}\n{"exit": 3}\n')
        replies = ReplyLines(ours)
        assert replies.next() == {"pid": 4194304}
        assert follow(replies, 4194304) == 3
    finally:
        ours.close()
        theirs.close()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def test_a_killed_warm_command_says_its_run_was_marked_crashed(tmp_path, prefect_api):
    """Issue 28.6: a SIGKILLed forked command exited 1, like a failed run, saying nothing of its run."""
    env = {"PREFECT_API_URL": prefect_api}
    assert _run(["run", str(_report_doc(tmp_path, "warmup", "true"))], tmp_path, env).returncode == 0
    _wait_warm()
    path = _report_doc(tmp_path, "orphan", "echo $PPID > orchestrator.pid; exec sleep 300")
    caller = subprocess.Popen(
        [*CLI, "run", str(path)], cwd=tmp_path, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True
    )
    pid_file = tmp_path / "runs" / "orphan" / "orchestrator.pid"
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 120), "the model started"
    orchestrator = int(pid_file.read_text())
    assert orchestrator != caller.pid, "the command ran in the warm process's fork"
    os.kill(orchestrator, signal.SIGKILL)  # the forked command, not the caller
    _, stderr = caller.communicate(timeout=60)
    assert caller.returncode == 137, stderr[-2000:]
    assert "was killed before it finished; its guard stopped its models and marked its runs Crashed" in stderr
    assert wait_for(lambda: flow_run_states(prefect_api, None, "orphan") == ["CRASHED"], 30)
