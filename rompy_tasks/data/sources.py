"""Open a source lazily: one NetCDF file, a glob or list of files along time, a Zarr store,
an OPeNDAP URL; local or at any fsspec URL (`https://`, `s3://`, ...).

Nothing is read but metadata and coordinates: variables are dask arrays whose chunks are
whole multiples of the source's own storage chunks, at most about CHUNK_BYTES each (one
contiguous variable would otherwise be one chunk), so a selection reads only the chunks it
touches and a reduction holds a few chunks at a time. Remote
NetCDF is read through an fsspec file with a block cache, by byte ranges, never downloaded
whole. Every problem is a StageError naming the source (credentials in URLs redacted).
"""

import glob
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, StrictStr

from rompy_tasks.core.errors import StageError
from rompy_tasks.core.secrets import CREDENTIALS_ELSEWHERE, inline_credentials, redact_url

if TYPE_CHECKING:
    import xarray as xr

SourceFormat = Literal["netcdf", "zarr", "opendap"]
OPENDAP_SCHEMES = ("dap2://", "dap4://")
OPENDAP_SCHEMES_NAMES = ("dap2", "dap4")
ZARR_METADATA = (".zmetadata", ".zgroup", "zarr.json")  # consolidated (v2), group (v2), v3
REMOTE_BLOCK_BYTES = 256 * 1024  # small blocks: bytes fetched stay close to the chunks touched
GLOB_CHARACTERS = set("*?[")
CHUNK_BYTES = 64 * 2**20  # outputs reduced whole (analyze): fewer, larger tasks
SOURCE_CHUNK_BYTES = 8 * 2**20  # sources cut: a selection reads whole chunks, so keep them near the file's own


def check_source_url(url: str) -> str:
    """A URL whose scheme no reader knows, or holding credentials inline, is invalid input (exit 2),
    found before anything is fetched or recorded (the message never repeats the URL)."""
    if found := inline_credentials(url):
        raise ValueError(f"the URL holds {found}: {CREDENTIALS_ELSEWHERE}")
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        import fsspec

        if scheme not in {*OPENDAP_SCHEMES_NAMES, *fsspec.available_protocols()}:
            raise ValueError(f"unknown URL scheme {scheme!r} (file, https, s3, gs, sftp, dap2, dap4, ... or a path)")
    return url


SourceUrl = Annotated[StrictStr, AfterValidator(check_source_url)]
"""A path or a URL of a scheme fsspec (or OPeNDAP) can read."""


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def local_path(url: str) -> Path:
    return Path(url.removeprefix("file://")).expanduser()


def source_format(url: str | list[str], given: SourceFormat | None = None) -> SourceFormat:
    """The kind of source: `given`, else from the URL (`dap2://`/`dap4://` OPeNDAP; a `.zarr`
    name or a store's metadata file Zarr; anything else NetCDF)."""
    if given is not None:
        return given
    first = url if isinstance(url, str) else url[0]
    if first.startswith(OPENDAP_SCHEMES):
        return "opendap"
    if first.rstrip("/").endswith(".zarr"):
        return "zarr"
    if not is_remote(first) and local_path(first).is_dir():
        if any((local_path(first) / name).exists() for name in ZARR_METADATA):
            return "zarr"
    return "netcdf"


@contextmanager
def open_source(
    url: str | list[str], format: SourceFormat | None = None, time_name: str = "time", options: dict | None = None
) -> Iterator["xr.Dataset"]:
    """The source as one lazy dataset; files and connections are closed when the block ends.

    `options` go to xarray's open_dataset for NetCDF (rompy's SourceFile `kwargs`); the chunks
    stay ours (aligned to the file's, bounded)."""
    kind = source_format(url, format)
    with ExitStack() as stack:
        try:
            if kind == "zarr":
                yield _open_zarr(_single(url, "a Zarr store"))
            elif kind == "opendap":
                yield stack.enter_context(_open_opendap(_single(url, "an OPeNDAP URL")))
            else:
                paths = expand(url)
                datasets = [stack.enter_context(_open_netcdf(path, options or {})) for path in paths]
                yield datasets[0] if len(datasets) == 1 else combine_along_time(datasets, paths, time_name)
        except StageError:
            raise
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
            raise _unreadable(url, err) from None


def _unreadable(url: str | list[str], err: Exception) -> StageError:
    urls = [url] if isinstance(url, str) else url
    message = str(err)
    for each in urls:
        message = message.replace(each, redact_url(each))
    shown = ", ".join(redact_url(u) for u in urls[:3]) + (", ..." if len(urls) > 3 else "")
    return StageError(f"cannot open source {shown}: {type(err).__name__}: {message}")


def _single(url: str | list[str], what: str) -> str:
    if isinstance(url, list):
        if len(url) != 1:
            raise StageError(f"{what} is one URL, not a list of {len(url)}")
        return url[0]
    return url


def expand(url: str | list[str]) -> list[str]:
    """The files of a source: one URL, a list, or globs (each sorted); none found is an error."""
    found: list[str] = []
    for each in [url] if isinstance(url, str) else url:
        if not GLOB_CHARACTERS & set(each):
            if not is_remote(each) and not local_path(each).is_file():
                raise StageError(f"source {redact_url(each)} does not exist")
            found.append(each)
        elif is_remote(each):
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(each)
            found += [fs.unstrip_protocol(p) for p in sorted(paths)]
        else:
            found += sorted(glob.glob(os.path.expanduser(each.removeprefix("file://"))))
        if not found:
            raise StageError(f"source {redact_url(each)} matches no file")
    return found


@contextmanager
def open_lazy(target: Any, chunk_bytes: int = CHUNK_BYTES, **options: Any) -> Iterator["xr.Dataset"]:
    """`xr.open_dataset(target, **options)` lazily, in chunks of at most about `chunk_bytes`
    aligned to the file's own (dask's "auto" chunks; as stored for types it cannot size)."""
    import dask
    import xarray as xr

    try:
        with dask.config.set({"array.chunk-size": f"{chunk_bytes}B"}):
            ds = xr.open_dataset(target, chunks="auto", **options)
    except NotImplementedError:  # e.g. strings: "auto" cannot size them
        ds = xr.open_dataset(target, chunks={}, **options)
    with ds:
        yield ds


MANY_FILES_CACHE_BYTES = 2**20  # HDF5's per-dataset chunk cache, for files open by the dozen


@contextmanager
def open_one_of_many(path: Path) -> Iterator["xr.Dataset"]:
    """A local NetCDF file that is one of many open at once (ensemble members), lazily indexed
    (no dask) and with a small HDF5 chunk cache: each file would otherwise keep the chunks it
    read (tens of MB), and memory would grow with the member count. NetCDF3 files have none."""
    import xarray as xr

    try:
        ds = xr.open_dataset(path, engine="h5netcdf", decode_times=False,
                             driver_kwds={"rdcc_nbytes": MANY_FILES_CACHE_BYTES})  # fmt: skip
    except (OSError, ValueError):  # not HDF5 (NetCDF3): no chunk cache to bound
        ds = xr.open_dataset(path, decode_times=False)
    with ds:
        yield ds


@contextmanager
def _open_netcdf(url: str, options: dict[str, Any]) -> Iterator["xr.Dataset"]:
    options = {key: value for key, value in options.items() if key != "chunks"}
    if not is_remote(url):
        with open_lazy(local_path(url), SOURCE_CHUNK_BYTES, **options) as ds:
            yield ds
        return
    import fsspec

    # byte ranges through a block cache: h5netcdf reads the metadata and the chunks it needs
    fs, path = fsspec.core.url_to_fs(url)
    with (
        fs.open(path, "rb", block_size=REMOTE_BLOCK_BYTES, cache_type="blockcache") as handle,
        open_lazy(handle, SOURCE_CHUNK_BYTES, **{"engine": "h5netcdf", **options}) as ds,
    ):
        yield ds


# A store's metadata is a few bytes whatever shape it claims: these bounds are checked on it before
# xarray reads anything (it reads each dimension's coordinate whole at open, chunk by chunk).
MAX_COORDINATE_VALUES = 10_000_000  # 80 MB of float64: an hourly century, a 1/120 degree global grid
MAX_COORDINATE_CHUNKS = 100_000
MAX_ARRAY_CHUNKS = 10_000_000  # ARCO-ERA5's hourly fields hold 1.3 M chunks each


def _open_zarr(url: str) -> "xr.Dataset":
    import dask
    import xarray as xr

    store = str(local_path(url)) if not is_remote(url) else url
    if not is_remote(url) and not local_path(url).is_dir():
        raise StageError(f"Zarr store {redact_url(url)} does not exist")
    check_zarr_bounds(store, redact_url(url))
    # dask chunks are whole multiples of the store's (its chunks of one value become blocks of 8 MB)
    with dask.config.set({"array.chunk-size": f"{SOURCE_CHUNK_BYTES}B"}):
        try:
            return xr.open_zarr(store, consolidated=None, chunks="auto")
        except NotImplementedError:  # e.g. strings: "auto" cannot size them
            return xr.open_zarr(store, consolidated=None, chunks={})


def check_zarr_bounds(store: str, shown: str) -> None:
    """Refuse a Zarr store whose metadata claims more than can be opened safely (a 36 KB store
    can claim 1e8 chunks of one value: opening it took 4.5 GB before anything was selected)."""
    import math

    import zarr

    group = zarr.open_group(store, mode="r")
    for name, array in group.arrays():
        chunks = math.prod(math.ceil(size / chunk) for size, chunk in zip(array.shape, array.chunks, strict=True))
        dimensions = list(getattr(array.metadata, "dimension_names", None) or array.attrs.get("_ARRAY_DIMENSIONS", []))
        what = f"Zarr store {shown}: {name!r} (shape {tuple(array.shape)}, chunks {tuple(array.chunks)})"
        if dimensions == [name] and (array.size > MAX_COORDINATE_VALUES or chunks > MAX_COORDINATE_CHUNKS):
            raise StageError(
                f"{what} is a coordinate read whole at open: more than {MAX_COORDINATE_VALUES:,} values or "
                f"{MAX_COORDINATE_CHUNKS:,} chunks; rechunk or split the store"
            )
        if chunks > MAX_ARRAY_CHUNKS:
            raise StageError(f"{what} has {chunks:,} chunks, more than {MAX_ARRAY_CHUNKS:,}; rechunk the store")


@contextmanager
def _open_opendap(url: str) -> Iterator["xr.Dataset"]:
    """`dap2://host/path` and `dap4://host/path` are OPeNDAP over http (netCDF-C's DAP client);
    an `http(s)://` URL with `format: opendap` is taken as DAP2."""

    address = url
    for scheme in OPENDAP_SCHEMES:
        if url.startswith(scheme):
            address = "http://" + url.removeprefix(scheme)
            if scheme == "dap4://":
                address = "dap4://" + url.removeprefix(scheme)
    with open_lazy(address, SOURCE_CHUNK_BYTES, engine="netcdf4") as ds:
        yield ds


def combine_along_time(datasets: list["xr.Dataset"], paths: list[str], time_name: str) -> "xr.Dataset":
    """Files of one series (a file a day, a file a cycle) as one dataset along time.

    They must fit together: the same variables, each file's times inside its own span, no
    overlap and no gap between files (a gap is more than one time step of the files'); the
    files that do not are named.
    """
    import numpy as np
    import xarray as xr

    shown = [redact_url(p) for p in paths]
    spans = []
    for ds, name in zip(datasets, shown, strict=True):
        if time_name not in ds.coords:
            raise StageError(f"source file {name} has no coordinate {time_name!r}")
        times = ds[time_name].values
        if len(times) == 0:
            raise StageError(f"source file {name} holds no times")
        spans.append((times[0], times[-1], len(times)))
    order = sorted(range(len(datasets)), key=lambda i: spans[i][0])
    first_vars = set(datasets[order[0]].data_vars)
    steps = [np.diff(ds[time_name].values) for ds in datasets if ds.sizes[time_name] > 1]
    step = np.median(np.concatenate(steps)) if steps else None
    for before, after in zip(order, order[1:], strict=False):
        if set(datasets[after].data_vars) != first_vars:
            differ = sorted(first_vars ^ set(datasets[after].data_vars))
            raise StageError(f"source files {shown[order[0]]} and {shown[after]} differ in variables {differ}")
        end, start = spans[before][1], spans[after][0]
        if start <= end:
            raise StageError(f"source files {shown[before]} and {shown[after]} overlap in time ({start} <= {end})")
        if step is not None and start - end > step:
            raise StageError(
                f"times missing between source files {shown[before]} (to {end}) and {shown[after]} "
                f"(from {start}): the files step by {step}"
            )
    ordered = [datasets[i] for i in order]
    return xr.concat(
        ordered,
        dim=time_name,
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="override",
        combine_attrs="override",
    )
