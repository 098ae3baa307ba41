"""The local backend: run the model as a child process on this machine."""

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from rompy_tasks.backends.base import BaseBackendConfig, LineSink, RunResult
from rompy_tasks.backends.command import CommandOverride
from rompy_tasks.backends.process import execute_process

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun


class LocalConfig(CommandOverride, BaseBackendConfig):
    """Run the model locally, in its own process group, in the run directory."""

    type: Literal["local"] = "local"
    capture_output: bool = Field(True, description="Stream model output to the Prefect log (always to the file)")

    def execute(self, run: "ModelRun", on_line: LineSink | None = None) -> RunResult:
        return execute_process(self, run, self.resolve_command(run), on_line=on_line if self.capture_output else None)
