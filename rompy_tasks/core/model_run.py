"""The model run: what to run (config), when (period), where (output_dir/run_id)."""

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, StringConstraints

from rompy_tasks.core.config import BaseModelConfig
from rompy_tasks.core.time import TimeRange

# A run id becomes a directory name: no separators, no leading dot, no `..`.
RunId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
    Field(description="Run identifier; letters, digits, '.', '_' and '-', used as a directory name"),
]


class ModelRun(BaseModel):
    """One model run, as in rompy: the staging directory is `output_dir/run_id`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    run_id: RunId = "run_id"
    period: TimeRange
    output_dir: Path = Field(Path("simulations"), description="Parent directory of the run directory")
    config: SerializeAsAny[BaseModelConfig]
    delete_existing: bool = Field(False, description="Remove an existing run directory before generating")
    run_id_subdir: bool = Field(True, description="Use output_dir/run_id as the run directory")

    @property
    def staging_dir(self) -> Path:
        """The run directory: inputs, logs and outputs all live here."""
        base = self.output_dir.expanduser().absolute()
        return base / self.run_id if self.run_id_subdir else base

    def prepare_staging(self) -> Path:
        """Create the run directory, removing an old one first when `delete_existing`."""
        staging = self.staging_dir
        if self.delete_existing and staging.exists():
            _refuse_dangerous_delete(staging)
            shutil.rmtree(staging)
        staging.mkdir(parents=True, exist_ok=True)
        return staging


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
    must not be able to point it elsewhere.
    """
    root = run_dir.resolve()
    found: set[Path] = set()
    for pattern in patterns:
        for path in run_dir.glob(pattern):
            if not path.is_symlink() and path.is_file() and root in path.resolve().parents:
                found.add(path)
    return sorted(found)


def output_files(run: "ModelRun", patterns: list[str] | None = None) -> list[Path]:
    """The run's output files: its model's output patterns (or `patterns`) in its run directory."""
    return files_matching(run.staging_dir, patterns or run.config.output_patterns())
