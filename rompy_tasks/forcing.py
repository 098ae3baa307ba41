"""Forcing data: the part of the generate stage that cuts a run's forcing out of a source.

A source is a NetCDF dataset, local or at any fsspec URL (`https://`, `s3://`, `file://`,
...). For each run the stage selects the run period (plus a buffer either side) and an
optional bounding box, and writes the result into the run directory. Times are written as
"seconds since <run start>", so a model reads its forcing clock relative to its own start
without calendar arithmetic. A source that does not cover the run period is an error.
"""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rompy_tasks.core.errors import StageError
from rompy_tasks.core.secrets import redact_url
from rompy_tasks.core.templates import inside
from rompy_tasks.core.time import Duration, TimeRange

FORCING_DIR = "forcing"


class BoundingBox(BaseModel):
    """Longitudes west..east and latitudes south..north, in the source's coordinates (degrees)."""

    model_config = ConfigDict(extra="forbid")

    west: float = Field(ge=-360, le=360)
    east: float = Field(ge=-360, le=360)
    south: float = Field(ge=-90, le=90)
    north: float = Field(ge=-90, le=90)

    @model_validator(mode="after")
    def _ordered(self) -> "BoundingBox":
        if self.west >= self.east:
            raise ValueError("'west' must be less than 'east'")
        if self.south >= self.north:
            raise ValueError("'south' must be less than 'north'")
        return self


class ForcingSource(BaseModel):
    """One forcing dataset, cut to the run's time window (and area) into `forcing/<name>.nc`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="Output file forcing/<name>.nc")
    url: str = Field(min_length=1, description="NetCDF file: a local path or any fsspec URL")
    variables: list[str] | None = Field(None, description="Variables to keep (default: all)")
    time_buffer: Duration = Field(timedelta(0), description="Extra time kept before the start and after the end")
    bbox: BoundingBox | None = Field(None, description="Area to keep (default: all)")
    time_name: str = "time"
    lon_name: str = "lon"
    lat_name: str = "lat"

    @property
    def output(self) -> str:
        return f"{FORCING_DIR}/{self.name}.nc"


def open_source(url: str) -> Any:
    """Open a NetCDF dataset from a path or an fsspec URL (read into memory: forcing cuts are small)."""
    import xarray as xr

    if "://" not in url or url.startswith("file://"):
        path = Path(url.removeprefix("file://")).expanduser()
        if not path.is_file():
            raise StageError(f"forcing source {url!r} does not exist")
        with xr.open_dataset(path) as ds:
            return ds.load()
    import fsspec

    try:
        with fsspec.open(url, "rb") as handle, xr.open_dataset(handle, engine="h5netcdf") as ds:
            return ds.load()
    except (OSError, ValueError, ImportError) as err:
        shown = redact_url(url)
        raise StageError(f"cannot open forcing source {shown!r}: {str(err).replace(url, shown)}") from None


def _coordinate_slice(values: np.ndarray, low: float, high: float) -> slice:
    """A label slice for `low..high` that works whether the coordinate ascends or descends."""
    return slice(low, high) if values[0] <= values[-1] else slice(high, low)


def cut(source: ForcingSource, ds: Any, period: TimeRange) -> Any:
    """The part of `ds` the run needs: its period plus the buffer, and the bounding box."""
    for name in (source.time_name,) + ((source.lon_name, source.lat_name) if source.bbox else ()):
        if name not in ds.coords:
            raise StageError(f"forcing {source.name!r}: no coordinate {name!r} in {source.url}")
    if source.variables:
        missing = sorted(set(source.variables) - set(ds.data_vars))
        if missing:
            raise StageError(f"forcing {source.name!r}: variables {missing} are not in {source.url}")
        ds = ds[source.variables]
    times = ds[source.time_name].values.astype("datetime64[s]")
    start, end = _naive(period.start), _naive(period.end)
    if times.min() > start or times.max() < end:
        raise StageError(
            f"forcing {source.name!r} covers {times.min()} to {times.max()}, the run needs {start} to {end} "
            f"(source {redact_url(source.url)})"
        )
    window = slice(start - source.time_buffer, end + source.time_buffer)
    ds = ds.sel({source.time_name: window})
    if source.bbox is not None:
        box = source.bbox
        ds = ds.sel(
            {
                source.lon_name: _coordinate_slice(ds[source.lon_name].values, box.west, box.east),
                source.lat_name: _coordinate_slice(ds[source.lat_name].values, box.south, box.north),
            }
        )
        if ds.sizes[source.lon_name] == 0 or ds.sizes[source.lat_name] == 0:
            raise StageError(f"forcing {source.name!r}: the bounding box {box.model_dump()} selects no grid points")
    return ds


def _naive(value: datetime) -> np.datetime64:
    return np.datetime64(value.replace(tzinfo=None), "s")


def write_forcing(source: ForcingSource, period: TimeRange, staging_dir: Path) -> Path:
    """Cut `source` for `period` and write it into the run directory; return the file."""
    target = staging_dir / source.output
    inside(staging_dir, target)
    ds = cut(source, open_source(source.url), period)
    target.parent.mkdir(parents=True, exist_ok=True)
    start = _naive(period.start).astype(datetime).isoformat()
    ds.attrs["rompy_tasks_source"] = redact_url(source.url)
    ds.to_netcdf(
        target, engine="h5netcdf", encoding={source.time_name: {"units": f"seconds since {start}", "dtype": "f8"}}
    )
    return target
