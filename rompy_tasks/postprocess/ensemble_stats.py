"""`ensemble_stats`: what forecasters publish from an ensemble, as NetCDF plus a plot.

Runs once per ensemble, over the successful members. For each chosen variable of one output:
`<var>_mean` and `<var>_spread` (the members' standard deviation), with `quantiles`
`<var>_quantile` (dimension `quantile`), and with `thresholds` `<var>_exceedance` (dimension
`<var>_threshold`): the fraction of members above each threshold. Every field keeps the
variable's own dimensions; only the member dimension is gone.

The members' files are opened lazily and reduced by dask, one block of the grid at a time
across all members: memory is about a chunk times the member count (chunks shrink as members
grow), never the members' whole outputs.
"""

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rompy_tasks.core.config import RunDirGlob
from rompy_tasks.core.errors import StageError
from rompy_tasks.core.model_run import files_matching
from rompy_tasks.data.output import write_netcdf
from rompy_tasks.data.sources import open_lazy
from rompy_tasks.data.threads import ComputeOptions, dask_threads
from rompy_tasks.postprocess.base import find_time_dim

STATS_DIR = "stats"
MEMBERS_BUDGET_BYTES = 512 * 2**20  # one block across all members, in the source's type
MIN_CHUNK_BYTES = 2 * 2**20


class EnsembleStatsConfig(BaseModel):
    """Member mean, spread, quantiles and exceedance probabilities of chosen variables of one NetCDF output."""

    model_config = ConfigDict(extra="forbid")

    processor: Literal["ensemble_stats"] = "ensemble_stats"
    file: RunDirGlob = Field(description="Glob of the member output to combine, e.g. acc.snapshot.nc")
    variables: list[str] = Field(min_length=1)
    quantiles: list[float] = Field(default_factory=list, description="Member quantiles, e.g. [0.1, 0.5, 0.9]")
    thresholds: dict[str, list[float]] = Field(
        default_factory=dict, description="Per variable, thresholds whose exceedance probability is computed"
    )
    output: str = Field("ensemble_stats.nc", pattern=r"^[A-Za-z0-9_.-]+\.nc$")

    @field_validator("quantiles")
    @classmethod
    def _quantiles_in_range(cls, value: list[float]) -> list[float]:
        if any(not 0 <= q <= 1 for q in value) or len(set(value)) != len(value):
            raise ValueError("quantiles are distinct numbers from 0 to 1")
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds_of_chosen_variables(cls, value: dict[str, list[float]], info: Any) -> dict[str, list[float]]:
        unknown = sorted(set(value) - set(info.data.get("variables") or []))
        if unknown:
            raise ValueError(f"thresholds for {unknown}, which are not in `variables`")
        if any(not thresholds for thresholds in value.values()):
            raise ValueError("give at least one threshold per variable")
        return value

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
        chunk_bytes = max(MIN_CHUNK_BYTES, MEMBERS_BUDGET_BYTES // len(files))
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / self.output
        with ExitStack() as stack:
            compute = stack.enter_context(dask_threads())
            arrays = []
            for run_id, path in files.items():
                ds = stack.enter_context(open_lazy(path, chunk_bytes, decode_times=False))
                missing = [v for v in self.variables if v not in ds]
                if missing:
                    raise StageError(f"ensemble_stats: {', '.join(missing)} not in {path}")
                arrays.append(ds[self.variables].expand_dims(member=[run_id]))
            stacked = xr.concat(arrays, dim="member", join="exact", coords="minimal", compat="override")
            stats = self.statistics(stacked)
            stats.attrs.update(members=",".join(files), source_file=self.file)
            write_netcdf(stats, target, compute)
        with dask_threads() as compute, open_lazy(target) as written:
            plot = out_dir / f"{target.stem}.{self.variables[0]}.png"
            _plot_mean_and_spread(written, self.variables[0], plot, compute)
        return {
            "success": True,
            "message": f"{', '.join(self.outputs())} over {len(files)} member(s)",
            "files": [str(target), str(plot)],
            "markdown": f"Ensemble statistics over {len(files)} members: `{target.name}`, `{plot.name}`.",
        }

    def outputs(self) -> list[str]:
        """The names of the fields written (README documents them)."""
        names = [f"{v}_{kind}" for v in self.variables for kind in ("mean", "spread")]
        names += [f"{v}_quantile" for v in self.variables] if self.quantiles else []
        return names + [f"{v}_exceedance" for v in self.thresholds]

    def statistics(self, stacked: Any) -> Any:
        """The lazy statistics of `stacked` (member first): a dask graph, computed when written."""
        import xarray as xr

        fields = {}
        for name in self.variables:
            data = stacked[name]
            fields[f"{name}_mean"] = data.mean("member")
            fields[f"{name}_spread"] = data.std("member")
            if self.quantiles:
                whole = data.chunk({"member": -1})  # quantiles need every member of a point together
                fields[f"{name}_quantile"] = whole.quantile(self.quantiles, dim="member").astype(data.dtype)
            if name in self.thresholds:
                levels = xr.DataArray(self.thresholds[name], dims=f"{name}_threshold")
                above = (data > levels).where(data.notnull())
                exceedance = above.mean("member").astype("float32").transpose(f"{name}_threshold", ...)
                fields[f"{name}_exceedance"] = exceedance
                fields[f"{name}_exceedance"].attrs["long_name"] = f"fraction of members with {name} above the threshold"
        return xr.Dataset(fields)


def _plot_mean_and_spread(stats: Any, variable: str, target: Path, compute: ComputeOptions) -> None:
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
        field = field.compute(**compute)
        field.plot(ax=ax) if field.ndim == 2 else field.plot(ax=ax, marker="o")
        ax.set_title(name)
    fig.tight_layout()
    fig.savefig(target, dpi=80)
    plt.close(fig)
