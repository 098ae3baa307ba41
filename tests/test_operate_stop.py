"""`scripts/operate stop` signals only what `start` started, and ends a worker that ignores SIGTERM (14.10).

No server needed: the pid files are written here, as `start` writes them (pid and start time).
"""

import os
import subprocess
from pathlib import Path

from conftest import REPO
from helpers import wait_for


def started_at(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split()[21]


def operate_stop(state: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROMPY_TASKS_OPERATE_DIR": str(state)}
    return subprocess.run([REPO / "scripts" / "operate", "stop"], env=env, capture_output=True, text=True, timeout=60)


def test_stop_leaves_alone_a_process_that_has_a_stale_pid_files_pid(tmp_path):
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)  # its own group, like a worker's
    try:
        (tmp_path / "worker.pid").write_text(f"{bystander.pid} 1\n")  # same pid, another start time
        result = operate_stop(tmp_path)
        assert result.returncode == 0, result.stderr
        assert "worker: not running; its pid file was stale" in result.stderr
        assert bystander.poll() is None, "the process that has the pid now was not signalled"
        assert not (tmp_path / "worker.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_ends_a_worker_that_ignores_its_first_sigterm_and_says_so(tmp_path):
    stubborn = "trap 'trap - TERM' TERM; while :; do sleep 0.1; done"
    worker = subprocess.Popen(["sh", "-c", stubborn], start_new_session=True)
    try:
        assert wait_for(lambda: Path(f"/proc/{worker.pid}/stat").exists(), 5)
        (tmp_path / "worker.pid").write_text(f"{worker.pid} {started_at(worker.pid)}\n")
        result = operate_stop(tmp_path)
        assert f"stopped worker (pid {worker.pid}): it ignored the first SIGTERM, the second ended it" in result.stderr
        assert worker.wait(timeout=5) is not None
    finally:
        worker.kill()
        worker.wait()
