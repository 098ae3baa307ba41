"""Owned process trees (rompy_tasks.backends.process): timeouts, SIGTERM-ignoring models, orphans.

Real child processes, no Prefect. The backends' behaviour on top of this is in
test_local_backend.py; faults that kill the orchestrator itself are in faults/.
"""

import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import process_gone
from helpers import python_script, wait_for

from rompy_tasks.backends.process import kill_group, run_process


def test_timeout_kills_the_whole_tree_including_grandchildren(tmp_path):
    pids = tmp_path / "pids"
    cmd = python_script(
        tmp_path,
        f"""
        import os, subprocess, time
        child = subprocess.Popen(["sleep", "300"])
        grandchild = subprocess.Popen(["sh", "-c", "sleep 301 & echo $! > {pids}.gc; wait"])
        with open("{pids}", "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}} {{grandchild.pid}}")
        print("started", flush=True)
        time.sleep(300)
        """,
    )
    start = time.monotonic()
    outcome = run_process(cmd, cwd=tmp_path, log_path=tmp_path / "run.log", timeout=2, grace=2)
    assert outcome.timed_out and outcome.exit_code != 0
    assert time.monotonic() - start < 10
    assert "timed out" in (tmp_path / "run.log").read_text()
    all_pids = [int(p) for p in pids.read_text().split()] + [int(Path(f"{pids}.gc").read_text())]
    deadline = time.monotonic() + 5
    while not all(process_gone(p) for p in all_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(process_gone(p) for p in all_pids), f"survivors: {[p for p in all_pids if not process_gone(p)]}"


def test_sigterm_ignoring_model_is_killed_after_grace(tmp_path):
    cmd = python_script(
        tmp_path,
        """
        import signal, time, os
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(os.getpid(), flush=True)
        time.sleep(300)
        """,
    )
    lines: list[str] = []
    start = time.monotonic()
    outcome = run_process(cmd, cwd=tmp_path, log_path=tmp_path / "run.log", timeout=1, grace=1, on_line=lines.append)
    assert outcome.timed_out and outcome.exit_code == -9
    assert time.monotonic() - start < 8
    assert process_gone(int(lines[0]))


def test_orphans_are_killed_when_the_model_exits(tmp_path):
    cmd = python_script(
        tmp_path,
        """
        import subprocess
        p = subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL)
        print(p.pid, flush=True)
        """,
    )
    lines: list[str] = []
    outcome = run_process(cmd, cwd=tmp_path, log_path=tmp_path / "run.log", on_line=lines.append)
    assert outcome.exit_code == 0
    orphan = int(lines[0])
    deadline = time.monotonic() + 5
    while not process_gone(orphan) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_gone(orphan)


def test_descendants_that_left_the_process_group_are_killed_when_the_model_exits(tmp_path):
    """Issue 28.2: `setsid` (MPI launchers, daemonising wrappers) escapes killpg; the run's
    containment (its cgroup where cgroup v2 is writable, and its environment tag) does not."""
    pids = tmp_path / "pids"
    script = f"setsid -f sh -c 'echo $$ > {pids}; exec sleep 300' < /dev/null > /dev/null 2>&1; sleep 0.5"
    outcome = run_process(["sh", "-c", script], cwd=tmp_path, log_path=tmp_path / "run.log")
    assert outcome.exit_code == 0
    escaped = int(pids.read_text())
    assert wait_for(lambda: process_gone(escaped), 5), "the setsid daemon outlived its run"
    assert "left its process group" in (tmp_path / "run.log").read_text()
    assert not list(Path("/sys/fs/cgroup").rglob("rompy-tasks-run-*")), "the run's cgroup is removed"


def test_a_leaked_popen_wait_lock_never_hangs_the_kill():
    """CPython's `Popen.wait(timeout)` polls holding its waitpid lock; a SIGTERM or Ctrl-C handled
    just after the lock is taken leaks it. The kill must still reap the model: it once hung for
    ever (a SIGTERM'd command in CI, its model a zombie)."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    proc._waitpid_lock.acquire()  # as the interrupted wait left it
    killer = threading.Thread(target=kill_group, args=(proc.pid, proc, 1.0), daemon=True)
    killer.start()
    killer.join(timeout=15)
    assert not killer.is_alive(), "kill_group hung on Popen's waitpid lock"
    assert proc.returncode == -signal.SIGTERM
