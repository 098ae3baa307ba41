"""The Prefect server restarts while a run is in flight: the run completes, nothing is lost.

Uses the reused local server (`rompy-tasks server stop|start`), which comes back on the same
port, so the running command reconnects to the same URL.
"""

import json
import os
import subprocess

import pytest
from conftest import CLI, REPO
from helpers import flow_run_states, shell_doc, wait_for, write_yaml

pytestmark = pytest.mark.faults


def test_server_restart_mid_run_loses_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["ROMPY_TASKS_DATA_DIR"] = str(tmp_path / "data")

    def server(verb: str) -> str:
        done = subprocess.run([*CLI, "server", verb], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    marker = tmp_path / "started"
    model = ["sh", "-c", f"echo started > {marker}; sleep 6; echo done > out.txt"]
    path = write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, model, run_id="through-restart", outputs=["out.txt"]))
    first = server("start")
    proc = subprocess.Popen([*CLI, "run", str(path)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(marker.exists, 120), "the model started"
        server("stop")
        second = server("start")
        _, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr[-3000:]
        port = json.loads((tmp_path / "data" / "rompy-tasks" / "server" / "server.json").read_text())["port"]
        assert str(port) in first and str(port) in second, "the server came back at the same URL"
        manifest = json.loads((tmp_path / "runs" / "through-restart" / "rompy_tasks_run.json").read_text())
        assert manifest["result"]["status"] == "completed"
        assert (tmp_path / "runs" / "through-restart" / "out.txt").read_text() == "done\n"
        auth = (tmp_path / "data" / "rompy-tasks" / "server" / "auth").read_text().strip()
        assert flow_run_states(f"http://127.0.0.1:{port}/api", auth, "through-restart") == ["COMPLETED"]
    finally:
        proc.kill()
        proc.wait()
        server("stop")


def test_a_server_that_stops_for_good_ends_the_command_with_one_clear_line(tmp_path):
    """Issue 28.3: was a raw httpx.ConnectError traceback, then a hang in the exit drain."""
    import time

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["ROMPY_TASKS_DATA_DIR"] = str(tmp_path / "data")
    marker = tmp_path / "started"
    model = ["sh", "-c", f"echo started > {marker}; sleep 4; echo done > out.txt"]
    path = write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, model, run_id="api-gone", outputs=["out.txt"]))
    subprocess.run([*CLI, "server", "start"], cwd=REPO, env=env, capture_output=True, timeout=180, check=True)
    proc = subprocess.Popen([*CLI, "run", str(path)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(marker.exists, 120), "the model started"
        subprocess.run([*CLI, "server", "stop"], cwd=REPO, env=env, capture_output=True, timeout=180, check=True)
        stopped = time.monotonic()
        _, stderr = proc.communicate(timeout=300)
        took = time.monotonic() - stopped
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1, stderr[-3000:]
    assert "stopped answering" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert (tmp_path / "runs" / "api-gone" / "out.txt").read_text() == "done\n", "the model's outputs stay"
    print(f"the command ended {took:.1f} s after the server stopped")

    # its guard could not mark the run Crashed (no API then): the next server start does, from the
    # orchestrator the run names (host, pid, start time), and leaves runs whose command still runs
    restarted = subprocess.run(
        [*CLI, "server", "start"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    try:
        assert "marked Crashed 1 run(s) whose command died: api-gone" in restarted.stderr, restarted.stderr
        port = json.loads((tmp_path / "data" / "rompy-tasks" / "server" / "server.json").read_text())["port"]
        auth = (tmp_path / "data" / "rompy-tasks" / "server" / "auth").read_text().strip()
        assert flow_run_states(f"http://127.0.0.1:{port}/api", auth, "api-gone") == ["CRASHED"]
    finally:
        subprocess.run([*CLI, "server", "stop"], cwd=REPO, env=env, capture_output=True, timeout=180)
