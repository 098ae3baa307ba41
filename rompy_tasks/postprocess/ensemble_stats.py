"""`ensemble_stats`: what forecasters publish from an ensemble, as NetCDF plus a plot.

Runs once per ensemble, over the successful members. For each chosen variable of one output:
`<var>_mean` and `<var>_spread` (the members' standard deviation), with `quantiles`
`<var>_quantile` (dimension `quantile`), and with `thresholds` `<var>_exceedance` (dimension
`<var>_threshold`): the fraction of members above each threshold. Every field keeps the
variable's own dimensions; only the member dimension is gone.

The members' files are read lazily, one block of the grid at a time across all members
(a few steps, or part of a step when members are many), and each block's statistics are
written before the next is read: memory is about MEMBERS_BUDGET_BYTES, whatever the member
count or the output size.
"""

import itertools
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rompy_tasks.core.config import RunDirGlob
from rompy_tasks.core.errors import StageError
from rompy_tasks.core.model_run import files_matching
from rompy_tasks.data.sources import open_lazy, open_one_of_many
from rompy_tasks.data.threads import ComputeOptions, dask_threads
from rompy_tasks.postprocess.base import find_time_dim

STATS_DIR = "stats"
MEMBERS_BUDGET_BYTES = 64 * 2**20  # one block across all members (numpy's quantiles take a few times that)


class StatsWorkers(BaseModel):
    """Batch jobs of the ensemble's backend (SLURM) that compute the statistics, sized for the
    reduction rather than the model: blocks of the grid go to them, the results come back to be
    written. They are started for the statistics, also when every member was complete before."""

    model_config = ConfigDict(extra="forbid")

    jobs: int = Field(2, ge=1, le=100, description="Worker jobs at once")
    cores: int = Field(1, ge=1, le=128, description="CPUs of each worker job (its threads)")
    memory: str = Field("2G", pattern=r"^\d+[KMGT]?$", description="Memory of each worker job, such as 4G")
    time_limit: str = Field("01:00:00", description="Walltime of each worker job (HH:MM:SS or D-HH:MM:SS)")


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
    workers: StatsWorkers | None = Field(
        None, description="Compute on batch jobs of the ensemble's (slurm) backend instead of this process"
    )

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

    def process(self, member_dirs: dict[str, Path], out_dir: Path, client: Any = None) -> dict[str, Any]:
        """Combine the members' outputs; blocks are computed on `client` (a Dask client of the
        `workers`' batch jobs) when given, else here."""

        files = {}
        for run_id, staging in member_dirs.items():
            matches = files_matching(staging, [self.file])
            if not matches:
                raise StageError(f"ensemble_stats: member {run_id} has no file matching {self.file!r}")
            files[run_id] = matches[0]
        if not files:
            raise StageError("ensemble_stats: no successful member to combine")
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / self.output
        with ExitStack() as stack:
            members = [stack.enter_context(open_one_of_many(path)) for path in files.values()]
            for path, ds in zip(files.values(), members, strict=True):
                missing = [v for v in self.variables if v not in ds]
                if missing:
                    raise StageError(f"ensemble_stats: {', '.join(missing)} not in {path}")
            paths = [str(path) for path in files.values()]
            self.write_statistics(
                members, target, {"members": ",".join(files), "source_file": self.file}, paths, client
            )
        with dask_threads() as compute, open_lazy(target) as written:
            plot = out_dir / f"{target.stem}.{self.variables[0]}.png"
            _plot_mean_and_spread(written, self.variables[0], plot, compute)
        return {
            "success": True,
            "message": f"{', '.join(self.outputs())} over {len(files)} member(s)"
            + (f", computed on {self.workers.jobs} batch job(s)" if client is not None and self.workers else ""),
            "files": [str(target), str(plot)],
            "markdown": f"Ensemble statistics over {len(files)} members: `{target.name}`, `{plot.name}`.",
        }

    def outputs(self) -> list[str]:
        """The names of the fields written (the reference documents them)."""
        names = [f"{v}_{kind}" for v in self.variables for kind in ("mean", "spread")]
        names += [f"{v}_quantile" for v in self.variables] if self.quantiles else []
        return names + [f"{v}_exceedance" for v in self.thresholds]

    def write_statistics(
        self, members: list[Any], target: Path, attrs: dict[str, str], paths: list[str], client: Any = None
    ) -> None:
        """Stream the statistics into `target`, one block of the grid at a time across all members.

        The members' files are read lazily (xarray's lazy indexing: a block reads only its own
        part of each file); a block holds every member's values of a few steps (or of part of a
        step), about MEMBERS_BUDGET_BYTES in all, so memory does not grow with the output size.
        With a `client`, the workers read and reduce the blocks (a few in flight per worker) and
        this process writes each result as it comes.
        """
        import netCDF4

        first = members[0]
        with netCDF4.Dataset(target, "w") as out:
            out.setncatts(attrs)
            for name in self.variables:
                self._create_fields(out, first, name)
            work = [
                (name, block)
                for name in self.variables
                for block in blocks(first[name].shape, first[name].dtype.itemsize * len(members))
            ]
            if client is None:
                for name, block in work:
                    values = read_block(members, name, block)
                    write_block(out, name, block, block_statistics(values, self.quantiles, self.thresholds.get(name)))
                return
            for name, block, statistics in self._on_workers(client, paths, work):
                write_block(out, name, block, statistics)

    def _on_workers(self, client: Any, paths: list[str], work: list[tuple[str, tuple]]) -> Iterator[tuple]:
        """Each block's statistics from the workers, as they finish; at most two blocks a worker
        job in flight, so the results waiting here stay few."""
        from distributed import as_completed

        pending = iter(work)
        limit = 2 * (self.workers.jobs if self.workers else 1)

        def submit(name: str, block: tuple) -> Any:
            return client.submit(
                statistics_from_files, paths, name, block, self.quantiles, self.thresholds.get(name), pure=False
            )

        running = as_completed([submit(*item) for item in itertools.islice(pending, limit)], with_results=True)
        for _, (name, block, statistics) in running:
            yield name, block, statistics
            if (item := next(pending, None)) is not None:
                running.add(submit(*item))

    def _create_fields(self, out: Any, first: Any, name: str) -> None:
        data = first[name]
        for dim, size in data.sizes.items():
            if dim not in out.dimensions:
                out.createDimension(dim, size)
                if dim in first.coords and first[dim].ndim == 1:
                    coordinate = out.createVariable(dim, first[dim].dtype, (dim,))
                    coordinate[:] = first[dim].values
                    coordinate.setncatts({k: v for k, v in first[dim].attrs.items() if k != "_FillValue"})
        kind_of = value_type(data.dtype)  # the members' float type (a float64 output stays float64)
        fill = {"fill_value": kind_of.type(np.nan)}
        units = {k: v for k, v in data.attrs.items() if k in ("units", "long_name", "standard_name")}
        for kind in ("mean", "spread"):
            out.createVariable(f"{name}_{kind}", kind_of, data.dims, **fill).setncatts(units)
        if self.quantiles:
            if "quantile" not in out.dimensions:
                out.createDimension("quantile", len(self.quantiles))
                out.createVariable("quantile", "f8", ("quantile",))[:] = self.quantiles
            out.createVariable(f"{name}_quantile", kind_of, ("quantile", *data.dims), **fill).setncatts(units)
        if name in self.thresholds:
            levels = f"{name}_threshold"
            out.createDimension(levels, len(self.thresholds[name]))
            out.createVariable(levels, "f8", (levels,))[:] = self.thresholds[name]
            exceedance = out.createVariable(f"{name}_exceedance", "f4", (levels, *data.dims), fill_value=np.nan)
            exceedance.long_name = f"fraction of members with {name} above the threshold"


def read_block(members: list[Any], name: str, block: tuple[slice, ...]) -> np.ndarray:
    """Every member's values of `name` in `block`, stacked along a first (member) axis."""
    kind_of = value_type(members[0][name].dtype)
    return np.stack([member[name].variable[block].values for member in members]).astype(kind_of, copy=False)


def block_statistics(values: np.ndarray, quantiles: list[float], thresholds: list[float] | None) -> dict[str, Any]:
    """Mean, spread, quantiles and exceedance fractions over the members (the first axis)."""
    valid = np.isfinite(values).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points (land) stay NaN
        found: dict[str, Any] = {"mean": np.nanmean(values, axis=0), "spread": np.nanstd(values, axis=0)}
        if quantiles:
            found["quantile"] = member_quantiles(values, quantiles)
        if thresholds:
            found["exceedance"] = np.stack(
                [np.where(valid > 0, (values > level).sum(axis=0) / valid, np.nan) for level in thresholds]
            )
    return found


def statistics_from_files(
    paths: list[str], name: str, block: tuple[slice, ...], quantiles: list[float], thresholds: list[float] | None
) -> tuple[str, tuple[slice, ...], dict[str, Any]]:
    """On a worker: one block's statistics, reading the members' files there (a shared filesystem)."""
    with ExitStack() as stack:
        members = [stack.enter_context(open_one_of_many(Path(path))) for path in paths]
        return name, block, block_statistics(read_block(members, name, block), quantiles, thresholds)


def write_block(out: Any, name: str, block: tuple[slice, ...], statistics: dict[str, Any]) -> None:
    out[f"{name}_mean"][block] = statistics["mean"]
    out[f"{name}_spread"][block] = statistics["spread"]
    if "quantile" in statistics:
        out[f"{name}_quantile"][(slice(None), *block)] = statistics["quantile"]
    if "exceedance" in statistics:
        out[f"{name}_exceedance"][(slice(None), *block)] = statistics["exceedance"]


def member_quantiles(values: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """Quantiles over the first axis (members), ignoring NaN, numpy's linear method, vectorised:
    `np.nanquantile` along an axis loops over every point in Python (minutes for a 1024 x 1024 grid)."""
    if not np.isnan(values).any():
        return np.quantile(values, quantiles, axis=0).astype(values.dtype, copy=False)
    ordered = np.sort(values, axis=0)  # NaN sort last
    valid = np.isfinite(values).sum(axis=0)
    result = []
    for q in quantiles:
        position = q * np.maximum(valid - 1, 0)
        low = np.floor(position).astype(np.intp)
        high = np.minimum(low + 1, np.maximum(valid - 1, 0))
        below = np.take_along_axis(ordered, low[None], axis=0)[0]
        above = np.take_along_axis(ordered, high[None], axis=0)[0]
        result.append(np.where(valid > 0, below + (above - below) * (position - low), np.nan))
    return np.stack(result).astype(values.dtype, copy=False)


def value_type(dtype: Any) -> Any:
    """The float type statistics of `dtype` values are kept in: float64 stays, the rest is float32."""
    return np.dtype("f8") if np.dtype(dtype) == np.dtype("f8") else np.dtype("f4")


def blocks(shape: tuple[int, ...], bytes_per_point: int) -> list[tuple[slice, ...]]:
    """Slices of an array of `shape` whose points, across all members (`bytes_per_point`), fit
    about MEMBERS_BUDGET_BYTES: whole steps of the first dimension, else parts of the second."""
    if not shape:
        return [()]
    step_bytes = bytes_per_point * int(np.prod(shape[1:], dtype=np.int64))
    steps = max(1, MEMBERS_BUDGET_BYTES // max(1, step_bytes))
    if steps > 1 or len(shape) == 1:
        return [(slice(i, min(i + steps, shape[0])),) for i in range(0, shape[0], steps)]
    rows = max(1, shape[1] * MEMBERS_BUDGET_BYTES // step_bytes)
    return [
        (slice(i, i + 1), slice(j, min(j + rows, shape[1]))) for i in range(shape[0]) for j in range(0, shape[1], rows)
    ]


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
