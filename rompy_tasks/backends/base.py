"""What every backend shares: the validated base config, the typed run result, the contract.

Validation follows the rompy seed rules: `timeout` 60..86400 s (or a duration), `env_vars`
string to string, `working_dir` must exist when given. A backend config is registered under
the `rompy_tasks.run` entry-point group with its `type` as discriminator.

The contract, in one place (the flows call only these; backends never import Prefect):

- `execute(run, on_line) -> RunResult` (required): run the model for `run` where this
  backend runs it, stream its lines to `on_line`, raise `ModelRunError`/`RunTimeoutError`.
  A backend that starts a local process calls `process.execute_process(self, run, command)`,
  which owns the process tree (cwd, environment, log, timeout, cancellation) for it.
- `preflight()`: before anything is submitted, fail fast if the backend cannot run at all.
- `dask_cluster(api_url, log_directory) -> DaskCluster | None`: where the run stage must
  execute (e.g. SLURM worker jobs); None runs it where the flow runs.
- `shared_settings()`: what every member of an ensemble must share (it shapes the cluster).
- `lost_worker_message(run)`: what to tell the user when its cluster lost the worker.

A complete backend in a dozen lines, `EchoBackendConfig` (runs the model locally behind a
banner line, through `execute_process`), is `tests/plugin_pkg/rt_example_plugin.py`: a
third-party package registering it as `echo` under `rompy_tasks.run`, which the test suite
installs and runs.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from rompy_tasks.core.errors import ModelRunError
from rompy_tasks.core.os_limits import argument_limit_message
from rompy_tasks.core.secrets import SECRET_REF_HELP, SecretRef, resolve_secrets
from rompy_tasks.core.time import seconds_type

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun

LineSink = Callable[[str], None]
# What a process environment can hold as a name (`A=B` or `1X` would fail only when the model starts).
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOG_TAIL_LINES = 30


class RunResult(BaseModel):
    """The outcome of one model execution, whatever the backend."""

    backend: str
    command: list[str] | str
    exit_code: int
    started: datetime
    ended: datetime
    duration_seconds: float
    log_path: Path
    details: dict[str, Any] = Field(default_factory=dict, description="Backend specifics (container id, job id)")


@dataclass(frozen=True)
class DaskCluster:
    """The Dask cluster a backend's run stage needs: a cluster class path and its arguments."""

    cluster_class: str
    cluster_kwargs: dict[str, Any]
    adapt_kwargs: dict[str, Any]
    batch_job_name: str | None = None  # the batch jobs' name: cancelled if the orchestrator dies
    dask_config: dict[str, Any] = field(default_factory=dict)  # set before the scheduler starts


class BaseBackendConfig(BaseModel):
    """Settings common to all backends."""

    model_config = ConfigDict(extra="forbid")
    command_field: ClassVar[str | None] = None  # the field that can replace a model's command, if any

    type: str
    timeout: seconds_type(60, 86400, whole=True) = Field(  # type: ignore[valid-type]
        3600, description="Maximum run time in seconds (60..86400), or a duration such as 2h"
    )
    env_vars: dict[StrictStr, StrictStr] = Field(
        default_factory=dict, description="Extra environment variables for the model (strings only)"
    )
    secret_env: dict[StrictStr, SecretRef] = Field(
        default_factory=dict,
        description="Environment variables whose values are secrets, by reference: " + SECRET_REF_HELP,
    )
    working_dir: Path | None = Field(None, description="Directory to run in instead of the run directory")

    @field_validator("env_vars", "secret_env")
    @classmethod
    def _env_names_valid(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"not environment variable names (letters, digits, _; not first a digit): {bad}")
        if problem := argument_limit_message("a variable", (f"{k}={v}" for k, v in value.items())):
            raise ValueError(problem)
        return value

    @field_validator("working_dir")
    @classmethod
    def _working_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_dir():
            raise ValueError(f"working_dir {value} does not exist or is not a directory")
        return value

    def model_environment(self) -> dict[str, str]:
        """The model's extra environment: `env_vars` plus `secret_env` resolved now, at model start."""
        return {**self.env_vars, **resolve_secrets(self.secret_env, "backend.secret_env")}

    def model_ranks(self) -> int | None:
        """The MPI ranks this backend starts the model with (a model's decomposition must match);
        None when a command of the backend's own starts it as its author wrote."""
        return 1

    def preflight(self) -> None:
        """Check, before anything is submitted, that this backend can run at all (BackendError)."""

    def execute(self, run: "ModelRun", on_line: LineSink | None = None) -> RunResult:
        """Run the model for `run`; return the result or raise ModelRunError."""
        raise NotImplementedError(f"backend {self.type!r} does not implement execute()")

    def dask_cluster(self, api_url: str, log_directory: Path) -> DaskCluster | None:
        """The Dask cluster the run stage must execute on (None: where the flow runs).

        `api_url` is the Prefect API the workers report to; worker logs go to `log_directory`.
        """
        return None

    def reduction_cluster(
        self, api_url: str, log_directory: Path, jobs: int, cores: int, memory: str, walltime: str
    ) -> DaskCluster | None:
        """Batch jobs sized for a data reduction (ensemble statistics), not for the model; None
        when this backend has no batch jobs."""
        return None

    def lost_worker_message(self, run: "ModelRun") -> str:
        """Why the worker running `run`'s model vanished (its cluster lost it), for the error."""
        return "the Dask worker running the model was lost"

    def queue_note(self, batch_job_name: str) -> str | None:
        """What a run waits for while its batch jobs `batch_job_name` are queued (None: they run)."""
        return None

    def shared_settings(self) -> dict[str, Any]:
        """Settings that every member of an ensemble must share (they shape its one cluster)."""
        return {"type": self.type}

    def cwd_for(self, run: "ModelRun") -> Path:
        return self.working_dir.expanduser().absolute() if self.working_dir else run.staging_dir


def stage_log_path(staging_dir: Path, stage: str) -> Path:
    """Where a stage's log lives: `<staging>/logs/<stage>.log`."""
    return staging_dir / "logs" / f"{stage}.log"


def tail_lines(path: Path, count: int = LOG_TAIL_LINES) -> list[str]:
    """The last `count` lines of a log file (empty if it does not exist)."""
    from collections import deque

    try:
        with open(path, errors="replace") as handle:
            return [line.rstrip("\n") for line in deque(handle, maxlen=count)]
    except FileNotFoundError:
        return []


def raise_for_exit(result: RunResult, timed_out: bool = False, timeout: float | None = None) -> RunResult:
    """Raise the typed error for a failed run (carrying the log tail); return the result otherwise."""
    from rompy_tasks.core.errors import RunTimeoutError

    tail = tail_lines(result.log_path)
    if timed_out:
        raise RunTimeoutError(
            f"model timed out after {timeout} s; its process tree was killed",
            result.exit_code,
            str(result.log_path),
            tail,
        )
    if result.exit_code != 0:
        raise ModelRunError(
            f"model exited with code {result.exit_code} ({result.backend} backend)",
            result.exit_code,
            str(result.log_path),
            tail,
        )
    return result
