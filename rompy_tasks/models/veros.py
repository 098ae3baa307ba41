"""The Veros ocean model (https://veros.readthedocs.io): the embedded demo model.

`generate` copies a stock Veros setup (as `veros copy-setup` does) and writes a small
wrapper setup next to it that applies the run's diagnostics frequencies. `command` builds
`veros run` with the run length taken from the period, the settings overrides and, for a
hot start, the restart input. The user never writes the command.
"""

import importlib.util
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveFloat, field_validator
from veros.settings import SETTINGS

from rompy_tasks.core.config import BaseModelConfig
from rompy_tasks.core.errors import StageError
from rompy_tasks.core.templates import inside, render_string

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun

SETUP_FILE = "rompy_tasks_setup.py"
RESTART_DIR = "restart"
_TEMPLATE = Path(__file__).with_name("templates") / "veros_setup.py.j2"
Diagnostic = Literal["snapshot", "averages", "energy", "overturning", "tracer_monitor", "cfl_monitor"]


def stock_setups_dir() -> Path:
    """Where Veros keeps its standard setups (found without importing the package)."""
    spec = importlib.util.find_spec("veros")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("veros is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "setups"


def stock_setups() -> list[str]:
    base = stock_setups_dir()
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("_"))


class DiagnosticFrequency(BaseModel):
    """When a Veros diagnostic writes (and, for averaging diagnostics, samples), in seconds."""

    model_config = ConfigDict(extra="forbid")

    output_frequency: float = Field(gt=0)
    sampling_frequency: float | None = Field(None, gt=0)


def _number_is_output_frequency(value: Any) -> Any:
    return {"output_frequency": value} if isinstance(value, int | float) and not isinstance(value, bool) else value


# A diagnostic's frequency: seconds between outputs, or {output_frequency, sampling_frequency}.
# The schema says both forms, because the Prefect API validates deployment parameters with it.
FrequencyInput = Annotated[
    DiagnosticFrequency,
    BeforeValidator(_number_is_output_frequency, json_schema_input_type=PositiveFloat | DiagnosticFrequency),
]


class WindStress(BaseModel):
    """Surface wind stress read from a forcing file in the run directory instead of the setup's own.

    The file is what the forcing stage writes (times in seconds since the run start); the
    fields are interpolated to the model grid in space and linearly in time at every step.
    """

    model_config = ConfigDict(extra="forbid")

    file: str = Field("forcing/wind.nc", pattern=r"^[A-Za-z0-9_./-]+$", description="Path inside the run directory")
    taux: str | None = Field("taux", description="Eastward stress variable (N/m^2)")
    tauy: str | None = Field("tauy", description="Northward stress variable (N/m^2); null keeps the setup's")
    time: str = "time"
    lon: str = "lon"
    lat: str = "lat"

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError("must be a relative path inside the run directory")
        return value


RUN_SETTINGS = frozenset({"runlen", "identifier", "restart_input_filename", "restart_frequency"})  # set from the run
JSON_TYPES = {float: "number", int: "integer", bool: "boolean", str: "string"}


def is_file_name_setting(name: str) -> bool:
    """Veros' file names take absolute paths and are format templates: one would write outside
    the run directory (through a locked deployment's settings override too)."""
    return name.endswith("_filename")


def settable_settings_schema() -> dict[str, Any]:
    """Each Veros setting a config may set, typed and described as Veros defines it, so run forms
    and the schema show `A_h` as a number with Veros' own description rather than as any value."""
    return {
        name: {"title": name, "type": JSON_TYPES[setting.type], "description": setting.description}
        for name, setting in SETTINGS.items()
        if setting.type in JSON_TYPES and name not in RUN_SETTINGS and not is_file_name_setting(name)
    }


class VerosConfig(BaseModelConfig):
    """Run a Veros setup for the model run's period."""

    model_type: Literal["veros"] = "veros"
    setup: str = Field("acc", description="Stock Veros setup to copy (as `veros copy-setup`)")
    identifier: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]+$", description="Prefix of output files; defaults to the setup name"
    )
    settings: dict[str, float | int | bool | str] = Field(
        default_factory=dict,
        description="Veros settings overrides, passed as `-s NAME VALUE`",
        json_schema_extra=lambda schema: schema.update(properties=settable_settings_schema()),
    )
    diagnostics: dict[Diagnostic, FrequencyInput] = Field(
        default_factory=dict, description="Output (and sampling) frequency in seconds per diagnostic"
    )
    wind_stress: WindStress | None = Field(None, description="Wind stress forcing from a file (see `forcing`)")
    restart_input: Path | None = Field(
        None,
        description="Restart file to hot-start from: an absolute path is copied into the run directory's "
        "restart/ folder (so the run directory holds everything the model reads); a relative path is "
        "inside the run directory",
    )
    restart_frequency: float | None = Field(None, gt=0, description="Write a restart every N seconds")
    num_proc: tuple[int, int] = Field(
        (1, 1),
        description="MPI processes in x and y (Veros' -n/--num-proc); their product is the ranks the backend "
        "starts (local and docker: mpiexec, slurm: ntasks)",
    )
    backend: Literal["numpy", "jax"] = "numpy"
    float_type: Literal["float64", "float32"] = "float64"
    loglevel: Literal["trace", "debug", "info", "warning", "error"] = "info"
    executable: str = Field("veros", min_length=1, description="The veros command")

    @field_validator("restart_input")
    @classmethod
    def _restart_stays_inside(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_absolute() and ".." in value.parts:
            raise ValueError("a relative restart_input must stay inside the run directory (no '..')")
        return value

    @field_validator("num_proc")
    @classmethod
    def _positive_ranks(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1 or value[0] * value[1] > 4096:
            raise ValueError("num_proc is two positive numbers of processes (x, y), at most 4096 in all")
        return value

    @field_validator("setup")
    @classmethod
    def _known_setup(cls, value: str) -> str:
        available = stock_setups()
        if value not in available:
            raise ValueError(f"unknown Veros setup {value!r}; available: {', '.join(available)}")
        return value

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(k for k in value if k not in SETTINGS)
        if unknown:
            raise ValueError(f"unknown Veros setting(s): {', '.join(unknown)}")
        clash = sorted(RUN_SETTINGS & value.keys())
        if clash:
            raise ValueError(f"{', '.join(clash)} are set from the run (period, identifier, restart_*)")
        paths = sorted(k for k in value if is_file_name_setting(k))
        if paths:
            raise ValueError(f"{', '.join(paths)}: file names are set by rompy-tasks inside the run directory")
        return value

    @property
    def run_identifier(self) -> str:
        return self.identifier or self.setup

    def generate(self, run: "ModelRun", staging_dir: Path) -> list[Path]:
        source = stock_setups_dir() / self.setup
        written = []
        for item in sorted(source.iterdir()):
            if item.name.startswith("__") or item.is_dir():
                continue
            target = staging_dir / item.name
            shutil.copyfile(item, target)
            written.append(target)
        stock_file = f"{self.setup}.py"
        wrapper = render_string(
            _TEMPLATE.read_text(),
            {
                **self.template_context(run),
                "stock_file": stock_file,
                # Python literals (repr of plain data), never JSON: JSON's null is not Python
                "diagnostics_literal": repr(
                    {k: v.model_dump(mode="json", exclude_none=True) for k, v in self.diagnostics.items()}
                ),
                "wind_stress": bool(self.wind_stress),
                "wind_stress_literal": repr(self.wind_stress.model_dump(mode="json") if self.wind_stress else None),
            },
            where="veros setup template",
        )
        target = staging_dir / SETUP_FILE
        target.write_text(wrapper)
        written.append(target)
        if self.restart_input is not None:
            written += self._stage_restart(staging_dir)
        return written

    @property
    def restart_in_run(self) -> str | None:
        """The restart input as the model sees it, relative to the run directory."""
        if self.restart_input is None:
            return None
        path = self.restart_input.expanduser()
        return f"{RESTART_DIR}/{path.name}" if path.is_absolute() else str(path)

    def _stage_restart(self, staging_dir: Path) -> list[Path]:
        source = self.restart_input.expanduser()
        target = staging_dir / self.restart_in_run
        inside(staging_dir, target)
        if not source.is_absolute():
            if not target.is_file():
                raise StageError(f"restart_input {source} is not in the run directory {staging_dir}")
            return []
        if not source.is_file():
            raise StageError(f"restart_input {source} does not exist")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return [target]

    def run_command(self, run: "ModelRun") -> list[str]:
        argv = [
            self.executable,
            "run",
            SETUP_FILE,
            "--backend",
            self.backend,
            "--float-type",
            self.float_type,
        ]
        argv += ["--loglevel", self.loglevel]
        if self.num_proc != (1, 1):
            argv += ["-n", str(self.num_proc[0]), str(self.num_proc[1])]
        overrides: dict[str, Any] = {"runlen": run.period.seconds, "identifier": self.run_identifier}
        if self.restart_input is not None:
            overrides["restart_input_filename"] = self.restart_in_run
        if self.restart_frequency is not None:
            overrides["restart_frequency"] = self.restart_frequency
        overrides.update(self.settings)
        for name, value in overrides.items():
            argv += ["-s", name, _setting_text(value)]
        return argv

    def restart_fields(self, restart: Path | None, every_seconds: float) -> dict[str, Any]:
        return {"restart_input": str(restart) if restart else None, "restart_frequency": every_seconds}

    def restart_offsets(self, run: "ModelRun") -> dict[float, Path]:
        """Veros names restarts by iteration; the model time inside each file places it in the run."""
        staging = run.staging_dir
        start = restart_model_time(staging / self.restart_in_run) if self.restart_input else 0.0
        return {
            round(restart_model_time(path) - start, 3): path
            for path in sorted(staging.glob(f"{self.run_identifier}_*.restart.h5"))
        }

    def output_patterns(self) -> list[str]:
        return [f"{self.run_identifier}.*.nc", f"{self.run_identifier}_*.restart.h5"]

    def mpi_ranks(self) -> tuple[str, int]:
        return "num_proc", self.num_proc[0] * self.num_proc[1]


def restart_model_time(path: Path) -> float:
    """Model time (seconds since the cold start) stored in a Veros restart file."""
    import h5py

    with h5py.File(path, "r") as restart:
        return float(restart["core"]["time"][()])


def _setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
