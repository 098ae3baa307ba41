"""Two runs of the same run directory, ensemble or cycle at once: the second is refused (issue 11.7)."""

import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO, run_cli, start_cli


def wait_for(path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists(), f"{path} never appeared"


def second_while_first_runs(api_url: str, started, *args: str):
    """Start `args` in the background, run the same command once its model has started; the second's result.

    Asserts that the first one still completes.
    """
    first = start_cli(*args, api_url=api_url)
    try:
        wait_for(started)
        second = run_cli(*args, env={"PREFECT_API_URL": api_url})
        assert first.wait(timeout=120) == 0, "the first run was not disturbed"
    finally:
        first.kill()
        first.wait()
    return second


def test_a_second_run_of_the_same_run_directory_is_refused_and_harms_nothing(prefect_api, tmp_path):
    started = tmp_path / "started"
    command = ["sh", "-c", f"touch {started}; sleep 10; echo done > out.txt"]
    doc = {
        "config": {
            "run_id": "busy",
            "output_dir": str(tmp_path / "runs"),
            "delete_existing": True,
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": command},
        },
        "postprocessor": [],
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    second = second_while_first_runs(prefect_api, started, "run", str(path))
    assert second.returncode == 1
    assert "run directory" in second.stderr and "is in use by another run (pid" in second.stderr
    assert (tmp_path / "runs" / "busy" / "out.txt").read_text() == "done\n"
    assert not (tmp_path / "runs" / ".busy.lock").exists(), "no lock file left behind"


def test_a_second_run_of_the_same_ensemble_is_refused(prefect_api, tmp_path):
    flag = tmp_path / "started"
    doc = {
        "name": "locked",
        "pipeline": {
            "config": {
                "run_id": "m",
                "output_dir": str(tmp_path / "runs"),
                "period": {"start": "2026-01-01", "duration": "1h"},
                "config": {"model_type": "shell", "command": ["sh", "-c", f"touch {flag}; sleep 10"]},
            },
            "postprocessor": [],
        },
        "members": {"n": 2},
    }
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(doc))
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
