"""Forcing sources cut to the run period and bounding box: from a real NetCDF file, over HTTP (fsspec)."""

import numpy as np
import pytest
import xarray as xr
from helpers import BBOX

from rompy_tasks.core.errors import StageError
from rompy_tasks.core.time import TimeRange
from rompy_tasks.forcing import ForcingSource, write_forcing


def test_forcing_is_cut_to_the_period_plus_buffer_and_the_bounding_box(tmp_path, january_forcing):
    source = ForcingSource(name="wind", url=str(january_forcing), time_buffer="6h", bbox=BBOX)
    period = TimeRange(start="2026-01-03T12:00", duration="1d")
    path = write_forcing(source, period, tmp_path)
    assert path == tmp_path / "forcing" / "wind.nc"
    cut = xr.open_dataset(path)
    assert cut.time.values[0] == np.datetime64("2026-01-03T06:00") and cut.time.values[-1] == np.datetime64(
        "2026-01-04T18:00"
    )
    assert cut.lon.min() >= -4 and cut.lon.max() <= 64 and cut.lat.min() >= -44 and cut.lat.max() <= 48
    raw = xr.open_dataset(path, decode_times=False)
    assert raw.time.attrs["units"] == "seconds since 2026-01-03T12:00:00"
    assert raw.time.values[0] == -21600.0
    full = xr.open_dataset(january_forcing).sel(time=cut.time, lon=cut.lon, lat=cut.lat)
    np.testing.assert_array_equal(cut.taux.values, full.taux.values)


def test_forcing_that_does_not_cover_the_run_is_a_clear_error(tmp_path, january_forcing):
    source = ForcingSource(name="wind", url=str(january_forcing))
    with pytest.raises(StageError, match="the run needs 2026-01-14T00:00:00 to 2026-01-16T00:00:00"):
        write_forcing(source, TimeRange(start="2026-01-14", duration="2d"), tmp_path)
    with pytest.raises(StageError, match="does not exist"):
        write_forcing(
            ForcingSource(name="w", url=str(tmp_path / "nope.nc")),
            TimeRange(start="2026-01-02", duration="1d"),
            tmp_path,
        )
    outside = ForcingSource(name="w", url=str(january_forcing), bbox={"west": 100, "east": 120, "south": 0, "north": 1})
    with pytest.raises(StageError, match="selects no grid points"):
        write_forcing(outside, TimeRange(start="2026-01-02", duration="1d"), tmp_path)
    assert not (tmp_path / "forcing").exists() or not any((tmp_path / "forcing").iterdir())


def test_forcing_is_read_from_an_fsspec_http_url(tmp_path, january_forcing, http_server):
    www, url, _ = http_server
    (www / january_forcing.name).write_bytes(january_forcing.read_bytes())
    source = ForcingSource(name="remote", url=f"{url}/{january_forcing.name}", variables=["taux"])
    path = write_forcing(source, TimeRange(start="2026-01-05", duration="12h"), tmp_path)
    cut = xr.open_dataset(path)
    assert list(cut.data_vars) == ["taux"] and cut.sizes["time"] == 3
    with pytest.raises(StageError, match="cannot open source"):
        missing = ForcingSource(name="x", url=f"{url}/missing.nc")
        write_forcing(missing, TimeRange(start="2026-01-05", duration="1h"), tmp_path)
