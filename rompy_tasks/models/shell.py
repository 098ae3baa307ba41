"""A generic model: templated inputs plus a command (any executable, script or MPI launch).

The command is a Jinja template too (so ensemble members can vary an argument), rendered
in the sandbox and split with shlex; it never goes through a shell.
"""

import shlex
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from rompy_tasks.core.config import RunDirGlob, TemplateConfig
from rompy_tasks.core.errors import ConfigError
from rompy_tasks.core.os_limits import argument_limit_message
from rompy_tasks.core.templates import merged_selections, referenced_fields, render_string

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun


class ShellConfig(TemplateConfig):
    """Render `template` into the run directory and run `command` there."""

    model_type: Literal["shell"] = "shell"
    command: str | list[str] = Field(description="Command to run, a string (split like a shell) or argv list")
    outputs: list[RunDirGlob] = Field(default_factory=lambda: ["*"], description="Glob patterns of the outputs")

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
            raise ValueError("command must not be empty")
        return value

    def check(self, run: "ModelRun") -> None:
        super().check(run)
        if problem := argument_limit_message("an argument of the command", self.run_command(run)):
            raise ConfigError.single("config.config.command", problem)

    def run_command(self, run: "ModelRun") -> list[str]:
        parts = [self.command] if isinstance(self.command, str) else self.command
        reads = merged_selections(referenced_fields(part) for part in parts)  # plain text reads nothing
        context = self.template_context(run, reads) if reads else {}
        if isinstance(self.command, str):
            return shlex.split(render_string(self.command, context, where="config.config.command"))
        return [render_string(arg, context, where="config.config.command") for arg in self.command]

    def output_patterns(self) -> list[str]:
        return self.outputs
