"""A SLURM worker job cancelled under a running model fails the run, naming the job (issue 15.1).

Dask would re-run the model in a replacement job, in the same uncleaned run directory,
although `run_retries` is 0; the run must instead fail with the job id and its SLURM state,
and its task run must not stay Running in the API.
"""

import os
import subprocess

import pytest
from conftest import CLI, REPO, wait_queue_empty
from helpers import shell_doc, wait_for, write_yaml

pytestmark = [pytest.mark.faults, pytest.mark.slurm]


def task_run_states(api_url: str, name: str) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name])))
    return [run.state.type.value for run in runs]


def test_scancel_of_the_worker_job_fails_the_run_naming_the_job_and_runs_nothing_again(cluster, prefect_api, tmp_path):
    starts = tmp_path / "starts"
    backend = {"type": "slurm", "queue": cluster, "time_limit": "00:10:00", "launcher": "none"}
    doc = shell_doc(tmp_path, ["sh", "-c", f"echo $$ >> {starts}; sleep 300"], run_id="lost-job", backend=backend)
    path = write_yaml(tmp_path / "p.yaml", doc)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    proc = subprocess.Popen([*CLI, "run", str(path)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: starts.exists() and starts.read_text().strip(), 120), "the model started"
        job_id = (tmp_path / "runs" / "lost-job" / "logs" / "slurm-job").read_text().strip()
        subprocess.run(["scancel", job_id], check=True)
        _, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1, stderr[-3000:]
    assert f"SLURM job {job_id} running the model ended before the model did" in stderr
    assert "CANCELLED" in stderr, stderr[-3000:]
    assert "INFO    | distributed" not in stderr, "Dask's INFO chatter stays out of the user's terminal"
    assert len(starts.read_text().split()) == 1, "the model ran once: nothing re-ran it"
    assert wait_queue_empty(30), "no job left"
    assert task_run_states(prefect_api, "run-lost-job") == ["CRASHED"], "the lost task run is final in the API"
