"""Local execution against real child processes (no Prefect needed here)."""

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import python_script, shell_model_run

from rompy_tasks.backends.base import RunResult, raise_for_exit
from rompy_tasks.backends.local import LocalConfig
from rompy_tasks.core.errors import ModelRunError, RunTimeoutError


def test_success_returns_a_typed_result(tmp_path):
    run = shell_model_run(tmp_path, "echo 'hello model'")
    result = LocalConfig().execute(run)
    assert result.exit_code == 0
    assert result.backend == "local"
    assert result.command == ["echo", "hello model"]
    assert result.duration_seconds >= 0 and result.ended >= result.started
    assert result.log_path == run.staging_dir / "logs" / "run.log"
    assert "hello model" in result.log_path.read_text()


def test_runs_in_the_staging_dir_with_merged_env(tmp_path):
    cmd = python_script(tmp_path, "import os; print('cwd=' + os.getcwd()); print('X=' + os.environ['MY_X'])")
    os.environ["PARENT_ONLY"] = "seen"
    try:
        run = shell_model_run(tmp_path, cmd + ["--"])
        lines: list[str] = []
        LocalConfig(env_vars={"MY_X": "42"}).execute(run, on_line=lines.append)
    finally:
        del os.environ["PARENT_ONLY"]
    assert f"cwd={run.staging_dir}" in lines
    assert "X=42" in lines


def test_parent_environment_is_inherited(tmp_path):
    os.environ["ROMPY_TASKS_TEST_PARENT"] = "inherited"
    try:
        run = shell_model_run(tmp_path, ["sh", "-c", "echo parent=$ROMPY_TASKS_TEST_PARENT"])
        lines: list[str] = []
        LocalConfig().execute(run, on_line=lines.append)
    finally:
        del os.environ["ROMPY_TASKS_TEST_PARENT"]
    assert "parent=inherited" in lines


def test_nonzero_exit_raises_with_log_tail(tmp_path):
    cmd = python_script(
        tmp_path,
        """
        import sys
        for i in range(100):
            print(f"line {i}")
        print("fatal: CFL violated", file=sys.stderr)
        sys.exit(3)
        """,
    )
    run = shell_model_run(tmp_path, cmd)
    with pytest.raises(ModelRunError) as info:
        LocalConfig().execute(run)
    error = info.value
    assert error.exit_code == 3
    assert "fatal: CFL violated" in error.log_tail[-2]
    assert "line 99" in str(error) and "line 5" not in error.log_tail
    assert Path(error.log_path).exists(), "the log of a failed run is kept"


def test_output_streams_line_by_line_before_the_process_ends(tmp_path):
    cmd = python_script(
        tmp_path,
        """
        import time
        print("first line", flush=False)
        time.sleep(2)
        print("second line")
        """,
    )
    run = shell_model_run(tmp_path, cmd)
    seen: dict[str, float] = {}
    result = LocalConfig().execute(run, on_line=lambda line: seen.setdefault(line, time.monotonic()))
    ended = time.monotonic()
    assert "first line" in seen, "stdout of a Python child is unbuffered"
    assert ended - seen["first line"] > 1.5, "the first line arrived before the model finished"
    assert result.exit_code == 0


def test_capture_output_false_keeps_the_log_file_only(tmp_path):
    run = shell_model_run(tmp_path, "echo quiet")
    lines: list[str] = []
    result = LocalConfig(capture_output=False).execute(run, on_line=lines.append)
    assert lines == []
    assert "quiet" in result.log_path.read_text()


def test_command_override_is_split_with_shlex_without_a_shell(tmp_path):
    run = shell_model_run(tmp_path, "false")
    lines: list[str] = []
    LocalConfig(command="printf '%s|' 'a b' '$HOME;rm'").execute(run, on_line=lines.append)
    assert lines == ["a b|$HOME;rm|"], "no shell expansion, no injection"


def test_shell_true_runs_through_sh(tmp_path):
    run = shell_model_run(tmp_path, "false")
    lines: list[str] = []
    LocalConfig(command="echo one && echo two", shell=True).execute(run, on_line=lines.append)  # noqa: S604
    assert lines == ["one", "two"]


def test_missing_executable_is_a_clear_error(tmp_path):
    run = shell_model_run(tmp_path, "definitely-not-a-model-binary --x")
    with pytest.raises(ModelRunError, match="cannot start the model"):
        LocalConfig().execute(run)


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
