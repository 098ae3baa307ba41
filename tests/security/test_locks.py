"""Two runs of the same run directory, ensemble or cycle at once: the second is refused (issue 11.7)."""

import signal
import subprocess
import sys

import pytest
from conftest import REPO, run_cli, start_cli
from helpers import shell_doc, shell_ensemble_doc, wait_for, write_yaml


def second_while_first_runs(api_url: str, started, *args: str):
    """Start `args` in the background, run the same command once its model has started; the second's result.

    Asserts that the first one still completes.
    """
    first = start_cli(*args, api_url=api_url)
    try:
        assert wait_for(started.exists, 120), f"{started} never appeared"
        second = run_cli(*args, env={"PREFECT_API_URL": api_url})
        assert first.wait(timeout=120) == 0, "the first run was not disturbed"
    finally:
        first.kill()
        first.wait()
    return second


def test_a_second_run_of_the_same_run_directory_is_refused_and_harms_nothing(prefect_api, tmp_path):
    started = tmp_path / "started"
    command = ["sh", "-c", f"touch {started}; sleep 10; echo done > out.txt"]
    doc = shell_doc(tmp_path, command, run_id="busy")
    doc["config"]["delete_existing"] = True
    path = write_yaml(tmp_path / "p.yaml", doc)
    second = second_while_first_runs(prefect_api, started, "run", str(path))
    assert second.returncode == 1
    assert "run directory" in second.stderr and "is in use by another run (pid" in second.stderr
    assert (tmp_path / "runs" / "busy" / "out.txt").read_text() == "done\n"
    assert not (tmp_path / "runs" / ".busy.lock").exists(), "no lock file left behind"


def test_a_second_run_of_the_same_ensemble_is_refused(prefect_api, tmp_path):
    flag = tmp_path / "started"
    doc = shell_ensemble_doc(tmp_path, ["sh", "-c", f"touch {flag}; sleep 10"], {"n": 2}, name="locked")
    path = write_yaml(tmp_path / "e.yaml", doc)
    second = second_while_first_runs(prefect_api, flag, "ensemble", str(path))
    assert second.returncode == 1 and "ensemble locked" in second.stderr and "in use" in second.stderr
    assert sorted(p.stem for p in (tmp_path / "runs" / "locked" / "records").glob("*.json")) == ["m_m000", "m_m001"]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    from rompy_tasks.core.errors import StageError
    from rompy_tasks.core.run_files import exclusive

    lock = tmp_path / "run.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from rompy_tasks.core.run_files import exclusive\n"
            f"with exclusive(Path({str(lock)!r}), 'x'):\n    print('held', flush=True); time.sleep(60)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(StageError, match=r"x is in use by another run \(pid"):
        with exclusive(lock, "x"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with exclusive(lock, "x"):
        assert lock.exists()
    assert not lock.exists()
