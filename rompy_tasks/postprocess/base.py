"""The postprocessor contract and the helpers the built-ins share."""

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from rompy_tasks.core.errors import StageError

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun


class BasePostprocessorConfig(BaseModel):
    """A postprocessor and its options. `process` raises StageError when it fails."""

    model_config = ConfigDict(extra="forbid")

    processor: str

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
