"""Completed members stay Completed: the guard crashes runs only when their orchestrator died.

A member's states travel to the API as events; at the end of an ensemble the last members'
Completed events could still be on their way while the guard, seeing the API report them
Running, force-set Crashed on them (7 of 11 SLURM ensembles showed 1-2 completed members
Crashed, their records written, the command exiting 0).
"""

import os
import subprocess
import sys
import time
import uuid

import pytest
from conftest import CLI, wait_queue_empty
from helpers import shell_doc, wait_for, write_yaml
from services import api_request

from rompy_tasks.backends import guard

pytestmark = pytest.mark.faults


def member_states(api_url: str, flow_run_name: str) -> dict[str, str]:
    """Task run name -> state name, for the task runs of flow runs named `flow_run_name`."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        flows = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [f.id for f in flows]}))
    return {run.name: run.state_name for run in tasks}  # state can be None a moment: its row follows the run's


@pytest.mark.slurm
def test_a_slurm_ensembles_completed_members_are_never_shown_crashed(cluster, prefect_api, tmp_path):
    """Two ensembles of quick members from the user's command: every member Completed in the API."""
    backend = {"type": "slurm", "queue": cluster, "time_limit": "00:10:00", "max_jobs": 2, "launcher": "none"}
    for attempt in range(2):
        name = f"quick-{attempt}"
        doc = {
            "name": name,
            "pipeline": shell_doc(tmp_path, "true", run_id="q", backend=backend),
            "members": {"n": 8},
            "max_parallel": 8,
        }
        path = write_yaml(tmp_path / f"{name}.yaml", doc)
        env = {**os.environ, "PREFECT_API_URL": prefect_api}
        ran = subprocess.run([*CLI, "ensemble", str(path)], env=env, capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert len(list((tmp_path / "runs" / name / "records").glob("*.json"))) == 8
        expected = {f"q_m{i:03d}": "Completed" for i in range(8)}
        completed = lambda name=name, expected=expected: member_states(prefect_api, name) == expected  # noqa: E731
        assert wait_for(completed, 20), member_states(prefect_api, name)
        assert wait_queue_empty(), "the ensemble's cluster closed"


def test_when_the_orchestrator_dies_only_members_without_a_fresh_record_are_crashed(prefect_api, tmp_path):
    """The guard itself, as a dead orchestrator leaves it: its flow run and unfinished task runs
    are marked Crashed, except a member whose completion record was written after its submission."""
    running = {"state": {"type": "RUNNING", "name": "Running"}, "force": True}
    flow = api_request(prefect_api, "POST", "/flows/", {"name": "guard-test"})
    flow_run = api_request(prefect_api, "POST", "/flow_runs/", {"flow_id": flow["id"], "name": f"g-{uuid.uuid4().hex}"})
    api_request(prefect_api, "POST", f"/flow_runs/{flow_run['id']}/set_state", running)
    tasks = {}
    for name in ("finished", "interrupted", "stale-record"):
        body = {"flow_run_id": flow_run["id"], "task_key": name, "dynamic_key": "0", "name": name}
        tasks[name] = api_request(prefect_api, "POST", "/task_runs/", body)["id"]
        api_request(prefect_api, "POST", f"/task_runs/{tasks[name]}/set_state", running)
    records = {name: tmp_path / f"{name}.json" for name in tasks}
    records["stale-record"].write_text("{}")
    os.utime(records["stale-record"], (time.time() - 3600,) * 2)  # an earlier run's record
    submitted = time.time()
    records["finished"].write_text("{}")  # written by the member after its submission
    lines = [f"+flowrun {flow_run['id']} {prefect_api}"]
    lines += [f"+record {tasks[name]} {submitted} {records[name]}" for name in tasks]
    guarding = subprocess.run(
        [sys.executable, "-I", "-S", guard.__file__], input="\n".join(lines) + "\n", text=True, timeout=60
    )
    assert guarding.returncode == 0
    states = {name: api_request(prefect_api, "GET", f"/task_runs/{i}")["state"]["name"] for name, i in tasks.items()}
    assert states == {"finished": "Running", "interrupted": "Crashed", "stale-record": "Crashed"}
    assert api_request(prefect_api, "GET", f"/flow_runs/{flow_run['id']}")["state"]["name"] == "Crashed"
