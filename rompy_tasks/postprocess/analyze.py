"""`analyze`: per-variable statistics of the NetCDF outputs, over time.

For every chosen variable with a time dimension: the min, mean and max of each output time
(over all other dimensions) and over the whole run, written to `analysis/summary.json`
and returned as a table for a Prefect table artifact.
"""

import json
import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from rompy_tasks.core.config import RunDirGlob
from rompy_tasks.core.errors import StageError
from rompy_tasks.core.model_run import files_matching
from rompy_tasks.core.run_files import write_text
from rompy_tasks.data.sources import open_lazy
from rompy_tasks.data.threads import ComputeOptions, dask_threads
from rompy_tasks.postprocess.base import BasePostprocessorConfig, find_time_dim

if TYPE_CHECKING:
    import xarray as xr

    from rompy_tasks.core.model_run import ModelRun


def _number(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def variable_stats(data: "xr.DataArray", time_dim: str, compute: ComputeOptions) -> dict[str, Any]:
    """Min/mean/max per time step and overall, ignoring NaN (land, fill values).

    Dask reductions in one pass over the data, a chunk at a time (float64 per chunk, never a
    whole variable); the overall values come from the per-step ones (the mean weighted by
    each step's count of valid values).
    """
    import dask

    other = [d for d in data.dims if d != time_dim]
    values = data.astype("float64")
    if other:
        lazy = (values.min(other, skipna=True), values.mean(other, skipna=True), values.max(other, skipna=True))
        counts = values.count(other)
    else:
        lazy, counts = (values, values, values), values.notnull()
    *per_step, counts = dask.compute(*lazy, counts, **compute)
    mins, means, maxs = per_step
    # from here on only per-step values (one number per output time), already computed
    valid = counts.values > 0
    total = counts.values.sum()
    return {
        "units": str(data.attrs.get("units", "")),
        "dims": list(data.dims),
        "times": [_time_text(t) for t in data[time_dim].values] if time_dim in data.coords else [],
        "min": _number(mins.values[valid].min()) if valid.any() else None,
        "mean": _number((means.values[valid] * counts.values[valid]).sum() / total) if total else None,
        "max": _number(maxs.values[valid].max()) if valid.any() else None,
        "series": {
            k: [_number(x) for x in v.values.ravel()] for k, v in (("min", mins), ("mean", means), ("max", maxs))
        },
    }


def _time_text(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) and not isinstance(value, np.datetime64) else str(value)


class AnalyzeConfig(BasePostprocessorConfig):
    processor: Literal["analyze"] = "analyze"
    files: list[RunDirGlob] = Field(default_factory=lambda: ["*.nc"], description="Glob patterns of NetCDF outputs")
    variables: list[str] | None = Field(None, description="Variables to analyse (default: all with time)")

    def process(self, run: "ModelRun") -> dict[str, Any]:
        staging = run.staging_dir
        paths = files_matching(staging, self.files)
        if not paths:
            raise StageError(f"analyze: no files matching {self.files} in {staging}")
        summary: dict[str, dict[str, Any]] = {}
        rows = []
        for path in paths:
            with dask_threads() as compute, open_lazy(path, decode_times=False) as ds:
                for name, data in ds.data_vars.items():
                    if self.variables is not None and name not in self.variables:
                        continue
                    time_dim = find_time_dim(data.dims)
                    if time_dim is None or data.sizes[time_dim] == 0 or data.dtype.kind not in "fiu":
                        continue
                    stats = variable_stats(data, time_dim, compute)
                    summary.setdefault(path.name, {})[str(name)] = stats
                    rows.append(
                        {
                            "file": path.name,
                            "variable": str(name),
                            "units": stats["units"],
                            "times": data.sizes[time_dim],
                            "min": stats["min"],
                            "mean": stats["mean"],
                            "max": stats["max"],
                        }
                    )
        if self.variables is not None:
            missing = sorted(set(self.variables) - {r["variable"] for r in rows})
            if missing:
                raise StageError(f"analyze: variable(s) {', '.join(missing)} not found with a time dimension")
        out = write_text(staging / "analysis" / "summary.json", json.dumps(summary, indent=2))
        return {
            "success": True,
            "message": f"analysed {len(rows)} variable(s) in {len(paths)} file(s)",
            "summary": str(out),
            "files": [str(out)],
            "table": rows,
        }
