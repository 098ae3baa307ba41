"""Typed errors shared by every layer.

`ConfigError` is the one error type that loading and validating user input may raise: it
carries every problem with its field path, so the CLI can list them all and exit 2.
`ModelRunError` is raised when a model process fails; it carries the tail of the log so the
failure is readable in the Prefect UI without opening files.
"""

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    """One invalid field: where (dotted path) and what is wrong."""

    loc: str
    msg: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.msg}" if self.loc else self.msg


def _strip_union_tags(loc: tuple, data: object) -> tuple:
    """Drop the segments pydantic inserts for union members (e.g. `backend.local.timeout`).

    Walks the user's input alongside the path: inside a mapping, a segment that is not one of
    its keys and is not the last segment is a union tag, not a field the user wrote.
    """
    kept: list = []
    current = data
    for i, item in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(current, dict) and item in current:
            kept.append(item)
            current = current[item]
        elif isinstance(current, dict) and (not last or item in _tags_of(current)):
            continue  # a tag last: the member's own validator failed (its path is the mapping)
        elif isinstance(current, list) and isinstance(item, int) and 0 <= item < len(current):
            kept.append(item)
            current = current[item]
        else:
            kept.append(item)
            current = None
    return tuple(kept)


def _tags_of(mapping: dict) -> set:
    """The values of the discriminating keys our unions use."""
    return {mapping.get(key) for key in ("model_type", "type", "processor") if isinstance(mapping.get(key), str)}


def _loc_to_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if item == "[key]":  # pydantic's marker for a bad mapping key: the path already names the key
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


class ConfigError(ValueError):
    """Invalid user input (file, YAML, field values). Lists every problem found."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} configuration problem(s){where}:\n{lines}")

    @classmethod
    def single(cls, loc: str, msg: str, source: str | None = None) -> "ConfigError":
        return cls([Problem(loc, msg)], source)

    @classmethod
    def from_validation(
        cls, err: ValidationError, data: object = None, prefix: tuple = (), source: str | None = None
    ) -> "ConfigError":
        """Turn a pydantic error into ours, dropping union tag segments from the paths."""
        problems = []
        for e in err.errors(include_url=False):
            loc = tuple(e["loc"])
            if data is not None:
                loc = _strip_union_tags(loc, data)
            loc = tuple(prefix) + loc
            problems.append(Problem(_loc_to_path(loc), e["msg"] + _missing_model_hint(e)))
        return cls(problems, source)


def _missing_model_hint(error: Any) -> str:
    """For an unknown model's `model_type` in the core install: rompy's models come with the `rompy` extra."""
    if error.get("type") != "union_tag_invalid" or "model_type" not in str(error.get("ctx", {}).get("discriminator")):
        return ""
    if tuple(error.get("loc", ()))[-2:] != ("config", "config"):
        return ""  # a data source's model_type, not a model's
    import importlib.util

    if importlib.util.find_spec("rompy") is not None:
        return ""
    return (
        "; rompy's models (base, swan, schism, xbeach, ...) come with the rompy extra: "
        "pip install 'rompy-tasks[rompy]' and the model's rompy plugin (e.g. rompy-swan)"
    )


class TemplateError(ConfigError):
    """A template failed to render (undefined variable, sandbox violation, path escape)."""


class ModelRunError(RuntimeError):
    """A model process exited non-zero or was killed. Carries the tail of its log."""

    def __init__(self, message: str, exit_code: int | None, log_path: str | None, log_tail: list[str]):
        self.exit_code = exit_code
        self.log_path = log_path
        self.log_tail = log_tail
        tail = "\n".join(log_tail)
        super().__init__(f"{message}\n--- last {len(log_tail)} log line(s) from {log_path} ---\n{tail}")

    def __reduce__(self):
        # Keep the exception picklable (Prefect and Dask ship exceptions between processes).
        return (
            type(self),
            (self.args[0].split("\n--- last")[0], self.exit_code, self.log_path, self.log_tail),
        )


class RunTimeoutError(ModelRunError):
    """The model exceeded its timeout and its whole process tree was killed."""


class StageError(RuntimeError):
    """A pipeline stage cannot proceed (missing inputs or outputs) or a postprocessor failed."""


class BackendError(RuntimeError):
    """The backend cannot run the model at all (engine unreachable, image missing, ...).

    Raised before anything starts, so the message says what to fix.
    """


class EngineUnreachable(BackendError):
    """The engine that runs every model of this backend (e.g. the Docker daemon) is not answering.

    Nothing else can start until it is back, so an ensemble stops starting members at the first.
    """


class WorkerLostError(ModelRunError):
    """The batch job (Dask worker) running the model vanished: cancelled, failed or preempted."""


def field_error(model: str, loc: tuple, problem: str, value: Any) -> ValidationError:
    """A check of the whole model (a model validator) reported at the field it is about, so the
    user's error names `config.output_dir`, not `config`."""
    from pydantic_core import InitErrorDetails, PydanticCustomError

    details = InitErrorDetails(
        type=PydanticCustomError("field", "{problem}", {"problem": problem}), loc=loc, input=value
    )
    return ValidationError.from_exception_data(model, [details])
