"""The reused local Prefect server, through the user's own commands in fresh processes."""

import json
import os
import subprocess
import sys
import urllib.request

import yaml
from conftest import CLI, REPO, process_gone

from rompy_tasks import local_server
from rompy_tasks.backends.guard import api_headers


def user_env(tmp_path) -> dict[str, str]:
    """A user with no Prefect API configured (no PREFECT_API_URL, no profile) and their own data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        ROMPY_TASKS_DATA_DIR=str(tmp_path / "data"),
        PREFECT_HOME=str(tmp_path / "prefect-user"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def run_cli(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    """The real CLI with exactly `env` (no Prefect settings inherited from the test process)."""
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300
    )


def trivial_pipeline(tmp_path, run_id: str):
    path = tmp_path / f"{run_id}.yaml"
    doc = {
        "config": {
            "run_id": run_id,
            "output_dir": str(tmp_path / "runs"),
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": "true"},
        },
        "postprocessor": [],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def flow_run_names(api_url: str, auth: str) -> list[str]:
    url = f"{api_url}/flow_runs/filter"
    request = urllib.request.Request(url, data=b"{}", method="POST", headers=api_headers(auth))
    with urllib.request.urlopen(request, timeout=10) as response:
        return [run["name"] for run in json.loads(response.read())]


def test_first_run_starts_the_server_later_runs_reuse_it_and_stop_ends_it(tmp_path):
    env = user_env(tmp_path)
    first = run_cli("run", str(trivial_pipeline(tmp_path, "first")), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Started a local Prefect server" in first.stderr and "rompy-tasks server stop" in first.stderr
    state = json.loads((tmp_path / "data" / "rompy-tasks" / "server" / "server.json").read_text())

    second = run_cli("run", str(trivial_pipeline(tmp_path, "second")), env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Started a local Prefect server" not in second.stderr, "the second command reuses the server"
    assert json.loads((tmp_path / "data" / "rompy-tasks" / "server" / "server.json").read_text()) == state

    status = run_cli("server", "status", env=env, cwd=tmp_path)
    assert status.returncode == 0 and f"127.0.0.1:{state['port']}" in status.stdout
    auth = (tmp_path / "data" / "rompy-tasks" / "server" / "auth").read_text().strip()
    names = flow_run_names(f"http://127.0.0.1:{state['port']}/api", auth)
    assert {"first", "second"} <= set(names), "both runs are in the one server's history"
    assert not (tmp_path / ".prefect").exists() and not list(tmp_path.glob("*.db")), "nothing written in the cwd"

    stopped = run_cli("server", "stop", env=env, cwd=tmp_path)
    assert stopped.returncode == 0 and str(state["pid"]) in stopped.stdout
    assert process_gone(state["pid"])
    assert run_cli("server", "status", env=env, cwd=tmp_path).returncode == 1


def test_a_reused_pid_is_never_taken_for_the_server(tmp_path, monkeypatch):
    """The state file names a pid that now belongs to another process: it is neither reused nor stopped."""
    monkeypatch.setenv("ROMPY_TASKS_DATA_DIR", str(tmp_path / "data"))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        stale = {"pid": other.pid, "port": 9, "started": 1}  # not that process's start time
        (local_server.server_dir() / "server.json").write_text(json.dumps(stale))
        assert local_server.status() is None
        assert local_server.stop() is None
        assert other.poll() is None, "the unrelated process is still running"
    finally:
        other.kill()
        other.wait()


def test_a_configured_api_that_does_not_answer_is_a_clear_error(tmp_path):
    env = {**user_env(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    result = run_cli("run", str(trivial_pipeline(tmp_path, "nowhere")), env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "The Prefect API at http://127.0.0.1:9/api does not answer" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs" / "nowhere").exists()
