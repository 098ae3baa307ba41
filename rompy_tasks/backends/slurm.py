"""The slurm backend: the run stage executes in SLURM jobs, through dask-jobqueue.

The config declares the `dask_jobqueue.SLURMCluster` its run stage needs (`dask_cluster`);
the flows build the Prefect task runner from that declaration, one per pipeline or one per
ensemble (its worker jobs then act as pilot jobs shared by all members). On a worker inside
a SLURM allocation `execute` starts the model with the launcher (`srun` by default) in its
own process group, with the same streaming, result and errors as the local backend, plus
the SLURM job id. Workers report to the flow's Prefect API: its URL is exported in the job
script, so no worker starts a server of its own. Worker job output goes to the
`log_directory` the flow chooses (a `logs/slurm/` directory), never the current directory.
"""

import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from rompy_tasks.backends.base import BaseBackendConfig, DaskCluster, LineSink, RunResult
from rompy_tasks.backends.command import CommandOverride
from rompy_tasks.backends.process import (
    child_environment,
    execute_process,
    mpi_environment,
    mpi_launch,
    resolve_executable,
)
from rompy_tasks.core.errors import BackendError, RunTimeoutError
from rompy_tasks.core.host_paths import host_access_problem
from rompy_tasks.core.run_files import write_text
from rompy_tasks.core.time import clock_text, parse_duration

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun

WALLTIME_MARGIN_SECONDS = 15
_UNSETTLED = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"}
_NO_NEWLINES = re.compile(r"[^\n\r]*")  # fullmatch: `$` would let a last newline through
# sbatch options that choose the job's directory, files and identity: a config must not point them outside the run
_PLACING_OPTIONS = {"--output", "--error", "--input", "--chdir", "--uid", "--gid", "--wrap", "--export-file"}


def walltime_seconds(text: str) -> int:
    """`HH:MM:SS` or `D-HH:MM:SS` (or any duration form) in seconds."""
    return int(parse_duration(text).total_seconds())


class SlurmConfig(CommandOverride, BaseBackendConfig):
    """Run the model in SLURM jobs (Dask workers started by dask-jobqueue)."""

    type: Literal["slurm"] = "slurm"
    queue: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="Partition (default: the cluster's)")
    account: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="Account to charge")
    qos: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="Quality of service")
    nodes: int = Field(1, ge=1, le=100, description="Nodes per job (1..100)")
    ntasks: int = Field(1, ge=1, le=100000, description="Tasks (MPI ranks) per job")
    cpus_per_task: int = Field(1, ge=1, le=128, description="CPUs per task (1..128)")
    memory: str | None = Field(
        None, pattern=r"^\d+(\.\d+)?[KMGTkmgt]i?[Bb]?$", description="Memory per job, e.g. 4G, 500MB"
    )
    time_limit: str = Field("01:00:00", description="Walltime per job: HH:MM:SS, D-HH:MM:SS or any duration (2h)")
    job_extra_directives: list[str] = Field(default_factory=list, description="Extra #SBATCH options, e.g. --exclusive")
    # rompy's SLURM keys, with rompy's meaning
    additional_options: list[str] = Field(default_factory=list, description="rompy's name for extra sbatch options")
    reservation: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="Reservation to run in")
    job_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Job name (a unique suffix is added: -<8 hex>)"
    )
    output_file: str | None = Field(
        None,
        pattern=r"^[^\s'\"]+$",
        description="sbatch --output (job stdout); relative: in the run's logs/slurm/",
    )
    error_file: str | None = Field(
        None,
        pattern=r"^[^\s'\"]+$",
        description="sbatch --error (job stderr); relative: in the run's logs/slurm/",
    )
    mail_type: str | None = Field(
        None, pattern=r"^[A-Z_0-9]+(,[A-Z_0-9]+)*$", description="sbatch --mail-type, e.g. END,FAIL"
    )
    mail_user: str | None = Field(None, pattern=r"^[^\s@'\"]+@[^\s@'\"]+$", description="sbatch --mail-user")
    job_script_prologue: list[str] = Field(
        default_factory=list, description="Shell lines run before the worker starts, e.g. module load ..."
    )
    max_jobs: int = Field(1, ge=1, le=1000, description="Upper bound of concurrently running worker jobs")
    interface: str = Field("lo", pattern=r"^[A-Za-z0-9_.:-]+$", description="Network interface for Dask")
    mpi: str | None = Field(
        None,
        pattern=r"^[a-z0-9_]+$",
        description="srun's MPI plugin (--mpi: pmix, pmi2, ...; `srun --mpi=list` shows the cluster's); default: "
        "the cluster's MpiDefault",
    )
    launcher: Literal["srun", "mpiexec", "none"] = Field(
        "srun", description="How the model starts in the job (a `command` of the backend runs as written)"
    )

    @field_validator("time_limit", mode="before")
    @classmethod
    def _time_limit_valid(cls, value: Any) -> str:
        """Any duration form, rendered as SLURM's walltime (`100:00:00` -> `4-04:00:00`)."""
        seconds = parse_duration(value).total_seconds()
        if seconds < 1:
            raise ValueError(f"time_limit {value!r} must be at least a second")
        return clock_text(seconds)

    @field_validator("job_extra_directives", "additional_options", "job_script_prologue")
    @classmethod
    def _single_lines(cls, value: list[str]) -> list[str]:
        for line in value:
            if not _NO_NEWLINES.fullmatch(line) or not line.strip():
                raise ValueError(f"{line!r} must be one non-empty line")
        return value

    @field_validator("output_file", "error_file")
    @classmethod
    def _not_the_hosts(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith("/") and ".." in value.split("/"):
            raise ValueError(f"{value!r}: a relative path stays in the run's logs/slurm/ directory (no '..')")
        if value.startswith("/") and (problem := host_access_problem(Path(value).parent)):
            raise ValueError(f"{value!r} cannot hold the job's output: {problem}")
        return value

    @field_validator("job_extra_directives", "additional_options")
    @classmethod
    def _directives_are_options(cls, value: list[str]) -> list[str]:
        for line in value:
            if not line.startswith("-"):
                raise ValueError(f"{line!r} must be an sbatch option such as --exclusive (no '#SBATCH')")
            option = line.split("=", 1)[0].split()[0]
            if option in _PLACING_OPTIONS or any(line.startswith(short) for short in ("-o", "-e", "-D", "-i")):
                raise ValueError(
                    f"{line!r}: where the job runs, reads and writes, and as whom, is rompy-tasks' to set "
                    "(output_file and error_file place the job's output in the run's logs/slurm/)"
                )
        return value

    # --- where the flow runs -------------------------------------------------------------------

    def preflight(self) -> None:
        """Before any submission: sbatch present, controller up, partition known."""
        if shutil.which("sbatch") is None:
            raise BackendError("SLURM is not available: sbatch is not on PATH (as root: scripts/slurm-cluster)")
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
        if ping.returncode != 0 or "UP" not in ping.stdout:
            raise BackendError(f"the SLURM controller is not reachable: {(ping.stdout + ping.stderr).strip()}")
        if self.queue is not None:
            listed = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True).stdout.split()
            if self.queue not in listed:
                raise BackendError(f"SLURM partition {self.queue!r} does not exist; partitions: {', '.join(listed)}")

    def cluster_kwargs(self, api_url: str, log_directory: Path) -> dict[str, Any]:
        """SLURMCluster arguments: one single-threaded Dask worker per job, our resources per job."""
        directives = [f"--nodes={self.nodes}", f"--ntasks={self.ntasks}"]
        for option, value in (
            ("--qos", self.qos),
            ("--reservation", self.reservation),
            ("--mail-type", self.mail_type),
            ("--mail-user", self.mail_user),
            # after dask-jobqueue's own -o/-e, so these win; inside the run's logs/slurm/ (validated relative)
            ("--output", self.output_file and str(log_directory / self.output_file)),
            ("--error", self.error_file and str(log_directory / self.error_file)),
        ):
            if value:
                directives.append(f"{option}={value}")
        directives += [*self.job_extra_directives, *self.additional_options]
        skip = ["-n 1"] + ([] if self.memory else ["--mem"])
        return {
            "queue": self.queue,
            "account": self.account,
            "cores": 1,
            "processes": 1,
            "job_cpu": self.cpus_per_task,
            "memory": _dask_memory(self.memory or "1G"),
            "walltime": self.time_limit,
            "interface": self.interface,
            # A lost worker job fails its task at once: Dask would otherwise re-run the model in a
            # replacement job, in the same uncleaned run directory, unasked (issue 15.1).
            "scheduler_options": {"interface": self.interface, "allowed_failures": 0},
            "job_extra_directives": directives,
            "job_directives_skip": skip,
            "job_script_prologue": [f"export PREFECT_API_URL={api_url}", *self.job_script_prologue],
            "log_directory": str(log_directory),
            "name": "rompy-tasks",
        }

    def dask_cluster(self, api_url: str, log_directory: Path) -> DaskCluster:
        """Worker jobs on demand, at most `max_jobs` in the queue; none left when idle."""
        job_name = f"{self.job_name or 'rompy-tasks'}-{secrets.token_hex(4)}"  # this cluster's only: scancel --name
        return DaskCluster(
            cluster_class="dask_jobqueue.SLURMCluster",
            cluster_kwargs={**self.cluster_kwargs(api_url, log_directory), "job_name": job_name},
            adapt_kwargs={"minimum": 0, "maximum": self.max_jobs},
            batch_job_name=job_name,
            # A worker job holds only the member it runs; the rest wait at the scheduler, so a
            # lost job takes no member with it that had not started.
            dask_config={"distributed.scheduler.worker-saturation": 1.0},
        )

    def reduction_cluster(
        self, api_url: str, log_directory: Path, jobs: int, cores: int, memory: str, walltime: str
    ) -> DaskCluster:
        """Worker jobs for ensemble statistics: this backend's partition, account and job setup,
        with the reduction's own cores, memory and walltime; a lost job's blocks are recomputed
        (a reduction reads files and writes nothing, so running it again is harmless)."""
        spec = self.dask_cluster(api_url, log_directory)
        kwargs = {
            **spec.cluster_kwargs,
            "cores": cores,
            "job_cpu": cores,
            "memory": _dask_memory(memory),
            "walltime": walltime,
            "scheduler_options": {"interface": self.interface},
            "job_directives_skip": ["-n 1"],
        }
        return DaskCluster(spec.cluster_class, kwargs, {"n": jobs}, spec.batch_job_name)

    def lost_worker_message(self, run: "ModelRun") -> str:
        """Name the SLURM job that was running the model and what SLURM says became of it."""
        job_id = recorded_job(run)
        if job_id is None:
            return "the SLURM job of the Dask worker was lost before the model started"
        return f"SLURM job {job_id} running the model ended before the model did ({job_state(job_id)})"

    def queue_note(self, batch_job_name: str) -> str | None:
        """The worker jobs still queued and SLURM's reason (`Resources`, `Priority`, ...), while none runs."""
        listed = subprocess.run(
            ["squeue", "-h", "--name", batch_job_name, "--user", str(os.getuid()), "-o", "%i|%T|%P|%r"],
            capture_output=True,
            text=True,
        ).stdout
        jobs = [line.split("|") for line in listed.splitlines() if line.count("|") == 3]
        if not jobs or any(state != "PENDING" for _, state, _, _ in jobs):
            return None
        queued = ", ".join(f"{job} (in partition {partition}: {reason})" for job, _, partition, reason in jobs)
        return f"waiting for SLURM to start job(s) {queued}"

    def shared_settings(self) -> dict[str, Any]:
        """Everything that shapes the worker jobs: members of one ensemble share one cluster."""
        return self.model_dump(
            exclude={"timeout", "env_vars", "secret_env", "working_dir", "launcher", "mpi", "command", "shell"}
        )

    # --- where the model runs (a Dask worker inside a SLURM job) --------------------------------

    def launch_command(self, command: list[str]) -> list[str]:
        if self.launcher == "srun":
            # a rank that fails ends the step (SLURM's default lets the other ranks run on)
            mpi = [f"--mpi={self.mpi}"] if self.mpi else []
            return ["srun", f"--ntasks={self.ntasks}", f"--cpus-per-task={self.cpus_per_task}", "--kill-on-bad-exit=1",
                    *mpi, *command]  # fmt: skip
        if self.launcher == "mpiexec":
            return mpi_launch("mpiexec", self.ntasks, command)
        return command

    def model_ranks(self) -> int | None:
        return None if self.command is not None or self.launcher == "none" else self.ntasks

    def model_environment(self) -> dict[str, str]:
        return {**(mpi_environment() if self.launcher == "mpiexec" else {}), **super().model_environment()}

    def execute(self, run: "ModelRun", on_line: LineSink | None = None) -> RunResult:
        job_id = os.environ.get("SLURM_JOB_ID")
        if job_id is None:
            raise BackendError("the slurm backend's run stage must execute inside a SLURM job")
        left = job_seconds_left(job_id)
        limit = self.timeout
        walltime_bound = left is not None and left - WALLTIME_MARGIN_SECONDS < limit
        if walltime_bound:
            limit = max(1, left - WALLTIME_MARGIN_SECONDS)
        record_job(run, job_id)
        if on_line is not None:
            on_line(f"running in SLURM job {job_id} on {os.uname().nodename}")
        model = self.resolve_command(run)
        model[0] = resolve_executable(model[0], child_environment(self.env_vars))  # before the launcher hides it
        # rompy's `command` is its job script's own line: run once, the author writes srun/mpiexec
        launched = model if self.command is not None else self.launch_command(model)
        try:
            return execute_process(
                self,
                run,
                launched,
                on_line=on_line,
                timeout=limit,
                details={"slurm_job_id": job_id, "node": os.uname().nodename},
            )
        except RunTimeoutError as err:
            if walltime_bound:
                raise RunTimeoutError(
                    f"the model needs more than the SLURM walltime time_limit={self.time_limit} "
                    f"(job {job_id}); it was stopped {WALLTIME_MARGIN_SECONDS} s before the limit",
                    err.exit_code,
                    err.log_path,
                    err.log_tail,
                ) from None
            raise


def _job_record(run: "ModelRun") -> Path:
    return run.staging_dir / "logs" / "slurm-job"


def record_job(run: "ModelRun", job_id: str) -> None:
    """Note in the run directory which SLURM job runs the model (the flow names it if the job is lost)."""
    write_text(_job_record(run), f"{job_id}\n")


def recorded_job(run: "ModelRun") -> str | None:
    """The SLURM job id `record_job` noted for this run, if any."""
    try:
        text = _job_record(run).read_text().strip()
    except OSError:
        return None
    return text if text.isdigit() else None


def job_state(job_id: str, settle_seconds: float = 10) -> str:
    """`state CANCELLED, reason ...` from scontrol (SLURM keeps ended jobs for MinJobAge seconds).

    Waits up to `settle_seconds` for a job that is still completing to reach its final state.
    """
    deadline = time.monotonic() + settle_seconds
    while True:
        shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
        fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
        if fields.get("JobState") not in _UNSETTLED or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if "JobState" not in fields:
        return "SLURM no longer knows the job's state"
    reason = fields.get("Reason", "None")
    return f"state {fields['JobState']}" + (f", reason {reason}" if reason != "None" else "")


def _dask_memory(value: str) -> str:
    """4G -> 4GB (dask parses bytes; SLURM gets --mem from it)."""
    return value if value.upper().endswith("B") else f"{value}B"


def job_seconds_left(job_id: str) -> int | None:
    """Seconds before this job's walltime, from squeue (None if unknown or unlimited)."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%L"], capture_output=True, text=True).stdout.strip()
    try:
        return walltime_seconds(out) if out else None
    except ValueError:
        try:  # squeue prints MM:SS below an hour
            minutes, seconds = out.split(":")
            return int(minutes) * 60 + int(seconds)
        except ValueError:
            return None
