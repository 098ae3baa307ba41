"""Base classes for model configurations (the `config:` of a model run).

A model config knows how to write its inputs into the staging directory and which command
runs the model there. Concrete models (veros, shell, third-party) subclass these and are
registered under the `rompy_tasks.config` entry-point group; the discriminator is
`model_type`.
"""

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from rompy_tasks.core.templates import Selection, plan_tree, render_tree
from rompy_tasks.core.time import TimeRange


class ModelRunView(Protocol):
    """What a model config sees of its run: `rompy_tasks.core.model_run.ModelRun`, which holds
    the config. Named here as an interface, so the config and the run do not import each other."""

    run_id: str
    period: TimeRange
    output_dir: Path
    run_id_subdir: bool

    @property
    def staging_dir(self) -> Path: ...

    def model_dump(self, **kwargs: Any) -> dict[str, Any]: ...


def _inside_run_dir(pattern: str) -> str:
    if pattern.startswith(("/", "~")) or ".." in Path(pattern).parts:
        raise ValueError(f"{pattern!r} must be a pattern inside the run directory (relative, without '..')")
    return pattern


RunDirGlob = Annotated[str, AfterValidator(_inside_run_dir)]
"""A glob pattern relative to the run directory that cannot name anything outside it."""

_PLAIN = (str, int, float, bool, type(None), datetime, date, timedelta)


_PLAIN_TYPES = frozenset(_PLAIN)
ALL_FIELDS: Mapping[str, Selection] = {"runtime": True, "config": True}


def plain_data(value: Any) -> Any:
    """`value` as template-safe data: mappings, lists and immutable values; anything else as a string."""
    if type(value) in _PLAIN_TYPES:  # most values: one set lookup (a template context per member adds up)
        return value
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain_data(v) for v in value]
    return value if isinstance(value, _PLAIN) else str(value)


class BaseModelConfig(BaseModel):
    """What every model config provides: inputs (`generate`) and the model command."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_type: str

    def check(self, run: ModelRunView) -> None:
        """Catch errors that need the whole run (templates, commands) without writing anything."""

    def generate(self, run: ModelRunView, staging_dir: Path) -> list[Path]:
        """Write the model's inputs into `staging_dir`; return the files written."""
        return []

    def run_command(self, run: ModelRunView) -> list[str]:
        """The argv that runs the model inside the staging directory."""
        raise NotImplementedError(f"model {self.model_type!r} does not define a command")

    def command_missing(self) -> str | None:
        """Why this model has no command of its own (the backend must give one), or None.

        Answered without rendering the command: validation asks it of every ensemble member.
        """
        if type(self).run_command is BaseModelConfig.run_command:
            return f"model {self.model_type!r} does not define a command"
        return None

    def output_patterns(self) -> list[str]:
        """Glob patterns (relative to the staging dir) that the model's outputs match."""
        return ["*"]

    def mpi_ranks(self) -> tuple[str, int] | None:
        """The MPI ranks this config decomposes the model into, and the field that says so; None
        if the model does not say (a shell command): the backend must start that many."""
        return None

    def restart_fields(self, restart: Path | None, every_seconds: float) -> dict[str, Any]:
        """Config fields that start the model from `restart` (None: a cold start) and make it
        write a restart every `every_seconds` of model time. Forecast cycles need this."""
        raise NotImplementedError(f"model {self.model_type!r} does not support hot starts")

    def restart_offsets(self, run: ModelRunView) -> dict[float, Path]:
        """The restart files a finished run wrote, by seconds after the run's start."""
        raise NotImplementedError(f"model {self.model_type!r} does not support hot starts")

    def template_context(self, run: ModelRunView, reads: Mapping[str, Selection] = ALL_FIELDS) -> dict[str, Any]:
        """The Jinja context: `runtime` is the model run, `config` this config, as plain data.

        Plain values only (strings, numbers, datetimes, lists, mappings; paths as strings), never
        the live objects: their methods could read, write or delete files (`Path.read_text`,
        `model_copy(...).prepare_staging()`), even while a file is only being validated. Only what
        a template `reads` (templates.referenced_fields) is dumped: an ensemble validates a
        templated command per member.
        """
        context: dict[str, Any] = {}
        if runtime := reads.get("runtime"):
            context["runtime"] = plain_data(run.model_dump(include=None if runtime is True else runtime))
            if runtime is True or "staging_dir" in runtime:
                context["runtime"]["staging_dir"] = str(run.staging_dir)
        if config := reads.get("config"):
            context["config"] = plain_data(self.model_dump(include=None if config is True else config))
        return context


def home_expanded(path: Path) -> Path:
    """`path` with `~` expanded; ValueError (invalid input, not a crash) for an unknown `~user`."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ValueError(f"{path}: no such user's home directory") from None


class TemplateConfig(BaseModelConfig):
    """A model whose inputs are a directory of Jinja2 templates rendered into the staging dir."""

    template: Path | None = Field(None, description="Directory of templates rendered into the staging dir")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Free values for the templates")

    @field_validator("template")
    @classmethod
    def _template_is_a_directory(cls, value: Path | None) -> Path | None:
        if value is not None and not home_expanded(value).is_dir():
            raise ValueError(f"template {value} is not a directory")
        return value

    def check(self, run: ModelRunView) -> None:
        super().check(run)
        if self.template is not None:
            plan_tree(self.template, run.staging_dir, self.template_context(run))

    def generate(self, run: ModelRunView, staging_dir: Path) -> list[Path]:
        if self.template is None:
            return []
        return render_tree(self.template, staging_dir, self.template_context(run))
