"""Local execution against real child processes (no Prefect needed here)."""

import os
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import process_gone

from rompy_tasks.backends.base import RunResult, raise_for_exit
from rompy_tasks.backends.local import LocalConfig
from rompy_tasks.backends.process import run_process
from rompy_tasks.core.errors import ModelRunError, RunTimeoutError
from rompy_tasks.models.shell import ShellConfig
from rompy_tasks.plugins import model_run_class


def shell_run(tmp_path: Path, command: str | list[str], **config) -> object:
    run = model_run_class()(
        run_id="t1",
        output_dir=tmp_path,
        period={"start": "2026-01-01", "duration": "1h"},
        config=ShellConfig(command=command, **config),
    )
    run.prepare_staging()
    return run


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_success_returns_a_typed_result(tmp_path):
    run = shell_run(tmp_path, "echo 'hello model'")
    result = LocalConfig().execute(run)
    assert result.exit_code == 0
    assert result.backend == "local"
    assert result.command == ["echo", "hello model"]
    assert result.duration_seconds >= 0 and result.ended >= result.started
    assert result.log_path == run.staging_dir / "logs" / "run.log"
    assert "hello model" in result.log_path.read_text()


def test_runs_in_the_staging_dir_with_merged_env(tmp_path):
    cmd = script(tmp_path, "import os; print('cwd=' + os.getcwd()); print('X=' + os.environ['MY_X'])")
    os.environ["PARENT_ONLY"] = "seen"
    try:
        run = shell_run(tmp_path, cmd + ["--"])
        lines: list[str] = []
        LocalConfig(env_vars={"MY_X": "42"}).execute(run, on_line=lines.append)
    finally:
        del os.environ["PARENT_ONLY"]
    assert f"cwd={run.staging_dir}" in lines
    assert "X=42" in lines


def test_parent_environment_is_inherited(tmp_path):
    os.environ["ROMPY_TASKS_TEST_PARENT"] = "inherited"
    try:
        run = shell_run(tmp_path, ["sh", "-c", "echo parent=$ROMPY_TASKS_TEST_PARENT"])
        lines: list[str] = []
        LocalConfig().execute(run, on_line=lines.append)
    finally:
        del os.environ["ROMPY_TASKS_TEST_PARENT"]
    assert "parent=inherited" in lines


def test_nonzero_exit_raises_with_log_tail(tmp_path):
    cmd = script(
        tmp_path,
        """
        import sys
        for i in range(100):
            print(f"line {i}")
        print("fatal: CFL violated", file=sys.stderr)
        sys.exit(3)
        """,
    )
    run = shell_run(tmp_path, cmd)
    with pytest.raises(ModelRunError) as info:
        LocalConfig().execute(run)
    error = info.value
    assert error.exit_code == 3
    assert "fatal: CFL violated" in error.log_tail[-2]
    assert "line 99" in str(error) and "line 5" not in error.log_tail
    assert Path(error.log_path).exists(), "the log of a failed run is kept"


def test_output_streams_line_by_line_before_the_process_ends(tmp_path):
    cmd = script(
        tmp_path,
        """
        import time
        print("first line", flush=False)
        time.sleep(2)
        print("second line")
        """,
    )
    run = shell_run(tmp_path, cmd)
    seen: dict[str, float] = {}
    result = LocalConfig().execute(run, on_line=lambda line: seen.setdefault(line, time.monotonic()))
    ended = time.monotonic()
    assert "first line" in seen, "stdout of a Python child is unbuffered"
    assert ended - seen["first line"] > 1.5, "the first line arrived before the model finished"
    assert result.exit_code == 0


def test_capture_output_false_keeps_the_log_file_only(tmp_path):
    run = shell_run(tmp_path, "echo quiet")
    lines: list[str] = []
    result = LocalConfig(capture_output=False).execute(run, on_line=lines.append)
    assert lines == []
    assert "quiet" in result.log_path.read_text()


def test_command_override_is_split_with_shlex_without_a_shell(tmp_path):
    run = shell_run(tmp_path, "false")
    lines: list[str] = []
    LocalConfig(command="printf '%s|' 'a b' '$HOME;rm'").execute(run, on_line=lines.append)
    assert lines == ["a b|$HOME;rm|"], "no shell expansion, no injection"


def test_shell_true_runs_through_sh(tmp_path):
    run = shell_run(tmp_path, "false")
    lines: list[str] = []
    LocalConfig(command="echo one && echo two", shell=True).execute(run, on_line=lines.append)  # noqa: S604
    assert lines == ["one", "two"]


def test_missing_executable_is_a_clear_error(tmp_path):
    run = shell_run(tmp_path, "definitely-not-a-model-binary --x")
    with pytest.raises(ModelRunError, match="cannot start the model"):
        LocalConfig().execute(run)


def test_timeout_kills_the_whole_tree_including_grandchildren(tmp_path):
    pids = tmp_path / "pids"
    cmd = script(
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
    cmd = script(
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
    cmd = script(
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


def test_a_timed_out_result_raises_the_timeout_error(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("step 1\nstep 2\n")
    now = datetime.now(UTC)
    result = RunResult(
        backend="local",
        command=["m"],
        exit_code=-15,
        started=now,
        ended=now,
        duration_seconds=0,
        log_path=log,
    )
    with pytest.raises(RunTimeoutError, match="timed out after 60") as info:
        raise_for_exit(result, timed_out=True, timeout=60)
    assert info.value.log_tail == ["step 1", "step 2"]


def test_model_run_error_survives_pickling(tmp_path):
    import pickle

    error = ModelRunError("model exited with code 2", 2, "/x/run.log", ["a", "b"])
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.exit_code, clone.log_path, clone.log_tail) == (2, "/x/run.log", ["a", "b"])
    assert str(clone) == str(error)
