"""The data layer opens sources lazily and combines series of files; postprocessors reduce by dask.

Small files generated here; GB-size data is the benchmark's (bench/data.py).
"""

import importlib.util

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import run_cli
from helpers import shell_doc, write_yaml

from rompy_tasks.core.errors import StageError
from rompy_tasks.core.time import TimeRange
from rompy_tasks.data.sources import combine_along_time, open_source, source_format
from rompy_tasks.data.threads import dask_threads
from rompy_tasks.forcing import ForcingSource, write_forcing
from rompy_tasks.postprocess.analyze import variable_stats
from rompy_tasks.postprocess.ensemble_stats import EnsembleStatsConfig


def wind(start: str, hours: int, step: str = "1h", seed: int = 0) -> xr.Dataset:
    """A small wind field: `hours` steps from `start`, latitude descending as ERA5's."""
    time = pd.date_range(start, periods=hours, freq=step)
    lat, lon = np.arange(10.0, -10.5, -2.5), np.arange(100.0, 130.0, 2.5)
    rng = np.random.default_rng(seed)
    shape = (len(time), len(lat), len(lon))
    data = {name: (("time", "lat", "lon"), rng.normal(size=shape).astype("float32")) for name in ("u10", "v10")}
    return xr.Dataset(data, coords={"time": time, "lat": lat, "lon": lon})


def write_daily(tmp_path, days: list[str]) -> list[str]:
    paths = []
    for day in days:
        path = tmp_path / f"wind-{day}.nc"
        wind(day, 24, seed=len(paths)).to_netcdf(path, encoding={"u10": {"chunksizes": (1, 9, 12)}})
        paths.append(str(path))
    return paths


def test_a_file_opens_lazily_in_chunks_aligned_to_its_own(tmp_path):
    path = tmp_path / "w.nc"
    wind("2026-01-01", 48).to_netcdf(path, encoding={"u10": {"chunksizes": (1, 9, 12)}})
    with open_source(str(path)) as ds:
        assert ds.u10.chunks is not None, "dask-backed: nothing read yet"
        assert all(size % 1 == 0 for size in ds.u10.chunks[0]) and ds.u10.chunks[1] == (9,)
    assert source_format(str(path)) == "netcdf" and source_format("dap4://host/x") == "opendap"
    assert source_format("s3://bucket/era5.zarr") == "zarr" and source_format(str(path), "zarr") == "zarr"


def test_a_glob_of_daily_files_is_one_series_and_the_forcing_cut_spans_files(tmp_path):
    write_daily(tmp_path, ["2026-01-03", "2026-01-01", "2026-01-02"])
    source = ForcingSource(name="w", url=str(tmp_path / "wind-*.nc"), time_buffer="3h", bbox={
        "west": 105, "east": 115, "south": -5, "north": 5})  # fmt: skip
    path = write_forcing(source, TimeRange(start="2026-01-01T20", duration="1d"), tmp_path / "run")
    with xr.open_dataset(path) as cut:
        assert cut.time.values[0] == np.datetime64("2026-01-01T17:00") and cut.sizes["time"] == 31
        expected = xr.concat([xr.open_dataset(p) for p in sorted(tmp_path.glob("wind-*.nc"))], "time")
        expected = expected.sel(time=cut.time, lat=cut.lat, lon=cut.lon)
        np.testing.assert_array_equal(cut.u10.values, expected.u10.values)
        assert cut.lat.values[0] > cut.lat.values[-1], "the source's descending latitude is kept"


def test_files_that_do_not_fit_together_are_named(tmp_path):
    paths = write_daily(tmp_path, ["2026-01-01", "2026-01-03"])
    with pytest.raises(StageError, match="times missing between source files .*wind-2026-01-01.nc"):
        with open_source(paths):
            pass
    overlapping = tmp_path / "overlap.nc"
    wind("2026-01-01T12", 24).to_netcdf(overlapping)
    with pytest.raises(StageError, match="overlap.nc overlap in time"):
        with open_source([paths[0], str(overlapping)]):
            pass
    other = tmp_path / "other.nc"
    wind("2026-01-02", 24).drop_vars("v10").to_netcdf(other)
    with pytest.raises(StageError, match=r"differ in variables \['v10'\]"):
        with open_source([paths[0], str(other)]):
            pass
    with pytest.raises(StageError, match="matches no file"):
        with open_source(str(tmp_path / "none-*.nc")):
            pass


def test_combining_keeps_the_series_lazy(tmp_path):
    paths = write_daily(tmp_path, ["2026-01-01", "2026-01-02"])
    datasets = [xr.open_dataset(p, chunks={}) for p in paths]
    combined = combine_along_time(datasets, paths, "time")
    assert combined.u10.chunks is not None and combined.sizes["time"] == 48


def test_analyze_statistics_are_dask_reductions_equal_to_numpys(tmp_path):
    data = wind("2026-01-01", 6).u10
    data[2, 0, :] = np.nan  # land or fill values are ignored
    with dask_threads() as compute:
        stats = variable_stats(data.chunk({"time": 2}), "time", compute)
    values = data.values.astype("float64")
    assert stats["min"] == pytest.approx(np.nanmin(values)) and stats["max"] == pytest.approx(np.nanmax(values))
    assert stats["mean"] == pytest.approx(np.nanmean(values), rel=1e-12)
    assert stats["series"]["mean"] == pytest.approx(list(np.nanmean(values, axis=(1, 2))), rel=1e-12)


def test_ensemble_stats_mean_spread_quantiles_and_exceedance(tmp_path):
    members = {}
    for i in range(5):
        run = tmp_path / f"m{i}"
        run.mkdir()
        wind("2026-01-01", 4, seed=i).to_netcdf(run / "out.nc")
        members[f"m{i}"] = run
    config = EnsembleStatsConfig(
        file="out.nc", variables=["u10", "v10"], quantiles=[0.1, 0.5, 0.9], thresholds={"u10": [0.0, 1.5]}
    )
    outcome = config.process(members, tmp_path / "stats")
    stacked = np.stack([xr.open_dataset(m / "out.nc").u10.values for m in members.values()])
    with xr.open_dataset(tmp_path / "stats" / "ensemble_stats.nc") as stats:
        assert set(config.outputs()) == set(stats.data_vars)
        np.testing.assert_allclose(stats.u10_mean.values, stacked.mean(0), rtol=1e-6)
        np.testing.assert_allclose(stats.u10_spread.values, stacked.std(0), rtol=1e-5)
        quantiles = np.quantile(stacked, [0.1, 0.5, 0.9], axis=0)
        np.testing.assert_allclose(stats.u10_quantile.values, quantiles, rtol=1e-5)
        assert list(stats["quantile"].values) == [0.1, 0.5, 0.9]
        above = (stacked[None] > np.array([0.0, 1.5])[:, None, None, None, None]).mean(1)
        np.testing.assert_allclose(stats.u10_exceedance.values, above, rtol=1e-6)
        assert stats.u10_exceedance.dims == ("u10_threshold", "time", "lat", "lon")
    assert outcome["success"] and len(outcome["files"]) == 2


def test_ensemble_stats_thresholds_name_chosen_variables():
    with pytest.raises(ValueError, match="not in `variables`"):
        EnsembleStatsConfig(file="out.nc", variables=["u10"], thresholds={"hs": [2.0]})
    with pytest.raises(ValueError, match="from 0 to 1"):
        EnsembleStatsConfig(file="out.nc", variables=["u10"], quantiles=[1.5])


def test_a_remote_netcdf_is_read_by_byte_ranges_never_whole(tmp_path, http_server):
    from services import bytes_served, served_requests

    www, url, log = http_server
    big = wind("2026-01-01", 24 * 8)
    big = big.reindex(lat=np.arange(10.0, -10.01, -0.25), lon=np.arange(100.0, 130.0, 0.25), method="nearest")
    big.to_netcdf(www / "wind.nc", encoding={v: {"chunksizes": (1, 81, 120)} for v in ("u10", "v10")})
    size = (www / "wind.nc").stat().st_size
    source = ForcingSource(name="w", url=f"{url}/wind.nc", variables=["u10"], bbox={
        "west": 110, "east": 112, "south": -1, "north": 1})  # fmt: skip
    path = write_forcing(source, TimeRange(start="2026-01-03", duration="6h"), tmp_path / "run")
    with xr.open_dataset(path) as cut:
        assert cut.sizes["time"] == 7 and list(cut.data_vars) == ["u10"]
    served = bytes_served(log)
    touched = 7 * 81 * 120 * 4  # the chunks of u10 the selection touches: 7 steps
    assert served < size / 4, f"{served} bytes served of a {size}-byte file"
    assert served < 1.2 * touched + 3 * 2**20, f"{served} bytes served for {touched} bytes of chunks touched"
    whole = [request for request in served_requests(log) if request[0] != 206 and request[1] > 0]
    assert not whole, f"ranges only: {whole}"


def _cut_matches(path, source_path) -> None:
    with xr.open_dataset(path) as cut, xr.open_dataset(source_path) as whole:
        expected = whole.sel(time=cut.time, lat=cut.lat, lon=cut.lon)
        np.testing.assert_array_equal(cut.u10.values, expected.u10.values)


def test_a_zarr_store_is_a_source_local_or_on_s3(tmp_path, s3):
    import s3fs

    data = wind("2026-01-01", 48)
    local = tmp_path / "wind.nc"
    data.to_netcdf(local)
    data.chunk({"time": 6}).to_zarr(tmp_path / "wind.zarr", consolidated=True, zarr_format=2)  # as ARCO-ERA5
    period, box = TimeRange(start="2026-01-01T06", duration="12h"), {"west": 105, "east": 115, "south": -5, "north": 5}
    for url in (str(tmp_path / "wind.zarr"), "s3://data/wind.zarr"):
        if url.startswith("s3://"):
            s3fs.S3FileSystem().put(str(tmp_path / "wind.zarr"), "data/wind.zarr", recursive=True)
        path = write_forcing(ForcingSource(name="z", url=url, bbox=box), period, tmp_path / url.split(":")[0])
        _cut_matches(path, local)


def test_a_netcdf_on_s3_is_read_by_ranges(tmp_path, s3):
    import s3fs

    data = wind("2026-01-01", 48)
    data.to_netcdf(tmp_path / "wind.nc", engine="h5netcdf")
    s3fs.S3FileSystem().put(str(tmp_path / "wind.nc"), "data/era5/wind.nc")
    source = ForcingSource(name="s", url="s3://data/era5/*.nc", variables=["u10"])
    _cut_matches(
        write_forcing(source, TimeRange(start="2026-01-01T06", duration="6h"), tmp_path / "run"), tmp_path / "wind.nc"
    )
    with pytest.raises(StageError, match="matches no file"):
        write_forcing(
            ForcingSource(name="s", url="s3://data/none/*.nc"), TimeRange(start="2026-01-01", duration="1h"), tmp_path
        )


def test_an_opendap_url_is_a_source(tmp_path):
    from services import opendap_server

    if importlib.util.find_spec("pydap") is None:
        pytest.skip("pydap is not installed (the dev extra installs it)")
    served = tmp_path / "thredds"
    served.mkdir()
    wind("2026-01-01", 24).to_netcdf(served / "wind.nc")
    with opendap_server(served, tmp_path / "pydap") as url:
        address = url.replace("http://", "dap2://") + "/wind.nc"
        source = ForcingSource(
            name="d", url=address, variables=["u10"], bbox={"west": 105, "east": 115, "south": -5, "north": 5}
        )
        path = write_forcing(source, TimeRange(start="2026-01-01T03", duration="6h"), tmp_path / "run")
    _cut_matches(path, served / "wind.nc")
    assert source_format(address) == "opendap"


def test_dask_work_leaves_no_thread_behind(tmp_path):
    """Dask's default pool keeps non-daemon threads; the CLI joins its threads before it exits, and
    `rompy-tasks run` with forcing hung for ever after its run."""
    import threading

    path = tmp_path / "w.nc"
    wind("2026-01-01", 24).to_netcdf(path)
    with dask_threads() as compute:
        assert variable_stats(xr.open_dataset(path, chunks={"time": 4}).u10, "time", compute)["max"] is not None
    assert not [t for t in threading.enumerate() if t.name.startswith("rompy-tasks-dask")]


def test_member_quantiles_are_numpys_nan_quantiles_vectorised():
    from rompy_tasks.postprocess.ensemble_stats import member_quantiles

    values = np.random.default_rng(3).normal(size=(7, 5, 6))
    values[2, 3, :] = np.nan  # a member without a value here
    values[:, 4, 5] = np.nan  # land: no member has one
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanquantile(values, [0.1, 0.5, 0.9], axis=0)
    np.testing.assert_allclose(member_quantiles(values, [0.1, 0.5, 0.9]), expected, equal_nan=True)


def _claiming_store(path, n_time: int, time_chunk: int, n_lon: int = 1, data_chunks: tuple = (1, 1)) -> None:
    """A Zarr store of a few KB whose metadata claims n_time x n_lon values in chunks of one: no chunk is written."""
    import zarr

    group = zarr.open_group(path, mode="w", zarr_format=2)
    group.create_array("time", shape=(n_time,), chunks=(time_chunk,), dtype="f8", fill_value=-1.0,
                       attributes={"_ARRAY_DIMENSIONS": ["time"], "units": "hours since 2026-01-01"})  # fmt: skip
    group.create_array("lon", shape=(n_lon,), chunks=(n_lon,), dtype="f8", attributes={"_ARRAY_DIMENSIONS": ["lon"]})
    group.create_array("u10", shape=(n_time, n_lon), chunks=data_chunks, dtype="f4",
                       attributes={"_ARRAY_DIMENSIONS": ["time", "lon"]})  # fmt: skip
    if n_time <= 100_000:
        group["time"][:] = np.arange(n_time)  # hours: a cut can select by time
    zarr.consolidate_metadata(path)


@pytest.mark.parametrize(
    ("n_time", "time_chunk", "n_lon", "why"),
    [
        (100_000_000, 1, 1, "'time' (shape (100000000,), chunks (1,)) is a coordinate read whole at open"),
        (20_000_000, 1_000_000, 1, "'time' (shape (20000000,), chunks (1000000,)) is a coordinate read whole"),
        (10_000, 10_000, 10_000, "'u10' (shape (10000, 10000), chunks (1, 1)) has 100,000,000 chunks"),
    ],
)
def test_a_zarr_store_claiming_more_than_can_be_opened_is_refused_before_any_read(
    tmp_path, prefect_api, n_time, time_chunk, n_lon, why
):
    """Issue 36.6: a 36 KB store claiming 1e8 chunks of one value passed validate and took generate to
    4.5 GB RSS. Its metadata is checked first: one clear line, no model run."""
    store = tmp_path / "claims.zarr"
    _claiming_store(store, n_time, time_chunk, n_lon)
    doc = shell_doc(tmp_path, ["true"])
    doc["forcing"] = [{"name": "wind", "url": str(store), "format": "zarr"}]
    ran = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert ran.returncode == 1 and why in ran.stderr, ran.stderr[-3000:]
    assert not (tmp_path / "runs" / "r" / "logs" / "run.log").exists(), "no model ran"


def test_a_selection_larger_than_the_space_left_is_refused_before_it_is_read(tmp_path):
    """Issue 36.6: the cut's size comes from metadata; more than the free space is one clear line."""
    import shutil

    store = tmp_path / "wide.zarr"
    free = shutil.disk_usage(tmp_path).free
    n_lon = int(free / 4 / 10_000) + 10_000  # 10,000 times x n_lon float32: more than the disk holds
    _claiming_store(store, 10_000, 10_000, n_lon, data_chunks=(1, n_lon))
    source = ForcingSource(name="wide", url=str(store), format="zarr")
    with pytest.raises(StageError, match=r"wide.nc: the selection is .* GB, more than the .* GB free"):
        write_forcing(source, TimeRange(start="2026-01-01", duration="9999h"), tmp_path / "run")
