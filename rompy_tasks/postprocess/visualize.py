"""`visualize`: PNG plots of chosen variables (maps of 2-D fields, time series of scalars)."""

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rompy_tasks.core.config import RunDirGlob
from rompy_tasks.core.errors import StageError
from rompy_tasks.core.model_run import files_matching
from rompy_tasks.core.run_files import real_dir, replacing
from rompy_tasks.data.sources import open_lazy
from rompy_tasks.data.threads import ComputeOptions, dask_threads
from rompy_tasks.postprocess.base import BasePostprocessorConfig, find_time_dim

if TYPE_CHECKING:
    import xarray as xr

    from rompy_tasks.core.model_run import ModelRun

PLOT_DIR = "plots"


class PlotSpec(BaseModel):
    """One plot: a variable from the first file matching `file`."""

    model_config = ConfigDict(extra="forbid")

    file: RunDirGlob = Field(description="Glob pattern of the NetCDF file, relative to the run directory")
    variable: str
    kind: Literal["auto", "map", "series"] = "auto"
    level: int = Field(-1, description="Index along a vertical dimension for maps (-1: last, e.g. surface)")
    time: int = Field(-1, description="Time index for maps (-1: last output)")


def _plot(data: "xr.DataArray", spec: PlotSpec, title: str, target: Path, compute: ComputeOptions) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers, workers or CI
    import matplotlib.pyplot as plt

    time_dim = find_time_dim(data.dims)
    if time_dim and data.sizes[time_dim] == 0:
        raise StageError(
            f"visualize: {spec.variable} has no output times in {spec.file} "
            "(is the run shorter than that diagnostic's output frequency?)"
        )
    kind = spec.kind
    if kind == "auto":
        kind = "series" if data.ndim - (1 if time_dim else 0) == 0 or data.ndim == 1 else "map"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if kind == "series":
        if time_dim is None:
            raise StageError(f"visualize: {spec.variable} has no time dimension for a series")
        series = data.mean(dim=[d for d in data.dims if d != time_dim]) if data.ndim > 1 else data
        series.compute(**compute).plot(ax=ax, marker="o")
    else:
        field = data.isel({time_dim: spec.time}) if time_dim else data
        while field.ndim > 2:
            field = field.isel({field.dims[0]: spec.level})
        if field.ndim != 2:
            raise StageError(f"visualize: {spec.variable} is not a 2-D field after selecting time and level")
        field.compute(**compute).plot(ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    with replacing(target, binary=True) as handle:
        fig.savefig(handle, dpi=90, format="png")
    plt.close(fig)


class VisualizeConfig(BasePostprocessorConfig):
    processor: Literal["visualize"] = "visualize"
    plots: list[PlotSpec] = Field(min_length=1, description="The plots to draw")

    def process(self, run: "ModelRun") -> dict[str, Any]:
        staging = run.staging_dir
        out_dir = real_dir(staging / PLOT_DIR)
        written = []
        for spec in self.plots:
            matches = files_matching(staging, [spec.file])
            if not matches:
                raise StageError(f"visualize: no file matching {spec.file!r} in {staging}")
            target = out_dir / f"{matches[0].stem}.{spec.variable}.png"
            with (
                dask_threads() as compute,
                open_lazy(matches[0]) as ds,
            ):  # a map reads its one field, a series its reduction
                if spec.variable not in ds:
                    raise StageError(f"visualize: {spec.variable!r} is not in {matches[0].name}")
                try:
                    title = f"{run.run_id}: {spec.variable} ({matches[0].name})"
                    _plot(ds[spec.variable], spec, title, target, compute)
                except (TypeError, ValueError) as err:  # e.g. all values missing
                    raise StageError(f"visualize: cannot plot {spec.variable} from {matches[0].name}: {err}") from None
            written.append(target)
        lines = [f"# Plots for {run.run_id}", ""] + [f"- `{p.relative_to(staging)}`" for p in written]
        return {
            "success": True,
            "message": f"{len(written)} plot(s) in {out_dir}",
            "files": [str(p) for p in written],
            "markdown": "\n".join(lines),
        }
