"""The model run: what to run (config), when (period), where (output_dir/run_id)."""

import os
import shutil
import time
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    StringConstraints,
    field_validator,
    model_validator,
)

from rompy_tasks.core.config import BaseModelConfig, home_expanded
from rompy_tasks.core.errors import ConfigError, field_error
from rompy_tasks.core.host_paths import run_dir_problem
from rompy_tasks.core.time import TimeRange

# A run id becomes a directory name: no separators, no leading dot, no `..`.
RunId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
    Field(description="Run identifier; letters, digits, '.', '_' and '-', used as a directory name"),
]


RUN_MARKER = ".rompy-tasks-run"  # in every run directory rompy-tasks creates; nothing else is ever deleted


class ModelRun(BaseModel):
    """One model run, as in rompy: the staging directory is `output_dir/run_id`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    run_id: RunId = "run_id"
    period: TimeRange
    output_dir: Path = Field(Path("simulations"), description="Parent directory of the run directory")
    config: SerializeAsAny[BaseModelConfig]
    delete_existing: bool = Field(False, description="Remove an existing run directory before generating")
    run_id_subdir: bool = Field(True, description="Use output_dir/run_id as the run directory")

    @field_validator("output_dir")
    @classmethod
    def _output_dir_usable(cls, value: Path) -> Path:
        """The run directory can be made there: the nearest existing ancestor is a writable directory."""
        if problem := _output_dir_problem(str(home_expanded(value).absolute()), int(time.monotonic())):
            raise ValueError(problem.replace("{value}", str(value)))
        return value

    @model_validator(mode="after")
    def _run_dir_allowed(self) -> "ModelRun":
        """The run directory (output_dir, with run_id unless run_id_subdir is false) is not the
        host's: checked here, at validation, and again before anything is written."""
        if problem := self.run_dir_problem():
            raise field_error(type(self).__name__, ("output_dir",), problem, str(self.output_dir))
        return self

    def run_dir_problem(self) -> str | None:
        """Why this run's directory may not be used (a host path); None if it may."""
        staging = self.staging_dir
        if problem := run_dir_problem(staging):
            return f"the run directory {staging} is refused: {problem}"
        return None

    @property
    def staging_dir(self) -> Path:
        """The run directory: inputs, logs and outputs all live here."""
        base = self.output_dir.expanduser().absolute()
        return base / self.run_id if self.run_id_subdir else base

    @property
    def lock_path(self) -> Path:
        """The run directory's lock, beside it (the directory itself may be deleted and recreated)."""
        staging = self.staging_dir
        return staging.parent / f".{staging.name}.lock"

    def deletion_problem(self) -> str | None:
        """Why `delete_existing` must not remove the existing run directory (None: it may, or nothing exists).

        Only a directory that rompy-tasks created (it holds our marker file) is ever removed: a
        config pointing `delete_existing` at a data directory must not empty it.
        """
        if not self.delete_existing:
            return None
        staging = self.staging_dir
        if not (staging.exists() or staging.is_symlink()):
            return None
        if staging.is_symlink() or not staging.is_dir():
            return f"{staging} is not a directory rompy-tasks created (a link or a file); it is left alone"
        marker = staging / RUN_MARKER
        if marker.is_symlink() or not marker.is_file():
            if not any(staging.iterdir()):
                return None
            return (
                f"{staging} was not created by rompy-tasks (no {RUN_MARKER} file), so delete_existing will not "
                "remove it: remove it yourself or choose another run_id or output_dir"
            )
        return None

    def prepare_staging(self) -> Path:
        """Create the run directory (marked as ours), removing an old one of ours first when `delete_existing`."""
        staging = self.staging_dir
        if problem := self.run_dir_problem():  # a link may have changed where it leads since validation
            raise ConfigError.single("config.output_dir", problem)
        problem = self.deletion_problem()
        if problem:
            raise ConfigError.single("config.delete_existing", problem)
        if self.delete_existing and staging.exists():
            _refuse_dangerous_delete(staging)
            shutil.rmtree(staging)
        created = not staging.exists() or not any(staging.iterdir())
        staging.mkdir(parents=True, exist_ok=True)
        if created:
            (staging / RUN_MARKER).write_text("This run directory was created by rompy-tasks.\n")
        return staging


@lru_cache(maxsize=64)  # per second: an ensemble's members share one output_dir
def _output_dir_problem(path_text: str, second: int) -> str | None:
    path = Path(path_text)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, so no run directory can be made under {{value}}"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable, so no run directory can be made under {{value}}"
    return None


def _refuse_dangerous_delete(path: Path) -> None:
    """Never remove the filesystem root, the home directory or the current directory's ancestors."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    protected = {Path("/"), Path.home().resolve()}
    if resolved in protected or resolved == cwd or resolved in cwd.parents:
        raise ValueError(f"refusing to delete {resolved}: it is not a run directory")


def files_matching(run_dir: Path, patterns: Iterable[str]) -> list[Path]:
    """Regular files in `run_dir` matching the glob `patterns`, sorted.

    Never a symlink and never a path that resolves outside `run_dir` (`../*.dat`, a linked
    directory): the host reads, archives and deletes these files, and a model or a config
    must not be able to point it elsewhere. Never the run directory's marker either.
    """
    root = run_dir.resolve()
    found: set[Path] = set()
    for pattern in patterns:
        for path in run_dir.glob(pattern):
            if path.name == RUN_MARKER or path.is_symlink() or not path.is_file():
                continue
            if root in path.resolve().parents:
                found.add(path)
    return sorted(found)


def output_files(run: "ModelRun", patterns: list[str] | None = None) -> list[Path]:
    """The run's output files: its model's output patterns (or `patterns`) in its run directory."""
    return files_matching(run.staging_dir, patterns or run.config.output_patterns())
