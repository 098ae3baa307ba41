"""A small synthetic wind-stress forcing file, for the demo forecast and the tests.

It looks like an operational atmospheric product cut to a region: 6-hourly `taux`/`tauy`
(N/m^2) on a 2-degree lon/lat grid that is larger than the Veros ACC domain (0..60E,
40S..44N), so a bounding box has something to cut. The zonal stress follows the ACC
setup's analytic westerlies/trades profile, modulated by a travelling 5-day "weather"
wave, so successive forecast cycles see different forcing.
"""

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from rompy_tasks.core.time import as_utc


def synthetic_wind(start: datetime, end: datetime, interval: timedelta = timedelta(hours=6)) -> "object":
    """An xarray Dataset of taux/tauy from `start` to `end` (inclusive) every `interval`."""
    import xarray as xr

    start, end = as_utc(start).replace(tzinfo=None), as_utc(end).replace(tzinfo=None)
    steps = int((end - start) / interval) + 1
    times = np.array([np.datetime64(start + i * interval, "s") for i in range(steps)])
    lon = np.arange(-20.0, 80.0 + 1e-9, 2.0)
    lat = np.arange(-60.0, 60.0 + 1e-9, 2.0)
    hours = (times - np.datetime64("2000-01-01T00:00:00")).astype("timedelta64[s]").astype(float) / 3600.0
    phase = 2 * np.pi * hours / 120.0
    profile = np.where(lat < -20, 0.1 * np.sin(np.pi * (lat + 40.0) / 20.0), 0.0)
    profile = np.where(lat > 10, 0.1 * (1 - np.cos(2 * np.pi * (lat - 10.0) / 34.0)), profile)
    wave = 1.0 + 0.3 * np.sin(phase[:, None, None] - 2 * np.pi * lon[None, None, :] / 60.0)
    taux = profile[None, :, None] * wave
    tauy = 0.02 * np.cos(phase[:, None, None]) * np.cos(np.pi * lat[None, :, None] / 60.0) * np.ones_like(lon)
    attrs = {"units": "N m-2"}
    return xr.Dataset(
        {
            "taux": (("time", "lat", "lon"), taux.astype("f4"), {**attrs, "long_name": "eastward wind stress"}),
            "tauy": (("time", "lat", "lon"), tauy.astype("f4"), {**attrs, "long_name": "northward wind stress"}),
        },
        coords={
            "time": times.astype("datetime64[ns]"),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
        attrs={"title": "rompy-tasks synthetic wind stress", "source": "rompy_tasks.synthetic"},
    )


def write_synthetic_wind(path: Path, start: datetime, end: datetime, interval: timedelta = timedelta(hours=6)) -> Path:
    """Write the synthetic forcing to `path` (NetCDF4); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_wind(start, end, interval).to_netcdf(path, engine="h5netcdf")
    return path
