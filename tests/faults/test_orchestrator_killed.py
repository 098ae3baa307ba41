"""SIGKILL of the user's command takes the whole model tree down (issue 15.2).

The model is a wrapper (`sh -c 'a & b & wait'`), as launchers and job scripts are: the
kernel's parent-death signal reaches only the wrapper, so its children need the guard. One
child leaves the model's process group and session (`setsid -f`, as MPI launchers and
daemonising wrappers do): killing process groups does not reach it (issue 28.2).
"""

import signal

import pytest
from conftest import process_gone, run_cli, wait_queue_empty
from helpers import VEROS_IMAGE, pids_in, shell_doc, signal_cli_once, wait_for, write_yaml

pytestmark = pytest.mark.faults


def wrapper_model(pids_file) -> list[str]:
    """A model that starts two children, one in a session of its own, and waits, noting their pids."""
    escaped = f"setsid -f sh -c 'echo $$ >> {pids_file}; exec sleep 301' < /dev/null > /dev/null 2>&1"
    script = f"sleep 300 & echo $! >> {pids_file}; {escaped}; wait"
    return ["sh", "-c", script]


def kill_cli_once_children_run(path, pids_file, api_url) -> list[int]:
    signal_cli_once(("run", str(path)), api_url, lambda: len(pids_in(pids_file)) == 2, signal.SIGKILL)
    return pids_in(pids_file)


def unfinished_runs(run_name: str) -> list[str]:
    """Flow runs named `run_name`, their subflows and task runs that the API does not show final."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        flows = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])))
        assert flows, f"no flow run named {run_name}"
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [f.id for f in flows]}))
    final = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
    # state_type, not state: a task run's row reaches the API before its state row does
    runs = [*flows, *tasks]
    return [f"{run.name}: {run.state_type}" for run in runs if getattr(run.state_type, "value", None) not in final]


def test_sigkill_of_the_cli_kills_a_wrappers_children_and_crashes_its_runs(prefect_api, tmp_path):
    pids_file = tmp_path / "pids"
    path = write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, wrapper_model(pids_file), run_id="killed-local"))
    children = kill_cli_once_children_run(path, pids_file, prefect_api)
    assert wait_for(lambda: all(process_gone(pid) for pid in children), 5), "no child of the model survives"
    assert wait_for(lambda: not unfinished_runs("killed-local"), 15), unfinished_runs("killed-local")


@pytest.mark.slurm
def test_sigkill_of_the_cli_cancels_its_slurm_jobs_and_their_models(cluster, prefect_api, tmp_path):
    pids_file = tmp_path / "pids"
    backend = {"type": "slurm", "queue": cluster, "time_limit": "00:10:00", "launcher": "none"}
    doc = shell_doc(tmp_path, wrapper_model(pids_file), run_id="killed-slurm", backend=backend)
    children = kill_cli_once_children_run(write_yaml(tmp_path / "p.yaml", doc), pids_file, prefect_api)
    assert wait_queue_empty(30), "the CLI's worker jobs were cancelled"
    assert wait_for(lambda: all(process_gone(pid) for pid in children), 10), "no child of the model survives"
    assert wait_for(lambda: not unfinished_runs("killed-slurm"), 15), unfinished_runs("killed-slurm")


@pytest.mark.docker
def test_sigkill_of_the_cli_kills_its_container_and_the_next_run_removes_it(engine, prefect_api, tmp_path):
    from rompy_tasks.backends.docker import RUN_LABEL

    def ours(run_id: str) -> list:
        return engine.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})

    backend = {"type": "docker", "image": VEROS_IMAGE, "timeout": 600}
    doc = shell_doc(tmp_path, ["sh", "-c", "echo started; sleep 300"], run_id="killed-docker", backend=backend)
    log = tmp_path / "runs" / "killed-docker" / "logs" / "run.log"
    started = lambda: log.exists() and "\nstarted\n" in log.read_text()  # noqa: E731
    signal_cli_once(("run", str(write_yaml(tmp_path / "p.yaml", doc))), prefect_api, started, signal.SIGKILL)
    assert wait_for(lambda: all(c.status == "exited" for c in ours("killed-docker")), 15), "the container was killed"
    assert wait_for(lambda: not unfinished_runs("killed-docker"), 15), unfinished_runs("killed-docker")
    doc = shell_doc(tmp_path, ["true"], run_id="after-kill", backend=backend)
    result = run_cli("run", str(write_yaml(tmp_path / "q.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stderr[-2000:]
    assert not ours("killed-docker"), "the next docker run removed the leftover"
