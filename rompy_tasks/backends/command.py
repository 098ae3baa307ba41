"""A backend's own `command`, replacing the model's (rompy's local and slurm `command`).

rompy runs that command through a shell. Here it is split into arguments unless `shell: true`;
where the two would differ (pipes, `&&`, redirections, `$VAR`, globs, unclosed quotes) the file
is refused rather than run as something its author did not mean.
"""

import shlex
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from rompy_tasks.core.os_limits import MAX_ARG_BYTES, argument_limit_message

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


class CommandOverride(BaseModel):
    """`command` (optional) replacing the model's own, and `shell` to run it through /bin/sh."""

    command_field: ClassVar[str | None] = "command"

    shell: bool = Field(False, description="Run `command` through /bin/sh; otherwise it is split with shlex")
    command: str | None = Field(None, description="Command replacing the model's own (optional)")

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("command must be a non-empty string if provided")
        if value is not None and len(value.encode()) > MAX_ARG_BYTES:  # before any parsing: shlex is slow
            raise ValueError(f"the command is longer than the {MAX_ARG_BYTES // 1024} KiB the OS allows per string")
        return value

    @field_validator("command")
    @classmethod
    def _runs_as_written(cls, value: str | None, info: ValidationInfo) -> str | None:
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

    def resolve_command(self, run: "ModelRun") -> list[str]:
        """The argv to start: the model's command, or ours (through /bin/sh when `shell`)."""
        if self.command is None:
            return run.config.run_command(run)
        return ["/bin/sh", "-c", self.command] if self.shell else shlex.split(self.command)
