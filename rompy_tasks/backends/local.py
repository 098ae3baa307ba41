"""The local backend: run the model as a child process on this machine."""

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from rompy_tasks.backends.base import BaseBackendConfig, LineSink, RunResult
from rompy_tasks.backends.command import CommandOverride
from rompy_tasks.backends.process import (
    child_environment,
    execute_process,
    mpi_environment,
    mpi_launch,
    resolve_executable,
)

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun


class LocalConfig(CommandOverride, BaseBackendConfig):
    """Run the model locally, in its own process group, in the run directory."""

    type: Literal["local"] = "local"
    capture_output: bool = Field(True, description="Stream model output to the Prefect log (always to the file)")
    mpiexec: str | None = Field(
        None, min_length=1, description="MPI launcher (e.g. mpiexec): runs `mpiexec -n <ntasks> <command>`"
    )
    ntasks: int = Field(1, ge=1, le=4096, description="MPI ranks started by `mpiexec` (1..4096)")

    @model_validator(mode="after")
    def _ranks_need_a_launcher(self) -> "LocalConfig":
        if self.ntasks > 1 and self.mpiexec is None:
            raise ValueError("ntasks above 1 needs mpiexec (the MPI launcher), e.g. mpiexec: mpiexec")
        return self

    def model_ranks(self) -> int | None:
        if self.command is not None:
            return None
        return self.ntasks if self.mpiexec else 1

    def model_environment(self) -> dict[str, str]:
        return {**(mpi_environment() if self.mpiexec else {}), **super().model_environment()}

    def execute(self, run: "ModelRun", on_line: LineSink | None = None) -> RunResult:
        command = self.resolve_command(run)
        if self.mpiexec and self.command is None:  # a command of the backend's own starts as written
            # found before the launcher hides it
            command[0] = resolve_executable(command[0], child_environment(self.env_vars))
            command = mpi_launch(self.mpiexec, self.ntasks, command)
        return execute_process(self, run, command, on_line=on_line if self.capture_output else None)
