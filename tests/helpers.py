"""Builders for the small run files many tests write: a shell model on some backend."""

import importlib.metadata
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

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
