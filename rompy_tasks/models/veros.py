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
from rompy_tasks.core.templates import render_string

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun

SETUP_FILE = "rompy_tasks_setup.py"
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


class VerosConfig(BaseModelConfig):
    """Run a Veros setup for the model run's period."""

    model_type: Literal["veros"] = "veros"
    setup: str = Field("acc", description="Stock Veros setup to copy (as `veros copy-setup`)")
    identifier: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]+$", description="Prefix of output files; defaults to the setup name"
    )
    settings: dict[str, float | int | bool | str] = Field(
        default_factory=dict, description="Veros settings overrides, passed as `-s NAME VALUE`"
    )
    diagnostics: dict[Diagnostic, FrequencyInput] = Field(
        default_factory=dict, description="Output (and sampling) frequency in seconds per diagnostic"
    )
    restart_input: Path | None = Field(None, description="Restart file to hot-start from")
    restart_frequency: float | None = Field(None, gt=0, description="Write a restart every N seconds")
    backend: Literal["numpy", "jax"] = "numpy"
    float_type: Literal["float64", "float32"] = "float64"
    loglevel: Literal["trace", "debug", "info", "warning", "error"] = "info"
    executable: str = Field("veros", min_length=1, description="The veros command")

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
        reserved = {"runlen", "identifier", "restart_input_filename", "restart_frequency"}
        unknown = sorted(k for k in value if k not in SETTINGS)
        if unknown:
            raise ValueError(f"unknown Veros setting(s): {', '.join(unknown)}")
        clash = sorted(reserved & value.keys())
        if clash:
            raise ValueError(f"{', '.join(clash)} are set from the run (period, identifier, restart_*)")
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
                "runtime": run,
                "config": self,
                "stock_file": stock_file,
                "diagnostics": {k: v.model_dump(exclude_none=True) for k, v in self.diagnostics.items()},
            },
            where="veros setup template",
        )
        target = staging_dir / SETUP_FILE
        target.write_text(wrapper)
        written.append(target)
        return written

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
        overrides: dict[str, Any] = {"runlen": run.period.seconds, "identifier": self.run_identifier}
        if self.restart_input is not None:
            overrides["restart_input_filename"] = str(self.restart_input.expanduser().absolute())
        if self.restart_frequency is not None:
            overrides["restart_frequency"] = self.restart_frequency
        overrides.update(self.settings)
        for name, value in overrides.items():
            argv += ["-s", name, _setting_text(value)]
        return argv

    def output_patterns(self) -> list[str]:
        return [f"{self.run_identifier}.*.nc", f"{self.run_identifier}_*.restart.h5"]


def _setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
