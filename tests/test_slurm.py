"""The slurm backend on a real single-node SLURM cluster (started by scripts/slurm-cluster)."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import yaml
from conftest import CLI, REPO, process_gone, queue_empty, wait_queue_empty
from helpers import signal_cli_once, wait_for, write_yaml
from pydantic import ValidationError

from rompy_tasks.backends.slurm import SlurmConfig, walltime_seconds
from rompy_tasks.core.errors import BackendError, RunTimeoutError
from rompy_tasks.pipeline import validate_data

# --- validation ---------------------------------------------------------------------------------


def problems(**fields):
    with pytest.raises(ValidationError) as info:
        SlurmConfig(**fields)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}


def test_defaults_and_valid_values():
    config = SlurmConfig(
        queue="debug",
        account="proj1",
        qos="normal",
        nodes=2,
        ntasks=4,
        cpus_per_task=8,
        memory="4G",
        time_limit="1-02:30:00",
        job_extra_directives=["--exclusive"],
        job_script_prologue=["module load veros"],
        max_jobs=4,
        interface="lo",
        launcher="mpiexec",
    )
    assert config.launch_command(["m"]) == ["mpiexec", "-n", "4", "m"]
    assert SlurmConfig().launcher == "srun" and SlurmConfig().interface == "lo"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"nodes": 0}, "nodes"),
        ({"nodes": 101}, "nodes"),
        ({"cpus_per_task": 0}, "cpus_per_task"),
        ({"cpus_per_task": 129}, "cpus_per_task"),
        ({"ntasks": 0}, "ntasks"),
        ({"memory": "lots"}, "memory"),
        ({"memory": "4 G"}, "memory"),
        ({"time_limit": "soon"}, "time_limit"),
        ({"time_limit": "0s"}, "time_limit"),
        ({"time_limit": "00:61:00"}, "time_limit"),
        ({"time_limit": "1-2:3"}, "time_limit"),
        ({"job_extra_directives": ["--exclusive\n#SBATCH --uid=0"]}, "job_extra_directives"),
        ({"job_extra_directives": ["#SBATCH --exclusive"]}, "job_extra_directives"),
        # issue 36 (directive injection): a trailing newline, options placing the job's files or identity
        ({"job_extra_directives": ["--exclusive\n"]}, "job_extra_directives"),
        ({"job_extra_directives": ["--output=/etc/cron.d/job"]}, "job_extra_directives"),
        ({"additional_options": ["-o /etc/cron.d/job"]}, "additional_options"),
        ({"job_extra_directives": ["--chdir=/"]}, "job_extra_directives"),
        ({"additional_options": ["--uid=0"]}, "additional_options"),
        ({"job_extra_directives": ["--wrap=touch /tmp/x"]}, "job_extra_directives"),
        ({"output_file": "/etc/cron.d/job-%j"}, "output_file"),
        ({"error_file": "../../job-%j.err"}, "error_file"),
        ({"job_script_prologue": ["module load x\nrm -rf /"]}, "job_script_prologue"),
        ({"max_jobs": 0}, "max_jobs"),
        ({"launcher": "aprun"}, "launcher"),
        ({"queue": "debug; rm -rf /"}, "queue"),
        ({"timeout": 30}, "timeout"),
        ({"env_vars": {"N": 1}}, "env_vars.N"),
    ],
)
def test_invalid_values_name_their_field(fields, field):
    assert field in problems(**fields)


@pytest.mark.parametrize(("text", "seconds"), [("00:01:30", 90), ("2:00:00", 7200), ("1-00:00:01", 86401)])
def test_walltime_parsing(text, seconds):
    assert walltime_seconds(text) == seconds


@pytest.mark.parametrize(
    ("given", "rendered"),
    [
        ("01:00:00", "01:00:00"),
        ("100:00:00", "4-04:00:00"),
        ("2h", "02:00:00"),
        ("PT90M", "01:30:00"),
        (7200, "02:00:00"),
    ],
)
def test_time_limit_takes_every_duration_form_and_renders_slurms(given, rendered):
    assert SlurmConfig(time_limit=given).time_limit == rendered


def test_job_script_carries_resources_the_api_url_and_the_log_directory(tmp_path):
    config = SlurmConfig(queue="debug", ntasks=2, cpus_per_task=3, memory="2G", qos="q", max_jobs=3)
    spec = config.dask_cluster("http://x/api", tmp_path / "logs" / "slurm")
    kwargs = spec.cluster_kwargs
    assert spec.cluster_class == "dask_jobqueue.SLURMCluster" and spec.adapt_kwargs["maximum"] == 3
    assert kwargs["job_cpu"] == 3 and kwargs["memory"] == "2GB" and kwargs["queue"] == "debug"
    assert {"--ntasks=2", "--qos=q", "--nodes=1"} <= set(kwargs["job_extra_directives"])
    assert kwargs["job_script_prologue"][0] == "export PREFECT_API_URL=http://x/api"
    assert kwargs["log_directory"] == str(tmp_path / "logs" / "slurm")


def test_backends_do_not_import_prefect():
    """Runner construction lives in flows/: backends stay importable (and fast) without Prefect."""
    code = (
        "import sys, rompy_tasks.backends.slurm, rompy_tasks.backends.docker, rompy_tasks.backends.local; "
        "sys.exit(1 if any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_json_schema_export():
    schema = SlurmConfig.model_json_schema()
    assert schema["properties"]["nodes"]["maximum"] == 100
    assert schema["properties"]["type"]["const"] == "slurm"


# --- clear errors before submission ---------------------------------------------------------------


def test_missing_partition_is_named(cluster):
    with pytest.raises(BackendError, match="partition 'nowhere' does not exist"):
        SlurmConfig(queue="nowhere").preflight()
    SlurmConfig(queue=cluster).preflight()


def test_missing_sbatch_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError, match="sbatch is not on PATH"):
        SlurmConfig().preflight()


def test_unreachable_controller_is_reported(cluster, monkeypatch, tmp_path):
    conf = tmp_path / "slurm.conf"
    real = open("/etc/slurm/slurm.conf").read()
    conf.write_text(real + "SlurmctldPort=1\n")  # a controller that is not there
    monkeypatch.setenv("SLURM_CONF", str(conf))
    with pytest.raises(BackendError, match="controller is not reachable"):
        SlurmConfig().preflight()


def test_execute_outside_a_job_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(BackendError, match="inside a SLURM job"):
        SlurmConfig().execute(object())


# --- execution --------------------------------------------------------------------------------------


def pipeline(tmp_path, run_id, model, **backend):
    return validate_data(
        {
            "config": {
                "run_id": run_id,
                "output_dir": str(tmp_path),
                "period": {"start": "2026-01-01", "duration": "2d"},
                "config": model,
            },
            "backend": {"type": "slurm", "queue": "debug", "time_limit": "00:10:00", **backend},
            "postprocessor": [],
        }
    )


@pytest.mark.veros
def test_veros_pipeline_runs_inside_a_slurm_job(cluster, prefect_api, tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId

    from flows.pipeline import model_pipeline

    result = model_pipeline(pipeline=pipeline(tmp_path, "veros-slurm", {"model_type": "veros", "setup": "acc"}))
    job_id = result.run.details["slurm_job_id"]
    assert result.stages_completed == ["generate", "run", "postprocess"] and job_id.isdigit()
    log = (tmp_path / "veros-slurm" / "logs" / "run.log").read_text()
    assert "srun --ntasks=1" in log and "Integration done" in log
    assert (tmp_path / "veros-slurm" / "acc.snapshot.nc").exists()
    manifest = (tmp_path / "veros-slurm" / "rompy_tasks_run.json").read_text()
    assert f'"slurm_job_id": "{job_id}"' in manifest
    job_logs = [p.name for p in (tmp_path / "veros-slurm" / "logs" / "slurm").iterdir()]
    assert any(job_id in name for name in job_logs), f"worker job output in the run's logs/slurm: {job_logs}"

    async def worker_logs():
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["run-veros-slurm"]))
            )
            return await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])), limit=200
            )

    messages = [entry.message for entry in asyncio.run(worker_logs())]
    assert f"running in SLURM job {job_id} on {os.uname().nodename}" in messages, "the worker logged to our API"
    assert any("Integration done" in m for m in messages), messages[-8:]
    assert wait_queue_empty(), "worker jobs are released when the flow ends"


def test_walltime_shorter_than_the_model_is_a_clear_error(cluster, prefect_api, tmp_path):
    from flows.pipeline import model_pipeline

    pids = tmp_path / "pid"
    model = {"model_type": "shell", "command": ["sh", "-c", f"echo $$ > {pids}; sleep 300"]}
    start = time.monotonic()
    with pytest.raises(RunTimeoutError, match="SLURM walltime time_limit=00:00:40"):
        model_pipeline(pipeline=pipeline(tmp_path, "walltime", model, time_limit="00:00:40"))
    assert time.monotonic() - start < 90
    assert process_gone(int(pids.read_text()))
    assert wait_queue_empty(), "no job left in the queue"


def test_sigterm_to_the_cli_releases_jobs_and_kills_the_model(cluster, prefect_api, tmp_path):
    run_id = f"slurm-cancel-{uuid.uuid4().hex[:6]}"
    pid_file = tmp_path / "model.pid"
    doc = {
        "config": {
            "run_id": run_id,
            "output_dir": str(tmp_path),
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": ["sh", "-c", f"echo $$ > {pid_file}; sleep 300"]},
        },
        "backend": {"type": "slurm", "queue": "debug", "time_limit": "00:10:00"},
    }
    path = write_yaml(tmp_path / "p.yaml", doc)
    started = lambda: pid_file.exists() and pid_file.read_text().strip() and not queue_empty()  # noqa: E731
    assert signal_cli_once(("run", str(path)), prefect_api, started, signal.SIGTERM) != 0
    assert wait_queue_empty(), "SIGTERM released the SLURM jobs"
    model_pid = int(pid_file.read_text())
    assert wait_for(lambda: process_gone(model_pid), 20), "the model died with its job"


def test_ensemble_from_a_fresh_cli_shares_one_cluster_of_max_jobs_pilot_jobs(cluster, prefect_api, tmp_path):
    """The user's command, in a fresh process: every member succeeds, on at most max_jobs shared jobs.
    With the default max_parallel, every member waits at the cluster's scheduler and the jobs take
    them as they free up (issue 37.3): no separate limit of two in flight."""
    import threading

    doc = {
        "name": "slurm-ens",
        "pipeline": {
            "config": {
                "run_id": "s",
                "output_dir": str(tmp_path),
                "period": {"start": "2026-01-01", "duration": "1h"},
                "config": {"model_type": "shell", "command": "sh -c 'sleep 1; echo $SLURM_JOB_ID > job'"},
            },
            "backend": {"type": "slurm", "queue": "debug", "time_limit": "00:10:00", "max_jobs": 2},
            "postprocessor": [],
        },
        "members": {"n": 6},
    }
    path = tmp_path / "ensemble.yaml"
    path.write_text(yaml.safe_dump(doc))
    seen_jobs: set[str] = set()
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
            seen_jobs.update(jobs)
            peak[0] = max(peak[0], len(jobs))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = subprocess.run(
            [*CLI, "ensemble", str(path), "-v"],
            cwd=tmp_path,  # job output must not land in the current directory
            env={**os.environ, "PREFECT_API_URL": prefect_api},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        stop.set()
        sampler.join()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 member(s) to run, 0 already complete, as the worker jobs free up" in result.stderr, result.stderr[-3000:]
    where = tmp_path / "slurm-ens"
    jobs = [(where / f"s_m{i:03d}" / "job").read_text().strip() for i in range(6)]
    assert len(set(jobs)) <= 2, f"6 members ran on at most max_jobs=2 worker jobs, got {sorted(set(jobs))}"
    assert 1 <= peak[0] <= 2, f"at most max_jobs jobs in the queue at once, saw {peak[0]}"
    assert set(jobs) <= seen_jobs
    logs = sorted(p.name for p in (where / "logs" / "slurm").iterdir())
    assert any(job in name for job in jobs for name in logs), logs
    assert not list(tmp_path.glob("slurm-*.out")), "no job output in the current directory"
    assert wait_queue_empty(), "the ensemble's cluster closed: its jobs left the queue"
    records = sorted(p.stem for p in (where / "records").glob("*.json"))
    assert records == [f"s_m{i:03d}" for i in range(6)]


def test_a_run_waiting_in_a_busy_queue_says_what_it_waits_for(cluster, prefect_api, tmp_path):
    """Issue 29.9: a run whose worker job waited in a busy queue printed nothing for minutes."""
    blocker = subprocess.run(
        ["sbatch", "--parsable", "-p", "debug", "-c", "2", "-J", "busy", "-o", "/dev/null", "--wrap", "sleep 120"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        running = ["squeue", "-h", "-j", blocker, "-o", "%T"]
        assert wait_for(lambda: subprocess.run(running, capture_output=True, text=True).stdout.strip() == "RUNNING", 60)
        doc = {
            "config": {
                "run_id": "queued",
                "output_dir": str(tmp_path),
                "period": {"start": "2026-01-01", "duration": "1h"},
                "config": {"model_type": "shell", "command": ["true"]},
            },
            "backend": {"type": "slurm", "queue": "debug", "time_limit": "00:10:00"},
        }
        env = {**os.environ, "PREFECT_API_URL": prefect_api, "ROMPY_TASKS_QUEUE_NOTE_SECONDS": "3"}
        path = write_yaml(tmp_path / "p.yaml", doc)
        proc = subprocess.Popen([*CLI, "run", str(path)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        threading.Timer(20, lambda: subprocess.run(["scancel", blocker])).start()  # the queue frees up
        _, stderr = proc.communicate(timeout=300)
    finally:
        subprocess.run(["scancel", blocker])
    assert proc.returncode == 0, stderr[-3000:]
    assert "waiting for SLURM to start job(s)" in stderr and "(in partition debug: Resources)" in stderr, stderr[-3000:]
    assert wait_queue_empty()
