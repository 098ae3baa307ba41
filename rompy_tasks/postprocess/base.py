"""The postprocessor contract and the helpers the built-ins share."""

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rompy_tasks.core.config import home_expanded
from rompy_tasks.core.errors import StageError

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun


class BasePostprocessorConfig(BaseModel):
    """A postprocessor and its options. `process` raises StageError when it fails.

    rompy's base fields are accepted with rompy's rules, so a rompy postprocessor file loads:
    `timeout` is enforced (the stage fails when the postprocessor overruns it); `env_vars` and
    `working_dir` are validated but, as in rompy (ModelRun.postprocess strips them before
    `process`), change nothing: our postprocessors run inside the flow's process.
    """

    model_config = ConfigDict(extra="forbid")

    processor: str
    timeout: int | None = Field(
        None, ge=60, le=86400, description="Seconds the postprocessor may take (60 to 86400); none: no limit"
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="Accepted as in rompy, which does not apply them to postprocessors"
    )
    working_dir: Path | None = Field(
        None, description="Accepted as in rompy (an existing directory), which does not apply it to postprocessors"
    )

    @field_validator("env_vars")
    @classmethod
    def _names_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if "" in value:
            raise ValueError("environment variable names cannot be empty")
        return value

    @field_validator("working_dir")
    @classmethod
    def _existing_directory(cls, value: Path | None) -> Path | None:
        if value is not None and not home_expanded(value).is_dir():
            raise ValueError(f"working directory {value} does not exist or is not a directory")
        return value

    def process(self, run: "ModelRun") -> dict[str, Any]:
        raise NotImplementedError


class ExternalPostprocessorConfig(BasePostprocessorConfig):
    """Wraps a third-party class implementing rompy's `process(model_run, **kwargs) -> dict`.

    The options the user writes next to `processor` are passed as keyword arguments.
    """

    model_config = ConfigDict(extra="allow")
    implementation: ClassVar[type | None] = None

    def process(self, run: "ModelRun") -> dict[str, Any]:
        kwargs = dict(self.model_extra or {})
        result = self.implementation().process(run, **kwargs)
        if not isinstance(result, dict):
            raise StageError(f"postprocessor {self.processor!r} returned {type(result).__name__}, not a dict")
        if result.get("success") is False:
            raise StageError(f"postprocessor {self.processor!r} failed: {result.get('error', result)}")
        return result


def find_time_dim(dims: tuple[str, ...]) -> str | None:
    """The time dimension of a variable, by the names models use (time, Time, t)."""
    for dim in dims:
        if dim.lower() in {"time", "t", "times"}:
            return dim
    return None
