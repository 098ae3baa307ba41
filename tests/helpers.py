"""Builders for the small run files many tests write: a shell model on some backend."""

import importlib.metadata
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

BBOX = {"west": -4, "east": 64, "south": -44, "north": 48}  # the ACC setup's domain, for forcing cuts
VEROS_IMAGE = f"rompy-tasks/veros:{importlib.metadata.version('veros')}"  # built by scripts/docker-engine


def shell_doc(
    tmp_path: Path, command: str | list[str], run_id: str = "r", backend: dict | None = None, **config
) -> dict:
    """A pipeline document running `command` as a shell model under `tmp_path/runs`."""
    return {
        "config": {
            "run_id": run_id,
            "output_dir": str(tmp_path / "runs"),
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": command, **config},
        },
        "backend": backend or {"type": "local", "timeout": 120},
        "postprocessor": [],
    }


def write_yaml(path: Path, doc: Any) -> Path:
    """`doc` as a YAML file at `path`; returns the path."""
    path.write_text(yaml.safe_dump(doc))
    return path


def pids_in(path: Path) -> list[int]:
    """The process ids a test model wrote to `path`, one per line."""
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_for(condition: Callable[[], bool], seconds: float, interval: float = 0.2) -> bool:
    """Poll `condition` until it holds or `seconds` pass; its last value."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def shell_ensemble_doc(tmp_path: Path, command: str | list[str], members: dict, name: str = "ens", **extra) -> dict:
    """An ensemble document of shell members `m_m000`... under `tmp_path/runs/<name>`."""
    pipeline = shell_doc(tmp_path, command, run_id="m", outputs=["*.txt"])
    return {"name": name, "pipeline": pipeline, "members": members, **extra}


def shell_model_run(output_dir: Path, command: str | list[str], run_id: str = "t1", **config):
    """A validated shell ModelRun with its run directory created (for calling a backend directly)."""
    from rompy_tasks.models.shell import ShellConfig
    from rompy_tasks.plugins import model_run_class

    run = model_run_class()(
        run_id=run_id,
        output_dir=output_dir,
        period={"start": "2026-01-01", "duration": "1h"},
        config=ShellConfig(command=command, **config),
    )
    run.prepare_staging()
    return run


def signal_cli_once(args: tuple[str, ...], api_url: str, ready: Callable[[], bool], sig: int) -> int:
    """Start the user's command, wait until `ready()` (the model runs), send `sig`; its exit code."""
    from conftest import start_cli

    proc = start_cli(*args, api_url=api_url)
    try:
        assert wait_for(ready, 120), "the model started"
        proc.send_signal(sig)
        return proc.wait(timeout=90)
    finally:
        proc.kill()
        proc.wait()


def python_script(tmp_path: Path, body: str) -> list[str]:
    """A model written in Python (`body`, dedented) and the command that runs it."""
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table the CLI printed (run it with a wide COLUMNS), cells stripped."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│ 2")]


def flow_run_states(api_url: str, auth: str | None, name: str) -> list[str]:
    """The state types of the flow runs named `name`."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with SyncPrefectClient(api_url, auth_string=auth) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return [run.state.type.value for run in runs]
