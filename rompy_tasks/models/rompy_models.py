"""rompy's model plugins as our model types (the `rompy-tasks[rompy]` extra).

Every config class rompy registers under its `rompy.config` entry points (`base`, `swan`,
`schism`, ...) becomes a `model_type` of our pipeline files. The class we build inherits
rompy's own, so a file is validated by rompy's fields and validators, with rompy's field
paths. The generate stage is rompy's own `ModelRun.generate()` into our run directory; the
run and postprocess stages are ours (any backend, ensembles, forecasts).

This module imports rompy only through the classes handed to `rompy_model_config`, so the
core install never needs it.
"""

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from pydantic import create_model, field_validator

from rompy_tasks.core.config import BaseModelConfig, home_expanded
from rompy_tasks.core.errors import StageError
from rompy_tasks.core.loader import as_text, given_fields

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun

MODEL_RUN_FILE = "rompy_model_run.json"  # the rompy ModelRun, written by generate, read by rompy_run

_REMOTE_TEMPLATE = ("git@", "gh:", "gl:", "bb:")  # cookiecutter's abbreviations; and any URL


class RompyModelBridge(BaseModelConfig):
    """What a rompy model config needs to be one of ours: generation by rompy, a command for the run stage."""

    rompy_class: ClassVar[Any] = None  # rompy's class, set on each class built by rompy_model_config

    @field_validator("template", check_fields=False)
    @classmethod
    def _local_template_without_hooks(cls, value: Any) -> Any:
        """rompy renders with cookiecutter: a URL would clone into ~/.cookiecutters and a `hooks/`
        directory would run its scripts in the flow's process. Only a local template without hooks."""
        if value is None:
            return value
        text = str(value)
        if "://" in text or text.startswith(_REMOTE_TEMPLATE) or text.endswith(".zip"):
            raise ValueError(f"template {text} is not a local directory; rompy-tasks renders local templates only")
        path = home_expanded(Path(text))
        if not path.is_dir():
            raise ValueError(f"template {text} is not a directory")
        if (path / "hooks").exists():
            raise ValueError(f"template {text} has cookiecutter hooks (scripts run while rendering); not allowed")
        return value

    def rompy_config(self) -> Any:
        """This config as an instance of rompy's own class."""
        given = given_fields(self)  # only what was set, by alias (see given_fields)
        return self.rompy_class.model_validate({**given, "model_type": self.model_type})

    def rompy_model_run(self, run: "ModelRun") -> Any:
        """The rompy ModelRun of `run`: same id, period (naive UTC, as rompy keeps it) and run directory."""
        from rompy.model import ModelRun as RompyModelRun

        period = run.period
        return RompyModelRun(
            run_id=run.run_id,
            period={
                "start": period.start.replace(tzinfo=None),
                "end": period.end.replace(tzinfo=None),
                "interval": period.interval,
            },
            output_dir=run.output_dir.expanduser().absolute(),
            run_id_subdir=run.run_id_subdir,
            config=self.rompy_config(),
        )

    def generate(self, run: "ModelRun", staging_dir: Path) -> list[Path]:
        """rompy's own generation (its template, its `__call__`) into the run directory, in a child process."""
        before = {p for p in staging_dir.rglob("*") if p.is_file()}
        model_run_file = staging_dir / MODEL_RUN_FILE
        # only what was given, by alias: rompy's child validates it again (see given_fields)
        model_run = self.rompy_model_run(run)
        model_run_file.write_text(model_run.model_dump_json(exclude_unset=True, by_alias=True, fallback=as_text))
        done = subprocess.run(  # noqa: S603 - our interpreter and module, no shell
            [sys.executable, "-m", "rompy_tasks.models.rompy_run", "generate", MODEL_RUN_FILE],
            cwd=staging_dir,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StageError(f"rompy's generation of {self.model_type!r} failed: {done.stderr.strip()[-2000:]}")
        return sorted(p for p in staging_dir.rglob("*") if p.is_file() and p not in before)

    def run_command(self, run: "ModelRun") -> list[str]:
        """A rompy config with its own `run(model_run)` runs it in a child process (so a timeout
        or cancellation can kill it); one without needs the backend's command."""
        if problem := self.command_missing():
            raise NotImplementedError(problem)
        return [sys.executable, "-m", "rompy_tasks.models.rompy_run", "run", MODEL_RUN_FILE]

    def command_missing(self) -> str | None:
        if callable(getattr(self.rompy_class, "run", None)):
            return None
        return (
            f"rompy model {self.model_type!r} has no command or run() of its own (rompy's local backend would "
            "run nothing and report success)"
        )


def rompy_model_config(name: str, rompy_class: type) -> type[BaseModelConfig]:
    """Our model config for rompy's `rompy_class`, registered as `model_type: name`.

    The names rompy itself accepts for the class (its `model_type` literals, e.g. rompy-swan's
    `swanconfig` and `SWANCONFIG` for the entry point `swan_components`) are accepted too.
    """
    field = getattr(rompy_class, "model_fields", {}).get("model_type")
    own = [v for v in get_args(field.annotation) if isinstance(v, str)] if field is not None else []
    names = tuple(dict.fromkeys([name, *own]))
    cls = create_model(
        f"Rompy{name.title().replace('_', '')}Config",
        __base__=(RompyModelBridge, rompy_class),
        __doc__=f"rompy's {rompy_class.__module__}.{rompy_class.__qualname__}, generated by rompy",
        model_type=(Literal[names], name),
    )
    cls.rompy_class = rompy_class
    return cls
