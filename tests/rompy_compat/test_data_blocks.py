"""rompy's data blocks in a pipeline's `data:` section (issue 25.3), compared with rompy's own.

The same block is written by `rompy-tasks run` (a fresh process) and by rompy 0.6.4's
`DataGrid.get`/`DataPoint.get` in `.venv-rompy` (its grid a RegularGrid with the same box); the
files must hold the same variables, coordinates and values.
"""

import json
import subprocess
import textwrap
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import REPO, run_cli
from helpers import shell_doc, write_yaml

ROMPY_PYTHON = REPO / ".venv-rompy" / "bin" / "python"
START, HOURS = datetime(2026, 1, 1), 6
needs_rompy = pytest.mark.skipif(not ROMPY_PYTHON.exists(), reason="scripts/setup-rompy makes .venv-rompy")


def era5_like(path: Path) -> Path:
    """Hourly u10/v10 on a 1-degree global grid, latitude descending as ERA5's."""
    times = pd.date_range("2025-12-31", periods=72, freq="h")
    lat, lon = np.arange(90.0, -91.0, -1.0), np.arange(0.0, 360.0, 1.0)
    rng = np.random.default_rng(1)
    shape = (times.size, lat.size, lon.size)
    ds = xr.Dataset(
        {"u10": (("time", "latitude", "longitude"), rng.random(shape, dtype="float32")),
         "v10": (("time", "latitude", "longitude"), rng.random(shape, dtype="float32")),
         "sp": (("time", "latitude", "longitude"), rng.random(shape, dtype="float32"))},
        coords={"time": times, "latitude": lat, "longitude": lon},
    )  # fmt: skip
    ds.to_netcdf(path)
    return path


def tide_gauge(path: Path) -> Path:
    times = pd.date_range("2025-12-31", periods=96, freq="30min")
    frame = pd.DataFrame({"time": times, "elev": np.sin(np.arange(96) / 5.0), "temp": np.arange(96) / 10.0})
    frame.to_csv(path, index=False)
    return path


def ours(tmp_path: Path, blocks: list[dict]) -> Path:
    doc = shell_doc(tmp_path, ["true"], run_id="blocks")
    doc["config"]["period"] = {"start": START.isoformat(), "duration": f"{HOURS}h"}
    doc["data"] = blocks
    result = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "runs" / "blocks"


def rompys(tmp_path: Path, block: dict, kind: str, bbox: dict | None = None) -> Path:
    """rompy's own block, written by rompy 0.6.4 in a fresh process."""
    out = tmp_path / "rompy-out"
    out.mkdir(exist_ok=True)
    grid = (
        f"RegularGrid(x0={bbox['west']}, y0={bbox['south']}, dx={bbox['east'] - bbox['west']}, "
        f"dy={bbox['north'] - bbox['south']}, nx=2, ny=2, rot=0)"
        if bbox
        else "None"
    )
    script = textwrap.dedent(f"""
        import json
        from datetime import datetime, timedelta
        from rompy.core.data import DataGrid, DataPoint
        from rompy.core.grid import RegularGrid
        from rompy.core.time import TimeRange
        block = {kind}.model_validate(json.loads({json.dumps(json.dumps(block))}))
        period = TimeRange(start=datetime.fromisoformat("{START.isoformat()}"),
                           end=datetime.fromisoformat("{START.isoformat()}") + timedelta(hours={HOURS}))
        print(block.get("{out}", grid={grid}, time=period))
    """)
    result = subprocess.run([str(ROMPY_PYTHON), "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def assert_same_data(a: Path, b: Path) -> None:
    with xr.open_dataset(a) as left, xr.open_dataset(b) as right:
        assert sorted(left.data_vars) == sorted(right.data_vars)
        for name in [*left.data_vars, *left.coords]:
            np.testing.assert_array_equal(left[name].values, right[name].values, err_msg=name)
        assert left.sizes == right.sizes


@needs_rompy
def test_a_data_grid_is_cut_sorted_and_buffered_as_rompy_cuts_it(tmp_path):
    source = era5_like(tmp_path / "era5.nc")
    bbox = {"west": 110.0, "east": 160.0, "south": -45.0, "north": -10.0}
    block = {
        "id": "wind",
        "source": {"model_type": "file", "uri": str(source)},
        "variables": ["u10", "v10"],
        "filter": {"sort": {"coords": ["latitude"]}, "rename": {"u10": "uwnd"}},
        "buffer": 2.0,
        "time_buffer": [1, 2],
    }
    run_dir = ours(tmp_path, [{**block, "model_type": "grid", "bbox": bbox}])
    theirs = rompys(tmp_path, {**block, "model_type": "grid"}, "DataGrid", bbox)
    assert_same_data(run_dir / "wind.nc", theirs)
    with xr.open_dataset(run_dir / "wind.nc") as ds:
        assert ds.sizes == {"time": HOURS + 1 + 3, "latitude": 40, "longitude": 55} and "uwnd" in ds
    manifest = json.loads((run_dir / "rompy_tasks_run.json").read_text())
    assert manifest["pipeline"]["data"][0]["id"] == "wind"


@needs_rompy
def test_a_data_point_from_csv_and_a_grid_from_an_intake_catalog_match_rompys(tmp_path):
    gauge = tide_gauge(tmp_path / "gauge.csv")
    point = {"id": "gauge", "source": {"model_type": "csv", "filename": str(gauge)}, "time_buffer": [2, 0]}
    era5 = era5_like(tmp_path / "era5.nc")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(  # intake-xarray 2 reads "netcdf" as NetCDF3 unless told the engine
        "sources:\n  era5:\n    driver: netcdf\n    args:\n      urlpath: '{{ CATALOG_DIR }}/era5.nc'\n"
        "      xarray_kwargs: {engine: h5netcdf}\n"
    )
    grid = {
        "id": "era5",
        "source": {"model_type": "intake", "dataset_id": "era5", "catalog_uri": str(catalog)},
        "variables": ["sp"],
        "filter": {"sort": {"coords": ["latitude"]}},
        "crop_data": True,
    }
    bbox = {"west": 0.0, "east": 20.0, "south": 0.0, "north": 10.0}
    run_dir = ours(tmp_path, [{**point, "model_type": "point"}, {**grid, "model_type": "grid", "bbox": bbox}])
    assert_same_data(run_dir / "gauge.nc", rompys(tmp_path, {**point, "model_type": "point"}, "DataPoint"))
    assert_same_data(run_dir / "era5.nc", rompys(tmp_path, {**grid, "model_type": "grid"}, "DataGrid", bbox))
    assert era5.exists()


@pytest.mark.parametrize(
    ("block", "where", "message"),
    [
        ({"filter": {"derived": {"wspd": "ds.u10 * 2"}}}, "data[0].filter.derived", "eval"),
        ({"filter": {"resample": {"time": "1h"}}}, "data[0].filter.resample", "Extra inputs"),
        (
            {"source": {"model_type": "datamesh", "datasource": "x"}},
            "data[0].source",
            "does not match any of the expected tags: 'file', 'intake'",
        ),
        (
            {
                "source": {
                    "model_type": "intake",
                    "dataset_id": "d",
                    "catalog_yaml": "sources:\n  d:\n    driver: "
                    "intake.source.csv.CSVSource\n    args: {urlpath: x.csv}\n",
                }
            },
            "data[0].source",
            "only intake-xarray's are read",
        ),
        (
            {"source": {"model_type": "intake", "dataset_id": "d", "catalog_yaml": "version: 2\nsources: {}\n"}},
            "data[0].source",
            "version 2 readers can call any Python",
        ),
        ({"id": "../up"}, "data[0].id", "should match pattern"),
        ({"source": {"model_type": "file", "uri": "foo://x/era5.nc"}}, "data[0].source.uri", "unknown URL scheme"),
    ],
)
def test_bad_data_blocks_are_exit_2_naming_the_field(tmp_path, block, where, message):
    base = {"model_type": "grid", "id": "wind", "source": {"model_type": "file", "uri": str(tmp_path / "x.nc")}}
    doc = shell_doc(tmp_path, ["true"])
    doc["data"] = [{**base, **block}]
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{where}: " in result.stderr and message in result.stderr, result.stderr
    assert "rompy extra" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_crop_that_selects_nothing_names_the_coordinate_and_rompys_remedy(tmp_path):
    source = era5_like(tmp_path / "era5.nc")
    block = {"model_type": "grid", "id": "wind", "source": {"model_type": "file", "uri": str(source)},
             "bbox": {"west": 110.0, "east": 160.0, "south": -45.0, "north": -10.0}}  # fmt: skip
    doc = shell_doc(tmp_path, ["true"])
    doc["config"]["period"] = {"start": START.isoformat(), "duration": f"{HOURS}h"}
    doc["data"] = [block]
    result = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 1
    assert "the crop of 'latitude' selects nothing" in result.stderr and "sort" in result.stderr, result.stderr[-2000:]
