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
    return [run.state_type.value for run in runs if run.state_type]  # the state row follows the run's


def scancel_once_started(args: tuple[str, ...], api_url: str, started, run_dir, before=None) -> tuple[int, str, str]:
    """Run the user's command; once `started()`, (call `before`,) scancel the job its run recorded.

    Returns the command's exit code, its stderr and the cancelled job's id.
    """
    env = {**os.environ, "PREFECT_API_URL": api_url}
    proc = subprocess.Popen([*CLI, *args], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(started, 120), "the model started"
        if before is not None:
            before()
        job_id = (run_dir / "logs" / "slurm-job").read_text().strip()
        subprocess.run(["scancel", job_id], check=True)
        _, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, stderr, job_id


def test_scancel_of_the_worker_job_fails_the_run_naming_the_job_and_runs_nothing_again(cluster, prefect_api, tmp_path):
    starts = tmp_path / "starts"
    backend = {"type": "slurm", "queue": cluster, "time_limit": "00:10:00", "launcher": "none"}
    doc = shell_doc(tmp_path, ["sh", "-c", f"echo $$ >> {starts}; sleep 300"], run_id="lost-job", backend=backend)
    path = write_yaml(tmp_path / "p.yaml", doc)
    started = lambda: starts.exists() and starts.read_text().strip()  # noqa: E731
    code, stderr, job_id = scancel_once_started(
        ("run", str(path)), prefect_api, started, tmp_path / "runs" / "lost-job"
    )
    assert code == 1, stderr[-3000:]
    assert f"SLURM job {job_id} running the model ended before the model did" in stderr, stderr[-3000:]
    assert "CANCELLED" in stderr, stderr[-3000:]
    assert "INFO    | distributed" not in stderr, "Dask's INFO chatter stays out of the user's terminal"
    assert len(starts.read_text().split()) == 1, "the model ran once: nothing re-ran it"
    assert wait_queue_empty(30), "no job left"
    # A worker killed before its task run's first events reached the API leaves no task run at all.
    assert task_run_states(prefect_api, "run-lost-job") in (["CRASHED"], []), "the lost task run is not Running"


def test_a_lost_job_is_retried_only_as_run_retries_allows_from_a_clean_directory(cluster, prefect_api, tmp_path):
    starts = tmp_path / "starts"
    model = f"echo $$ >> {starts}; test -e out.txt && echo DIRTY; sleep 4; echo ok > out.txt"
    backend = {"type": "slurm", "queue": cluster, "time_limit": "00:10:00", "launcher": "none"}
    doc = shell_doc(tmp_path, ["sh", "-c", model], run_id="lost-retry", backend=backend, outputs=["out.txt"])
    doc["run_retries"] = 1
    path = write_yaml(tmp_path / "p.yaml", doc)
    run_dir = tmp_path / "runs" / "lost-retry"
    started = lambda: starts.exists() and starts.read_text().strip()  # noqa: E731
    partial = lambda: (run_dir / "out.txt").write_text("partial output of the lost attempt\n")  # noqa: E731
    code, stderr, job_id = scancel_once_started(("run", str(path)), prefect_api, started, run_dir, before=partial)
    assert code == 0, stderr[-3000:]
    assert f"SLURM job {job_id} running the model ended before the model did" in stderr
    assert "retrying (1 attempt(s) left) after removing 1 output file(s) of the lost attempt" in stderr
    assert len(starts.read_text().split()) == 2, "one retry, as run_retries says"
    run_log = (tmp_path / "runs" / "lost-retry" / "logs" / "run.log").read_text()
    assert "\nDIRTY\n" not in run_log, "the retry started without the lost attempt's outputs"
    assert f"SLURM job {job_id} running the model ended before the model did" in run_log, "the run log says why"
    assert wait_queue_empty(30)


def test_a_lost_job_fails_only_the_member_it_was_running(cluster, prefect_api, tmp_path):
    starts = tmp_path / "starts"
    model = f"echo {{{{ runtime.run_id }}}} >> {starts}; sleep {{{{ 30 if runtime.run_id.endswith('0') else 1 }}}}"
    backend = {"type": "slurm", "queue": cluster, "time_limit": "00:10:00", "launcher": "none", "max_jobs": 1}
    pipeline = shell_doc(tmp_path, ["sh", "-c", model], run_id="e", backend=backend)
    doc = {"name": "lost-ens", "pipeline": pipeline, "members": {"n": 3}, "max_parallel": 3}
    path = write_yaml(tmp_path / "ensemble.yaml", doc)
    started = lambda: starts.exists() and "e_m000" in starts.read_text()  # noqa: E731
    member_dir = tmp_path / "runs" / "lost-ens" / "e_m000"
    code, stderr, job_id = scancel_once_started(("ensemble", str(path)), prefect_api, started, member_dir)
    assert code == 1, stderr[-3000:]
    assert f"member e_m000 failed after 1 attempt(s): SLURM job {job_id} running the model ended" in stderr
    ran = starts.read_text().split()
    assert sorted(ran) == ["e_m000", "e_m001", "e_m002"], "the members queued behind the lost one still ran, once"
    records = tmp_path / "runs" / "lost-ens" / "records"
    assert sorted(p.stem for p in records.glob("*.json")) == ["e_m001", "e_m002"]
    assert wait_queue_empty(30)
