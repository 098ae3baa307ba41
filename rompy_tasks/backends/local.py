"""The local backend: run the model as a child process on this machine."""

import shlex
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, field_validator

from rompy_tasks.backends.base import BaseBackendConfig, LineSink, RunResult
from rompy_tasks.backends.process import execute_process
from rompy_tasks.core.os_limits import argument_limit_message

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun


_SHELL_CHARS = set("|&;<>()$`*?[")


def shell_syntax(command: str) -> str | None:
    """The first character a shell would interpret (outside quotes; `$` and backticks also in
    double quotes), or an unbalanced quote; None when shlex.split gives what a shell would."""
    quote, escaped = "", False
    for index, char in enumerate(command):
        if escaped:
            escaped = False
        elif quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            escaped = True
        elif quote == '"':
            if char in "$`":
                return char
            quote = "" if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char in _SHELL_CHARS or (char == "~" and (index == 0 or command[index - 1].isspace())):
            return char
    return quote or None


class LocalConfig(BaseBackendConfig):
    """Run the model locally, in its own process group, in the run directory."""

    type: Literal["local"] = "local"
    shell: bool = Field(False, description="Run `command` through /bin/sh; otherwise it is split with shlex")
    command: str | None = Field(None, description="Command replacing the model's own (optional)")
    capture_output: bool = Field(True, description="Stream model output to the Prefect log (always to the file)")

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("command must be a non-empty string if provided")
        return value

    @field_validator("command")
    @classmethod
    def _runs_as_written(cls, value: str | None, info: ValidationInfo) -> str | None:
        """rompy runs `command` through a shell; without `shell: true` we split it into arguments.

        Where the two differ (pipes, `&&`, redirections, `$VAR`, globs), the file is refused
        rather than run as something its author did not mean.
        """
        if value is not None and not info.data.get("shell", False):
            syntax = shell_syntax(value)
            if syntax:
                what = f"has an unclosed {syntax} quote" if syntax in "'\"" else f"uses shell syntax ({syntax!r})"
                raise ValueError(
                    f"the command {what}, which is only interpreted with shell: true "
                    "(rompy runs every command through a shell; here it would be split into plain arguments)"
                )
            if problem := argument_limit_message("an argument of the command", shlex.split(value)):
                raise ValueError(problem)
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
