"""`ensemble_stats`: member mean and spread of chosen variables, written to NetCDF plus a plot.

Runs once per ensemble, over the successful members: opens the chosen output of each with
xarray, stacks them along a `member` dimension, and writes mean and standard deviation.
"""

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rompy_tasks.core.config import RunDirGlob
from rompy_tasks.core.errors import StageError
from rompy_tasks.core.model_run import files_matching
from rompy_tasks.postprocess.base import find_time_dim

STATS_DIR = "stats"


class EnsembleStatsConfig(BaseModel):
    """Member mean and spread of chosen variables of one NetCDF output."""

    model_config = ConfigDict(extra="forbid")

    processor: Literal["ensemble_stats"] = "ensemble_stats"
    file: RunDirGlob = Field(description="Glob of the member output to combine, e.g. acc.snapshot.nc")
    variables: list[str] = Field(min_length=1)
    output: str = Field("ensemble_stats.nc", pattern=r"^[A-Za-z0-9_.-]+\.nc$")

    def process(self, member_dirs: dict[str, Path], out_dir: Path) -> dict[str, Any]:
        import xarray as xr

        files = {}
        for run_id, staging in member_dirs.items():
            matches = files_matching(staging, [self.file])
            if not matches:
                raise StageError(f"ensemble_stats: member {run_id} has no file matching {self.file!r}")
            files[run_id] = matches[0]
        if not files:
            raise StageError("ensemble_stats: no successful member to combine")
        arrays = []
        for run_id, path in files.items():
            with xr.open_dataset(path, decode_times=False) as ds:
                missing = [v for v in self.variables if v not in ds]
                if missing:
                    raise StageError(f"ensemble_stats: {', '.join(missing)} not in {path}")
                arrays.append(ds[self.variables].load().expand_dims(member=[run_id]))
        stacked = xr.concat(arrays, dim="member")
        stats = xr.merge(
            [
                stacked.mean("member").rename({v: f"{v}_mean" for v in self.variables}),
                stacked.std("member").rename({v: f"{v}_spread" for v in self.variables}),
            ]
        )
        stats.attrs.update(members=",".join(files), source_file=self.file)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / self.output
        stats.to_netcdf(target)
        plot = out_dir / f"{target.stem}.{self.variables[0]}.png"
        _plot_mean_and_spread(stats, self.variables[0], plot)
        return {
            "success": True,
            "message": f"mean and spread of {', '.join(self.variables)} over {len(files)} member(s)",
            "files": [str(target), str(plot)],
            "markdown": f"Ensemble statistics over {len(files)} members: `{target.name}`, `{plot.name}`.",
        }


def _plot_mean_and_spread(stats: Any, variable: str, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, name in zip(axes, (f"{variable}_mean", f"{variable}_spread"), strict=True):
        field = stats[name]
        time_dim = find_time_dim(field.dims)
        if time_dim:
            field = field.isel({time_dim: -1})
        while field.ndim > 2:
            field = field.isel({field.dims[0]: -1})
        field.plot(ax=ax) if field.ndim == 2 else field.plot(ax=ax, marker="o")
        ax.set_title(name)
    fig.tight_layout()
    fig.savefig(target, dpi=80)
    plt.close(fig)
