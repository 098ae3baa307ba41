"""The `rompy-tasks` CLI as a user runs it: a real subprocess, real exit codes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import CLI, REPO, process_gone, run_cli
from helpers import shell_doc

EXAMPLE = REPO / "examples" / "veros-acc" / "pipeline.yaml"


def write_pipeline(tmp_path: Path, data: dict | str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_validate_accepts_the_demo():
    result = run_cli("validate", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "veros" in result.stdout


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["backend"].update(type="kubernetes"), ["backend"]),
        (lambda d: d["config"]["config"].update(nonsense=1), ["config.config.nonsense"]),
        (lambda d: d["config"].update(run_id="../escape"), ["config.run_id"]),
        (lambda d: d["backend"].update(timeout=5), ["backend.timeout"]),
        (lambda d: d["config"]["period"].update(duration="soon"), ["config.period.duration"]),
        (
            lambda d: (
                d["backend"].update(timeout=10**6, env_vars={"A": 1}),
                d["config"]["config"].update(setup="atlantis"),
            ),
            ["backend.timeout", "backend.env_vars.A", "config.config.setup"],
        ),
    ],
)
def test_invalid_pipelines_exit_2_listing_every_field_and_write_nothing(tmp_path, mutate, expected):
    doc = yaml.safe_load(EXAMPLE.read_text().replace("${ROMPY_TASKS_OUTPUT:-runs}", str(tmp_path / "out")))
    mutate(doc)
    path = write_pipeline(tmp_path, doc)
    for command in ("validate", "run"):
        result = run_cli(command, str(path))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        for loc in expected:
            assert f"  {loc}" in result.stderr, (loc, result.stderr)
    assert not (tmp_path / "out").exists(), "nothing written for invalid input"


def test_bad_yaml_exits_2_with_position(tmp_path):
    path = write_pipeline(tmp_path, "config:\n  run_id: [unclosed\n")
    result = run_cli("run", str(path))
    assert result.returncode == 2
    assert "invalid YAML: line" in result.stderr


def test_template_path_escape_is_rejected_before_anything_is_written(tmp_path):
    template = tmp_path / "tpl"
    template.mkdir()
    (template / "{{ config.parameters.name }}").write_text("x")
    doc = shell_doc(tmp_path, "true", run_id="cli-run")
    doc["config"]["config"].update(template=str(template), parameters={"name": "../../outside.txt"})
    result = run_cli("run", str(write_pipeline(tmp_path, doc)))
    assert result.returncode == 2
    assert "escapes the staging directory" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_unset_variable_and_bad_override_exit_2(tmp_path):
    doc = shell_doc(tmp_path, "true", run_id="cli-run")
    doc["config"]["output_dir"] = "${ROMPY_TASKS_SURELY_UNSET}"
    path = write_pipeline(tmp_path, doc)
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "config.output_dir:" in result.stderr
    result = run_cli("validate", str(EXAMPLE), "--set", "backend.timeout=1")
    assert result.returncode == 2 and "backend.timeout:" in result.stderr


def test_run_succeeds_and_override_applies(prefect_api, tmp_path):
    doc = shell_doc(tmp_path, ["sh", "-c", "echo {{ config.parameters.word }} > out.txt"], run_id="cli-run")
    doc["config"]["config"]["parameters"] = {"word": "original"}
    path = write_pipeline(tmp_path, doc)
    result = run_cli(
        "run",
        str(path),
        "--set",
        "config.config.parameters.word=overridden",
        env={"PREFECT_API_URL": prefect_api},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "cli-run" / "out.txt").read_text().strip() == "overridden"
    assert "completed" in result.stdout


def test_failed_run_exits_1_and_shows_the_log_tail(prefect_api, tmp_path):
    doc = shell_doc(tmp_path, ["sh", "-c", "echo 'solver diverged at step 12'; exit 4"], run_id="cli-run")
    result = run_cli("run", str(write_pipeline(tmp_path, doc)), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 1
    assert "solver diverged at step 12" in result.stderr
    assert "exited with code 4" in result.stderr


def test_sigterm_to_the_cli_kills_the_model_tree(prefect_api, tmp_path):
    pid_file = tmp_path / "model.pids"
    script = f"sleep 300 & echo $$ $! > {pid_file}; wait"
    doc = shell_doc(tmp_path, ["sh", "-c", script], run_id="cli-run")
    proc = subprocess.Popen(
        [*CLI, "run", str(write_pipeline(tmp_path, doc))],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = [int(p) for p in pid_file.read_text().split()]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    deadline = time.monotonic() + 15
    while not all(process_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(process_gone(p) for p in pids), "model and its child were killed"
    run_log = (tmp_path / "runs" / "cli-run" / "logs" / "run.log").read_text()
    assert "cancelled (TerminationSignal): model stopped by SIGTERM" in run_log, "the run log says what happened"


@pytest.mark.parametrize("kind", ["pipeline", "backend", "postprocessor"])
def test_schema_commands_print_json_schema(kind):
    result = run_cli("schema", kind)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    text = json.dumps(schema)
    if kind in ("pipeline", "backend"):
        assert '"local"' in text and '"maximum": 86400' in text
    if kind == "pipeline":
        assert {"config", "backend", "postprocessor"} <= set(schema["properties"])
        assert "veros" in text and "shell" in text
    if kind == "postprocessor":
        assert all(name in text for name in ("noop", "archive", "analyze", "visualize"))


def test_unknown_schema_exits_2():
    assert run_cli("schema", "nonsense").returncode == 2


def test_backends_commands(tmp_path):
    listing = run_cli("backends", "list")
    assert listing.returncode == 0 and "local" in listing.stdout
    good = write_pipeline(tmp_path, {"type": "local", "timeout": 600, "command": "./model"}, "good.yaml")
    assert run_cli("backends", "validate", str(good)).returncode == 0
    bad = write_pipeline(tmp_path, {"type": "local", "timeout": 30, "env_vars": {"N": 4}}, "bad.yaml")
    result = run_cli("backends", "validate", str(bad))
    assert result.returncode == 2
    assert "timeout:" in result.stderr and "env_vars.N:" in result.stderr
    schema = run_cli("backends", "schema", "local")
    assert json.loads(schema.stdout)["properties"]["timeout"]["anyOf"][0]["maximum"] == 86400
    assert run_cli("backends", "schema", "warp-drive").returncode == 2


def test_plugins_lists_every_group():
    result = run_cli("plugins")
    assert result.returncode == 0
    for name in ("rompy_tasks.config", "rompy_tasks.run", "rompy_tasks.postprocess", "veros", "local", "archive"):
        assert name in result.stdout, name


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "rompy-tasks"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "validate" in result.stdout
