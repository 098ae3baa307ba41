"""Forcing data: the part of the generate stage that cuts a run's forcing out of a source.

A source is one NetCDF file, a glob or list of files along time, a Zarr store or an OPeNDAP
URL, local or at any fsspec URL (`https://`, `s3://`, ...), opened lazily by the data layer
(rompy_tasks/data). For each run the stage selects the run period (plus a buffer either side),
the variables and an optional bounding box before anything is read, and streams the cut into
the run directory. Times are written as "seconds since <run start>", so a model reads its
forcing clock relative to its own start without calendar arithmetic. A source that does not
cover the run period is an error naming both ranges.
"""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from rompy_tasks.core.errors import StageError
from rompy_tasks.core.secrets import redact_url
from rompy_tasks.core.templates import inside
from rompy_tasks.core.time import Duration, TimeRange
from rompy_tasks.data.output import write_netcdf
from rompy_tasks.data.selection import (
    BoundingBox,
    naive_utc,
    require_coordinates,
    select_box,
    select_variables,
    time_span,
)
from rompy_tasks.data.sources import SourceFormat, check_source_url, open_source
from rompy_tasks.data.threads import dask_threads

FORCING_DIR = "forcing"
MAX_URLS = 10_000


class ForcingSource(BaseModel):
    """One forcing dataset, cut to the run's time window (and area) into `forcing/<name>.nc`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="Output file forcing/<name>.nc")
    url: StrictStr | list[StrictStr] = Field(  # each checked as a SourceUrl below: one error, not the union's two
        description="The source: a NetCDF file, a glob or list of files along time, a Zarr store or an OPeNDAP "
        "URL (dap2://, dap4://); a local path or any fsspec URL (https://, s3://, ...)"
    )
    format: SourceFormat | None = Field(
        None, description="netcdf, zarr or opendap (default: from the URL: dap2:// or dap4:// OPeNDAP, .zarr Zarr)"
    )
    variables: list[str] | None = Field(None, description="Variables to keep (default: all)")
    time_buffer: Duration = Field(timedelta(0), description="Extra time kept before the start and after the end")
    bbox: BoundingBox | None = Field(None, description="Area to keep (default: all)")
    time_name: str = "time"
    lon_name: str = "lon"
    lat_name: str = "lat"

    @field_validator("url")
    @classmethod
    def _urls_given(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not urls or len(urls) > MAX_URLS or any(not u.strip() for u in urls):
            raise ValueError(f"give one URL or a list of 1 to {MAX_URLS} non-empty URLs")
        for i, url in enumerate(urls):
            try:
                check_source_url(url)
            except ValueError as err:
                raise ValueError(str(err) if isinstance(value, str) else f"url[{i}]: {err}") from None
        return value

    @property
    def output(self) -> str:
        return f"{FORCING_DIR}/{self.name}.nc"

    def write(self, period: TimeRange, staging_dir: Path) -> Path:
        return write_forcing(self, period, staging_dir)

    @property
    def shown_url(self) -> str:
        """The URL(s) for messages and records, credentials hidden."""
        urls = [self.url] if isinstance(self.url, str) else self.url
        return ", ".join(redact_url(u) for u in urls[:3]) + (f", ... ({len(urls)} files)" if len(urls) > 3 else "")


def cut(source: ForcingSource, ds: Any, period: TimeRange) -> Any:
    """The part of `ds` the run needs, still lazy: its period plus the buffer, variables, the box."""
    what = f"forcing {source.name!r}"
    coordinates = (source.time_name,) + ((source.lon_name, source.lat_name) if source.bbox else ())
    require_coordinates(ds, coordinates, what, source.shown_url)
    ds = select_variables(ds, source.variables, what)
    first, last = time_span(ds, source.time_name)
    start, end = naive_utc(period.start), naive_utc(period.end)
    if first > start or last < end:
        raise StageError(f"{what} covers {first} to {last}, the run needs {start} to {end} (source {source.shown_url})")
    ds = ds.sel({source.time_name: slice(start - source.time_buffer, end + source.time_buffer)})
    if source.bbox is not None:
        ds = select_box(ds, source.bbox, source.lon_name, source.lat_name, what)
    return ds


def write_forcing(source: ForcingSource, period: TimeRange, staging_dir: Path) -> Path:
    """Cut `source` for `period` and stream it into the run directory; return the file."""
    target = staging_dir / source.output
    inside(staging_dir, target)
    with dask_threads() as compute, open_source(source.url, source.format, source.time_name) as ds:
        selected = cut(source, ds, period)
        selected.attrs["rompy_tasks_source"] = source.shown_url
        start = naive_utc(period.start).astype(datetime).isoformat()
        encoding = {source.time_name: {"units": f"seconds since {start}", "dtype": "f8"}}
        return write_netcdf(selected, target, compute, encoding)
