"""The Docker engine stops under a running container (issue 15.4).

The user's command must say that the engine went away and name the container, not end in
a raw `requests` traceback; once the engine is back, the next run removes the leftover.
"""

import os
import subprocess

import pytest
from conftest import CLI, REPO, run_cli
from helpers import VEROS_IMAGE, shell_doc, wait_for, write_yaml

from rompy_tasks.backends.docker import RUN_LABEL, docker_client

pytestmark = [pytest.mark.faults, pytest.mark.docker]
ENGINE = REPO / "scripts" / "docker-engine"


def ours(run_id: str) -> list:
    return docker_client().containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


def test_engine_stopped_mid_run_is_named_and_its_container_removed_next_time(engine, prefect_api, tmp_path):
    backend = {"type": "docker", "image": VEROS_IMAGE, "timeout": 600}
    doc = shell_doc(tmp_path, ["sh", "-c", "echo started; sleep 300"], run_id="engine-gone", backend=backend)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    command = [*CLI, "run", str(write_yaml(tmp_path / "p.yaml", doc))]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "runs" / "engine-gone" / "logs" / "run.log"
    try:
        assert wait_for(lambda: log.exists() and "\nstarted\n" in log.read_text(), 90), "the model runs"
        subprocess.run([ENGINE, "stop"], check=True)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
        subprocess.run([ENGINE, "start"], check=True, capture_output=True)
    assert proc.returncode == 1, stderr[-2000:]
    failure = stderr[stderr.index("Run engine-gone failed") :]
    assert "EngineUnreachable: the Docker engine went away during the run of container rompy-engine-gone-" in failure
    assert "requests.exceptions" not in failure
    assert "the Docker engine went away" in log.read_text(), "the run log says what happened"
    assert ours("engine-gone"), "the engine kept the stopped container over its restart"

    doc = shell_doc(tmp_path, ["true"], run_id="engine-back", backend=backend)
    result = run_cli("run", str(write_yaml(tmp_path / "q.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "removed 1 leftover container(s) of earlier runs: rompy-engine-gone-" in result.stderr
    assert not ours("engine-gone") and not ours("engine-back")


def test_a_leftover_another_member_already_removed_counts_as_removed(engine):
    """Parallel members of a re-run find the same leftovers; the first re-run failed 3/3 with a raw
    `409 ... removal of container ... is already in progress` (or would with 404 once it is gone)."""
    from rompy_tasks.backends.docker import REMOVE_LABEL, remove_leftovers

    labels = {REMOVE_LABEL: "true", RUN_LABEL: "leftover"}
    container = engine.containers.create(VEROS_IMAGE, ["true"], labels=labels, network_mode="none")
    container.start()
    container.wait(timeout=60)
    seen = engine.containers.list(all=True, filters={"label": f"{REMOVE_LABEL}=true", "status": "exited"})
    assert container.id in {c.id for c in seen}
    container.remove(force=True)  # another member got there first

    stale = [c for c in seen if c.id == container.id]  # the list the second member took before the removal

    class StaleList:
        def list(self, **filters: object) -> list:
            return stale

    class Engine:
        containers = StaleList()

    assert remove_leftovers(Engine()) == [], "gone already: nothing to remove, and no error"


def test_an_ensemble_stops_starting_members_when_the_engine_goes_away(engine, prefect_api, tmp_path):
    """Issue 28.4: every queued member failed with its own traceback while the engine was down.
    Now the first member that finds it unreachable stops the batch; a re-run once it is back runs the rest."""
    import json

    from helpers import shell_ensemble_doc

    backend = {"type": "docker", "image": VEROS_IMAGE, "timeout": 600}
    doc = shell_ensemble_doc(tmp_path, ["sh", "-c", "echo started; sleep 30; echo done > out.txt"], {"n": 4})
    doc["pipeline"]["backend"] = backend
    doc["max_parallel"] = 1
    path = write_yaml(tmp_path / "ens.yaml", doc)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    proc = subprocess.Popen([*CLI, "ensemble", str(path)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    first_log = tmp_path / "runs" / "ens" / "m_m000" / "logs" / "run.log"
    try:
        assert wait_for(lambda: first_log.exists() and "\nstarted\n" in first_log.read_text(), 120), "member 0 runs"
        subprocess.run([ENGINE, "stop"], check=True)
        _, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
        proc.wait()
        subprocess.run([ENGINE, "start"], check=True, capture_output=True)
    assert proc.returncode == 1, stderr[-3000:]
    assert "3 member(s) not started: member m_m000 found the engine unreachable" in stderr, stderr[-3000:]
    assert "1 member(s) failed and 3 not started" in stderr
    assert stderr.count("Traceback") == 0 and "requests.exceptions" not in stderr, stderr[-3000:]
    for index in (1, 2, 3):
        assert not (tmp_path / "runs" / "ens" / f"m_m00{index}").exists(), "a queued member never started"

    rerun = run_cli("ensemble", str(path), env={"PREFECT_API_URL": prefect_api}, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    records = sorted((tmp_path / "runs" / "ens").glob("*/rompy_tasks_run.json"))
    assert len(records) == 4 and all(json.loads(r.read_text())["result"]["status"] == "completed" for r in records)
