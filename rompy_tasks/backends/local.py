"""The local backend: run the model as a child process on this machine."""

import shlex
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from rompy_tasks.backends.base import BaseBackendConfig, LineSink, RunResult
from rompy_tasks.backends.process import execute_process

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun


class LocalConfig(BaseBackendConfig):
    """Run the model locally, in its own process group, in the run directory."""

    type: Literal["local"] = "local"
    command: str | None = Field(None, description="Command replacing the model's own (optional)")
    shell: bool = Field(False, description="Run `command` through /bin/sh; otherwise it is split with shlex")
    capture_output: bool = Field(True, description="Stream model output to the Prefect log (always to the file)")

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("command must be a non-empty string if provided")
        return value

    def resolve_command(self, run: "ModelRun") -> list[str] | str:
        if self.command is None:
            return run.config.run_command(run)
        return self.command if self.shell else shlex.split(self.command)

    def execute(self, run: "ModelRun", on_line: LineSink | None = None) -> RunResult:
        return execute_process(
            self,
            run,
            self.resolve_command(run),
            on_line=on_line if self.capture_output else None,
            shell=self.shell and self.command is not None,
        )
