"""rompy's model plugins as our model types, with `rompy-tasks[rompy]` (issue 12).

These run the CLI of `.venv-rompy` (scripts/setup-rompy: rompy-tasks[rompy] plus rompy-swan), so
the core install stays rompy-free. Generation is rompy's own (its templates, its config classes
and validators); the run stage is ours on any backend, ensembles included.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from helpers import write_yaml

FILES = Path(__file__).parent / "files"
ROMPY_VENV = REPO / ".venv-rompy"
ROMPY_INSTALLED = (ROMPY_VENV / "bin" / "python").exists() and subprocess.run(
    [ROMPY_VENV / "bin" / "python", "-c", "import rompy, rompy_swan"]
).returncode == 0
pytestmark = pytest.mark.skipif(
    not ROMPY_INSTALLED,
    reason="rompy is not installed beside rompy-tasks: scripts/setup-rompy makes .venv-rompy (rompy-tasks[rompy])",
)


def rompy_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`rompy-tasks` of the rompy-extra install, in a fresh process."""
    return subprocess.run(
        [str(ROMPY_VENV / "bin" / "rompy-tasks"), *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def env(tmp_path, prefect_api) -> dict[str, str]:
    return {"OUTPUT_DIR": str(tmp_path / "runs"), "PREFECT_API_URL": prefect_api}


def _ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-2500:] + result.stderr[-2500:]


def test_rompys_base_model_in_rompys_pipeline_file(tmp_path, env):
    _ok(rompy_cli("pipeline", str(FILES / "base-pipeline.yaml"), env=env))
    run_dir = tmp_path / "runs" / "base_pipeline"
    assert (run_dir / "INPUT").is_file(), "rompy's base template, rendered by rompy into our run directory"
    assert "INPUT" in (run_dir / "logs" / "run.log").read_text(), "the backend's `ls -l` ran in the run directory"
    manifest = json.loads((run_dir / "rompy_tasks_run.json").read_text())
    assert manifest["result"]["status"] == "completed"
    assert "INPUT" in "\n".join(manifest["result"]["generated_files"])


def test_a_rompy_swan_model_run_file_is_generated_by_rompy_swan(tmp_path, env):
    check = str(FILES / "backend-swan-check.yaml")
    _ok(rompy_cli("run", str(FILES / "swan-modelrun.yaml"), "--backend-config", check, env=env))
    text = (tmp_path / "runs" / "swan" / "INPUT").read_text()
    assert "PROJECT name='rompy-tasks' nr='0001'" in text and "MODE NONSTATIONARY TWODIMENSIONAL" in text


def test_rompys_validators_report_with_field_paths_and_nothing_is_written(tmp_path, env):
    bad = rompy_cli(
        "validate", str(FILES / "swan-modelrun.yaml"),
        "--set", "config.config.startup.project.name=a name longer than sixteen",
        "--set", "config.config.cgrid.spectrum.mdc=many",
        env=env,
    )  # fmt: skip
    assert bad.returncode == 2, bad.stderr
    assert "config.config.startup.project.name: String should have at most 16 characters" in bad.stderr
    assert "config.config.cgrid.spectrum.mdc: Input should be a valid integer" in bad.stderr
    assert not (tmp_path / "runs").exists()


def test_a_rompy_model_without_a_command_must_get_one_from_the_backend_to_run(tmp_path, env):
    """Issue 29.3: only `run` needs a backend; `validate` names what it would need as a warning."""
    checked = rompy_cli("validate", str(FILES / "swan-modelrun.yaml"), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "warning: `run` would also need backend.command: rompy model 'swan' has no command" in checked.stderr
    no_command = rompy_cli("run", str(FILES / "swan-modelrun.yaml"), env=env)
    assert no_command.returncode == 2
    assert "backend.command: rompy model 'swan' has no command or run() of its own" in no_command.stderr
    assert "give the backend's `command`" in no_command.stderr
    assert not (tmp_path / "runs").exists()


def test_generate_and_postprocess_need_no_backend_and_a_file_without_config_is_rompys_base_model(tmp_path, env):
    """Issues 29.3 and 29.4: rompy's basic_modelrun.yml shape (no `config:`, no backend) as in rompy."""
    generated = rompy_cli("generate", str(FILES / "basic-modelrun.yaml"), env=env)
    _ok(generated)
    run_dir = tmp_path / "runs" / "basic_modelrun"
    assert (run_dir / "INPUT").is_file(), "rompy's base model template"
    model_run = json.loads((run_dir / "rompy_model_run.json").read_text())
    assert model_run["config"]["model_type"] == "base"
    # swan and rompy-swan's own name for its components config, as rompy accepts them
    renamed = rompy_cli(
        "validate", str(FILES / "swan-modelrun.yaml"), "--set", "config.config.model_type=swanconfig", env=env
    )
    assert renamed.returncode == 0 and "model swanconfig" in renamed.stdout, renamed.stderr


def test_rompy_templates_stay_local_and_without_hooks(tmp_path, env):
    hooked = tmp_path / "hooked"
    (hooked / "hooks").mkdir(parents=True)
    (hooked / "hooks" / "pre_gen_project.py").write_text("open('/tmp/pwned', 'w')\n")
    for template, message in (
        ("https://github.com/rom-py/rompy", "is not a local directory; rompy-tasks renders local templates only"),
        ("gh:rom-py/rompy", "is not a local directory"),
        (str(hooked), "has cookiecutter hooks (scripts run while rendering); not allowed"),
    ):
        result = rompy_cli(
            "validate", str(FILES / "base-pipeline.yaml"), "--set", f"config.config.template={template}", env=env
        )
        assert result.returncode == 2 and f"config.config.template: Value error, template {template} {message}" in (
            result.stderr
        ), result.stderr


def test_an_ensemble_of_rompy_swan_members(tmp_path, env):
    swan = yaml.safe_load((FILES / "swan-modelrun.yaml").read_text())["config"]
    run = {"run_id": "sw", "output_dir": str(tmp_path / "runs"), "period": {"start": "20230101T00", "duration": "1d"}}
    pipeline = {"config": {**run, "config": swan}, "backend": {"type": "local", "command": "grep -q nr= INPUT"}}
    members = {"matrix": {"config.config.startup.project.nr": ["0001", "0002"]}}
    path = write_yaml(tmp_path / "ensemble.yaml", {"name": "swan_ens", "pipeline": pipeline, "members": members})
    _ok(rompy_cli("ensemble", str(path), env=env))
    inputs = sorted((tmp_path / "runs").rglob("INPUT"))
    assert [p.read_text().count("nr='0002'") for p in inputs] == [0, 1]


@pytest.mark.docker
def test_rompys_docker_executable_is_the_whole_command_for_a_rompy_model(tmp_path, env, engine):
    backend = {"type": "docker", "image": "rompy-tasks/base:bookworm", "executable": "ls -la && test -s INPUT"}
    path = write_yaml(tmp_path / "backend.yaml", backend)
    _ok(rompy_cli("pipeline", str(FILES / "base-pipeline.yaml"), "--backend-config", str(path), env=env))
    log = (tmp_path / "runs" / "base_pipeline" / "logs" / "run.log").read_text()
    assert "INPUT" in log


def test_swan_output_times_start_at_the_run_start_in_a_run_and_in_ensemble_members(tmp_path, env):
    """rompy-swan takes `tbeg` from the run's start unless it was given; dumping every default on
    the way to rompy made it look given, and SWAN wrote its outputs from 1970-01-01."""
    check = str(FILES / "backend-swan-check.yaml")
    _ok(rompy_cli("run", str(FILES / "swan-output-times.yaml"), "--backend-config", check, env=env))
    text = (tmp_path / "runs" / "swan_out" / "INPUT").read_text()
    assert "OUTPUT tbegblk=20230101.000000 deltblk=1.0 HR" in text, text
    given = json.loads((tmp_path / "runs" / "swan_out" / "rompy_model_run.json").read_text())
    assert "tbeg" not in given["config"]["output"]["block"]["times"], "only what the file gave is handed to rompy"

    doc = yaml.safe_load((FILES / "swan-output-times.yaml").read_text())
    pipeline = {
        "config": {**doc, "output_dir": str(tmp_path / "runs")},
        "backend": {"type": "local", "command": "true"},
    }
    members = {"matrix": {"config.config.startup.project.nr": ["0001", "0002"]}}
    path = write_yaml(tmp_path / "ensemble.yaml", {"name": "swan_times", "pipeline": pipeline, "members": members})
    _ok(rompy_cli("ensemble", str(path), env=env))
    inputs = sorted((tmp_path / "runs" / "swan_times").rglob("INPUT"))
    assert len(inputs) == 2 and all("tbegblk=20230101.000000" in p.read_text() for p in inputs)


def test_skip_generate_runs_a_directory_rompy_generated(tmp_path, env):
    """rompy's `run --skip-generate` runs what is there; ours refused a directory `rompy generate` made."""
    made = subprocess.run(
        [ROMPY_VENV / "bin" / "rompy", "generate", str(FILES / "basic-modelrun.yaml")],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    _ok(made)
    run_dir = tmp_path / "runs" / "basic_modelrun"
    assert (run_dir / "INPUT").is_file() and not (run_dir / "logs").exists(), "rompy's own generation"
    backend = write_yaml(tmp_path / "backend.yaml", {"type": "local", "command": "cat INPUT"})
    ran = rompy_cli(
        "run", str(FILES / "basic-modelrun.yaml"), "--backend-config", str(backend), "--skip-generate", env=env
    )
    _ok(ran)
    assert (run_dir / "INPUT").read_text() in (run_dir / "logs" / "run.log").read_text(), "the model read rompy's INPUT"
