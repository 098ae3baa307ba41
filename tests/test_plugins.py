"""Third-party plugins: a real package installed from tests/plugin_pkg, discovered by entry points."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import run_cli


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """pip-install the example plugin into a private directory (not into the virtualenv)."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(__import__("pathlib").Path(__file__).parent / "plugin_pkg", source)
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    return str(target)


def test_plugins_are_discovered_and_a_broken_one_is_reported(plugin_path):
    result = run_cli("plugins", env={"PYTHONPATH": plugin_path})
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[2].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "ok" in lines["echo"] and "ok" in lines["count_files"]
    assert "failed" in lines["broken"] and "ok" in lines["veros"]
    assert "'broken'" in result.stderr and "failed to load" in result.stderr

    listing = run_cli("backends", "list", env={"PYTHONPATH": plugin_path})
    assert "echo" in listing.stdout and "local" in listing.stdout


def test_plugin_backend_and_postprocessor_run_in_a_pipeline(plugin_path, prefect_api, tmp_path):
    doc = {
        "config": {
            "run_id": "plugged",
            "output_dir": str(tmp_path),
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": "sh -c 'echo a > a.txt; echo b > b.txt'"},
        },
        "backend": {"type": "echo", "banner": "hello-from-plugin", "timeout": 120},
        "postprocessor": [{"processor": "count_files", "pattern": "*.txt"}],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = {"PYTHONPATH": plugin_path, "PREFECT_API_URL": prefect_api}
    schema = json.loads(run_cli("schema", "backend", env=env).stdout)
    assert "banner" in json.dumps(schema)
    result = run_cli("run", str(path), env=env)
    assert result.returncode == 0, result.stderr
    staging = tmp_path / "plugged"
    assert "hello-from-plugin" in (staging / "logs" / "run.log").read_text()
    assert json.loads((staging / "count.json").read_text())["files"] == ["a.txt", "b.txt"]


def test_unknown_plugin_type_without_the_package_is_a_validation_error(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "period": {"start": "2026-01-01", "duration": "1h"},
                    "config": {"model_type": "shell", "command": "true"},
                },
                "backend": {"type": "echo"},
            }
        )
    )
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "backend" in result.stderr
