"""Selections made before anything is read: time windows, bounding boxes, variables.

Each works on a lazy dataset (label-based `.sel` on index coordinates, which xarray holds in
memory anyway), so only the chunks a selection touches are read when the result is written.
"""

from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rompy_tasks.core.errors import StageError

if TYPE_CHECKING:
    import xarray as xr


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


def coordinate_slice(values: np.ndarray, low: float, high: float) -> slice:
    """A label slice for `low..high` that works whether the coordinate ascends or descends."""
    return slice(low, high) if values[0] <= values[-1] else slice(high, low)


def naive_utc(value: datetime) -> np.datetime64:
    """A time as numpy's naive datetime64 (seconds), as NetCDF times decode."""
    return np.datetime64(value.replace(tzinfo=None), "s")


def select_variables(ds: "xr.Dataset", variables: list[str] | None, what: str) -> "xr.Dataset":
    """Only `variables` (all when None); a missing one is named."""
    if not variables:
        return ds
    missing = sorted(set(variables) - set(ds.data_vars))
    if missing:
        raise StageError(f"{what}: variables {missing} are not in the source")
    return ds[variables]


def time_span(ds: "xr.Dataset", time_name: str) -> tuple[np.datetime64, np.datetime64]:
    times = ds[time_name].values.astype("datetime64[s]")
    return times.min(), times.max()


def select_box(ds: "xr.Dataset", box: BoundingBox, lon_name: str, lat_name: str, what: str) -> "xr.Dataset":
    """The grid points inside `box`; none is an error."""
    ds = ds.sel(
        {
            lon_name: coordinate_slice(ds[lon_name].values, box.west, box.east),
            lat_name: coordinate_slice(ds[lat_name].values, box.south, box.north),
        }
    )
    if ds.sizes[lon_name] == 0 or ds.sizes[lat_name] == 0:
        raise StageError(f"{what}: the bounding box {box.model_dump()} selects no grid points")
    return ds


def require_coordinates(ds: "xr.Dataset", names: tuple[str, ...], what: str, where: str) -> None:
    for name in names:
        if name not in ds.coords:
            raise StageError(f"{what}: no coordinate {name!r} in {where}")
