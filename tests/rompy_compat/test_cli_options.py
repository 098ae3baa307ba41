"""rompy's common options (issue 29.5), typed where rompy users type them: after the verb.

Before, `-v`, `--version`, `--log-dir`, `--simple-logs`, `--config-from-env` and rompy's
ROMPY_* variables were refused or ignored. Each runs the real CLI in a fresh process.
"""

from pathlib import Path

from conftest import run_cli
from helpers import shell_doc, write_yaml

FILES = Path(__file__).parent / "files"


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("rompy-tasks ") and "prefect" in result.stdout


def test_verbose_shows_the_traceback_of_a_failure_and_the_default_does_not(prefect_api, tmp_path):
    path = write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, ["sh", "-c", "echo bad; exit 3"], run_id="fails"))
    env = {"PREFECT_API_URL": prefect_api}
    plain = run_cli("run", str(path), env=env)
    assert plain.returncode == 1 and "Run fails failed" in plain.stderr
    assert "Traceback" not in plain.stderr
    verbose = run_cli("run", str(path), "-v", env=env)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "ModelRunError" in verbose.stderr
    by_environment = run_cli("run", str(path), env={**env, "ROMPY_LOG_LEVEL": "INFO"})
    assert "Traceback" in by_environment.stderr, "ROMPY_LOG_LEVEL=INFO is -v"


def test_log_dir_and_simple_logs(prefect_api, tmp_path):
    path = write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, ["sh", "-c", "echo hello-model"], run_id="logged"))
    logs = tmp_path / "logs"
    result = run_cli("run", str(path), "--simple-logs", "--log-dir", str(logs), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stderr[-2000:]
    (log_file,) = logs.glob("rompy-tasks-*.log")
    assert "hello-model" in log_file.read_text(), "the command's log records, in the log directory"
    model_lines = [line for line in result.stderr.splitlines() if "hello-model" in line]
    assert model_lines and all(" | INFO" not in line for line in model_lines), "messages only"


def test_config_from_env(tmp_path):
    document = (FILES / "modelrun.yaml").read_text()
    env = {"ROMPY_CONFIG": document, "OUTPUT_DIR": str(tmp_path)}
    result = run_cli("validate", "--config-from-env", env=env)
    assert result.returncode == 0 and "valid: run modelrun" in result.stdout, result.stderr
    missing = run_cli("validate", "--config-from-env", env={"ROMPY_CONFIG": ""})
    assert missing.returncode == 2
    unset = run_cli("validate", "--config-from-env", env={"OUTPUT_DIR": str(tmp_path)})
    assert unset.returncode == 2 and "--config-from-env: the environment variable ROMPY_CONFIG is not set" in (
        unset.stderr
    )
