"""What the benchmarks share: the user's environment and timing of whole commands.

Every benchmark times the command a user types (`rompy-tasks ...`) in a fresh process, as a
user with no Prefect configured: the first command starts the reused local Prefect server
(in the benchmark's own data directory), later ones reuse it, `stop_server` ends it.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RT = str(BIN / "rompy-tasks")


def user_env(work: Path) -> dict[str, str]:
    """No Prefect API configured, the local server's data under `work`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(ROMPY_TASKS_DATA_DIR=str(work / "data"), PREFECT_HOME=str(work / "prefect-user"))
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall time of one whole command; exits with its stderr if it fails."""
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return elapsed


def wait_warm(env: dict[str, str], timeout: float = 60.0) -> None:
    """Wait until the first command's warm command process (flows/warm.py) answers, as it will
    for a user's next command: it starts in the background when a command ends."""
    commands = Path(env["ROMPY_TASKS_DATA_DIR"]) / "rompy-tasks" / "commands"
    deadline = time.monotonic() + timeout
    while not any(commands.glob("*.sock")):
        if time.monotonic() > deadline:
            raise SystemExit(f"no warm command process in {commands} after {timeout:.0f} s")
        time.sleep(0.2)


def stop_server(env: dict[str, str]) -> None:
    subprocess.run([RT, "server", "stop"], env=env, stdout=subprocess.DEVNULL, check=False)


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in sorted(values)) + "]"


def shell_ensemble_file(
    work: Path, name: str, members: int, command: list[str], max_parallel: int | None = 2, backend: dict | None = None
) -> Path:
    """An ensemble file of `members` identical shell members, written into `work` (max_parallel None: the default)."""
    import yaml

    pipeline = {
        "config": {
            "run_id": "m",
            "output_dir": str(work / "runs"),
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": command},
        },
        "postprocessor": [],
    }
    if backend:
        pipeline["backend"] = backend
    path = work / f"{name}.yaml"
    doc = {"name": name, "pipeline": pipeline, "members": {"n": members}}
    if max_parallel is not None:
        doc["max_parallel"] = max_parallel
    path.write_text(yaml.safe_dump(doc))
    return path
