"""rompy's data blocks (DataGrid, DataPoint), their sources and filters, on the lazy data layer.

Keys mean what they mean in rompy 0.6.4 (`rompy/core/data.py`, `source.py`, `filters.py`):
`source` by `model_type` (`file`, `intake`, `csv`, `wavespectra` where the library installs),
`variables` selected first, then the `filter`s in rompy's fixed order (sort, subset, crop,
timenorm, rename), `crop_data` adding the run's time window widened by `time_buffer` source
time steps (and, for a grid, the `bbox` widened by `buffer`) to the crop; the block is written
to `<run dir>/<id>.nc`. What differs: sources open lazily and the file is written streaming;
`derived` (rompy evaluates its strings as Python) and intake catalogs that would run code
(non-xarray drivers, version 2 catalogs, environment or shell expansion) are refused; a crop
that selects nothing is an error, not an empty file. Our models have no model grid, so a
DataGrid's area is a `bbox`.
"""

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

from rompy_tasks.core.errors import StageError
from rompy_tasks.core.secrets import redact_url
from rompy_tasks.core.templates import inside
from rompy_tasks.core.time import TimeRange
from rompy_tasks.data.output import write_netcdf
from rompy_tasks.data.selection import BoundingBox, naive_utc, select_variables
from rompy_tasks.data.sources import SourceUrl, open_source
from rompy_tasks.data.threads import dask_threads

if TYPE_CHECKING:
    import xarray as xr

# intake-xarray's drivers: they open files with xarray and run nothing else
INTAKE_DRIVERS = frozenset({"netcdf", "zarr", "opendap", "intake_xarray.netcdf.NetCDFSource",
                            "intake_xarray.xzarr.ZarrSource", "intake_xarray.opendap.OpenDapSource"})  # fmt: skip
MAX_CATALOG_BYTES = 1 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetCoords(_Strict):
    """rompy's coordinate names of a source."""

    t: str | None = Field("time", description="Name of the time coordinate")
    x: str | None = Field("longitude", description="Name of the x coordinate")
    y: str | None = Field("latitude", description="Name of the y coordinate")
    z: str | None = Field(None, description="Name of the z coordinate")
    s: str | None = Field(None, description="Name of the site coordinate")


class Slice(_Strict):
    """rompy's slice: labels of a coordinate, from `start` to `stop` (both included)."""

    start: float | datetime | str | None = None
    stop: float | datetime | str | None = None

    def to_slice(self) -> slice:
        return slice(*(naive_utc(v) if isinstance(v, datetime) else v for v in (self.start, self.stop)))


class SortParams(_Strict):
    coords: list[str] | str = Field(default_factory=list, description="Coordinates to sort ascending")


class SubsetParams(_Strict):
    data_vars: list[str] | None = Field(None, description="Variables to keep")


class TimenormParams(_Strict):
    interval: str = Field("hour", description="Unit of the lead time")
    reftime: str | None = Field(None, description="Variable holding the reference time (default: the first time)")


class Filter(_Strict):
    """rompy's filters, applied in rompy's order: sort, subset, crop, timenorm, rename."""

    sort: SortParams = Field(default_factory=SortParams)
    subset: SubsetParams = Field(default_factory=SubsetParams)
    crop: dict[str, Slice] = Field(default_factory=dict, description="Coordinate -> {start, stop}")
    timenorm: TimenormParams | None = Field(None, description="Time as lead time from a reference time")
    rename: dict[str, str] = Field(default_factory=dict, description="Old name -> new name")
    derived: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timenorm", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == {} else value  # rompy applies a filter only when its parameters are given

    @field_validator("derived")
    @classmethod
    def _no_derived(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            raise ValueError(
                "not supported: rompy evaluates these strings as Python (eval), which a config must not run; "
                "derive variables in the model, a postprocessor or the source"
            )
        return value

    def apply(self, ds: "xr.Dataset", what: str) -> "xr.Dataset":
        coords = [self.sort.coords] if isinstance(self.sort.coords, str) else self.sort.coords
        for name in coords:
            if name in ds:
                ds = ds.sortby(name)
        if self.subset.data_vars is not None:
            ds = select_variables(ds, self.subset.data_vars, what)
        ds = _crop(ds, self.crop, what)
        if self.timenorm is not None:
            ds = _timenorm(ds, self.timenorm)
        return ds.rename(self.rename) if self.rename else ds


def _crop(ds: "xr.Dataset", crop: dict[str, Slice], what: str) -> "xr.Dataset":
    """rompy's crop: a label slice along each dimension, a range (exclusive) on other coordinates."""
    dims = {name: window.to_slice() for name, window in crop.items() if name in ds.sizes}
    ds = ds.sel(dims)
    for name, window in crop.items():
        if name not in ds.sizes and name in ds.coords:
            ds = ds.where((ds[name] > float(window.start)) & (ds[name] < float(window.stop)), drop=True)
    for name in dims:
        if ds.sizes[name] == 0:
            raise StageError(
                f"{what}: the crop of {name!r} selects nothing (a descending coordinate needs "
                f"`filter: {{sort: {{coords: [{name}]}}}}`, as in rompy)"
            )
    return ds


def _timenorm(ds: "xr.Dataset", params: TimenormParams) -> "xr.Dataset":
    """rompy's timenorm: time becomes the lead time (in `interval`s) from a reference time."""
    import pandas as pd

    step = pd.to_timedelta("1 " + params.interval)
    if params.reftime is None:
        ds["init"] = (("time",), [ds["time"].values[0]])
    else:
        ds["init"] = (("time",), pd.to_datetime(ds[params.reftime].values))
    ds["lead"] = ((ds["time"] - ds["init"]) / step).astype("int")
    ds["lead"].attrs["units"] = params.interval
    return ds.set_coords("init").swap_dims({"time": "lead"})


class SourceFile(_Strict):
    """rompy's SourceFile: a dataset xarray opens (NetCDF, local or any fsspec URL), lazily."""

    model_type: Literal["file"] = "file"
    uri: SourceUrl = Field(description="Path or URL of the dataset")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of xarray.open_dataset")
    variable: str | None = Field(None, description="Variable to select from the dataset")

    @property
    def shown(self) -> str:
        return redact_url(self.uri)

    @contextmanager
    def open(self) -> Iterator["xr.Dataset"]:
        with open_source(self.uri, "netcdf", options=self.kwargs) as ds:
            yield ds[[self.variable]] if self.variable else ds


class SourceIntake(_Strict):
    """rompy's SourceIntake: a dataset of an intake catalog (a file or inline YAML)."""

    model_type: Literal["intake"] = "intake"
    dataset_id: str = Field(description="The id of the dataset to read in the catalog")
    catalog_uri: SourceUrl | None = Field(None, description="The URI of the catalog to read from")
    catalog_yaml: StrictStr | None = Field(None, description="The YAML string of the catalog to read from")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="The intake dataset's parameters")

    @model_validator(mode="after")
    def _one_catalog(self) -> "SourceIntake":
        if (self.catalog_uri is None) == (self.catalog_yaml is None):
            raise ValueError("give exactly one of catalog_uri and catalog_yaml")
        if importlib.util.find_spec("intake") is None or importlib.util.find_spec("intake_xarray") is None:
            raise ValueError("intake sources need intake and intake-xarray (pip install 'rompy-tasks[data]')")
        if self.catalog_yaml is not None:
            _check_catalog(self.catalog_yaml, self.dataset_id, "catalog_yaml")
        return self

    @property
    def shown(self) -> str:
        return f"intake {self.dataset_id} in {redact_url(self.catalog_uri) if self.catalog_uri else 'catalog_yaml'}"

    @contextmanager
    def open(self) -> Iterator["xr.Dataset"]:
        from intake.catalog.local import YAMLFileCatalog

        if self.catalog_yaml is not None:
            import fsspec

            fs = fsspec.filesystem("memory")
            fs.pipe("/rompy-tasks-catalog.yaml", self.catalog_yaml.encode())
            catalog = YAMLFileCatalog("/rompy-tasks-catalog.yaml", fs=fs, getenv=False, getshell=False)
        else:
            _check_catalog(_read_catalog(self.catalog_uri), self.dataset_id, f"catalog {self.shown}")
            catalog = YAMLFileCatalog(self.catalog_uri, getenv=False, getshell=False)
        ds = catalog[self.dataset_id](**self.kwargs).to_dask()
        with ds:
            yield ds


def _read_catalog(uri: str) -> str:
    import fsspec

    try:
        with fsspec.open(uri, "rb") as handle:
            text = handle.read(MAX_CATALOG_BYTES + 1)
    except OSError as err:
        raise StageError(f"cannot read the intake catalog {redact_url(uri)}: {err}") from None
    if len(text) > MAX_CATALOG_BYTES:
        raise StageError(f"the intake catalog {redact_url(uri)} is larger than {MAX_CATALOG_BYTES} bytes")
    return text.decode(errors="replace")


def _check_catalog(text: str, dataset_id: str, where: str) -> None:
    """A catalog runs nothing but xarray: version 1, the dataset's driver one of intake-xarray's."""
    try:
        catalog = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{where} is not YAML: {err}") from None
    if not isinstance(catalog, dict) or not isinstance(catalog.get("sources"), dict):
        raise ValueError(f"{where} has no `sources` mapping")
    if str(catalog.get("version", 1)) not in ("1", "1.0"):
        raise ValueError(f"{where}: only version 1 catalogs are read (version 2 readers can call any Python)")
    entry = catalog["sources"].get(dataset_id)
    if not isinstance(entry, dict):
        raise ValueError(f"{where} has no dataset {dataset_id!r}")
    if entry.get("driver") not in INTAKE_DRIVERS:
        raise ValueError(
            f"{where}: dataset {dataset_id!r} uses driver {entry.get('driver')!r}; "
            f"only intake-xarray's are read: {', '.join(sorted(INTAKE_DRIVERS))}"
        )


class SourceTimeseriesCSV(_Strict):
    """rompy's SourceTimeseriesCSV: a time series from a CSV file (columns become variables)."""

    model_type: Literal["csv"] = "csv"
    filename: SourceUrl = Field(description="Path or URL of the CSV file")
    tcol: str = Field("time", description="Name of the column containing the time data")
    read_csv_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of pandas.read_csv")

    @property
    def shown(self) -> str:
        return redact_url(self.filename)

    @contextmanager
    def open(self) -> Iterator["xr.Dataset"]:
        import fsspec
        import pandas as pd
        import xarray as xr

        options = {"parse_dates": [self.tcol], "index_col": self.tcol, **self.read_csv_kwargs}
        try:
            with fsspec.open(self.filename, "rt") as handle:
                frame = pd.read_csv(handle, **options)
        except (OSError, ValueError) as err:
            raise StageError(f"cannot read {self.shown}: {err}") from None
        yield xr.Dataset.from_dataframe(frame).rename({self.tcol: "time"})


class SourceWavespectra(_Strict):
    """rompy's SourceWavespectra: wave spectra through one of wavespectra's readers."""

    model_type: Literal["wavespectra"] = "wavespectra"
    uri: SourceUrl = Field(description="Path or URL of the dataset")
    reader: str = Field(pattern=r"^read_[a-z0-9_]+$", description="The wavespectra reader, e.g. read_swan")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the reader")

    @model_validator(mode="after")
    def _installed(self) -> "SourceWavespectra":
        if importlib.util.find_spec("wavespectra") is None:
            raise ValueError("wavespectra sources need the wavespectra package (pip install wavespectra)")
        return self

    @property
    def shown(self) -> str:
        return redact_url(self.uri)

    @contextmanager
    def open(self) -> Iterator["xr.Dataset"]:
        import wavespectra

        reader = getattr(wavespectra, self.reader, None)
        if reader is None:
            raise StageError(f"wavespectra has no reader {self.reader!r}")
        yield reader(self.uri, **self.kwargs)


GridSource = Annotated[SourceFile | SourceIntake | SourceWavespectra, Field(discriminator="model_type")]
PointSource = Annotated[SourceTimeseriesCSV | SourceFile | SourceIntake, Field(discriminator="model_type")]


class DataPoint(_Strict):
    """rompy's DataPoint: a time series written to `<run dir>/<id>.nc`, cut to the run's period."""

    model_type: Literal["point"] = "point"
    id: str = Field("data", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Output file <id>.nc")
    source: PointSource
    filter: Filter = Field(default_factory=Filter)
    variables: list[str] = Field(default_factory=list, description="Variables to keep (default: all)")
    coords: DatasetCoords = Field(default_factory=DatasetCoords)
    crop_data: bool = Field(True, description="Crop to the run's period (and a grid's bbox)")
    buffer: float = Field(0.0, ge=0, description="Degrees added around the bbox on every side")
    time_buffer: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = Field(
        (0, 0), description="Source time steps added before the start and after the end (rompy's)"
    )

    @property
    def output(self) -> str:
        return f"{self.id}.nc"

    @property
    def shown_url(self) -> str:
        return self.source.shown

    def window(self, ds: "xr.Dataset", period: TimeRange) -> dict[str, Slice]:
        """The crop `crop_data` adds: the run's period widened by `time_buffer` source steps."""
        t = self.coords.t
        start, end = naive_utc(period.start), naive_utc(period.end)
        if t in ds.coords and ds[t].size > 1:
            step = ds[t].values[1] - ds[t].values[0]
            start, end = start - step * self.time_buffer[0], end + step * self.time_buffer[1]
        return {t: Slice(start=str(start), stop=str(end))}

    def write(self, period: TimeRange, staging_dir: Path) -> Path:
        """Open the source lazily, select, filter and crop as rompy does, stream `<id>.nc`."""
        target = staging_dir / self.output
        inside(staging_dir, target)
        what = f"data {self.id!r}"
        with dask_threads() as compute, self.source.open() as ds:
            crop = {**self.filter.crop, **(self.window(ds, period) if self.crop_data else {})}
            ds = select_variables(ds, self.variables or None, what)
            ds = self.filter.model_copy(update={"crop": crop}).apply(ds, what)
            ds.attrs["rompy_tasks_source"] = self.shown_url
            return write_netcdf(ds, target, compute)


class DataGrid(DataPoint):
    """rompy's DataGrid: gridded data written to `<run dir>/<id>.nc`, cut to the run's period and
    to `bbox` widened by `buffer` (rompy takes the box from the model grid, which ours lack)."""

    model_type: Literal["grid"] = "grid"  # type: ignore[assignment]
    source: GridSource  # type: ignore[assignment]
    bbox: BoundingBox | None = Field(None, description="Area to keep, in the source's x/y coordinates")

    def window(self, ds: "xr.Dataset", period: TimeRange) -> dict[str, Slice]:
        crop = super().window(ds, period)
        if self.bbox is not None:
            box = self.bbox
            crop[self.coords.x] = Slice(start=box.west - self.buffer, stop=box.east + self.buffer)
            crop[self.coords.y] = Slice(start=box.south - self.buffer, stop=box.north + self.buffer)
        return crop


DataBlock = Annotated[DataGrid | DataPoint, Field(discriminator="model_type")]
