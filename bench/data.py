"""Data at real scale: the user's commands on GB-size files, against floors on the same files.

    .venv/bin/python bench/data.py [--runs 5] [--sizes 2,8] [--members 8,32] [--work DIR]

(a) a forcing cut (2 days + 6 h buffer over 110-160 E, 45-10 S, u10 and v10) from an ERA5-like
    source (global 0.25 deg, hourly, NetCDF4 chunked per step) of 2 GB and 8 GB:
    `rompy-tasks run` minus the same run without forcing, against `ncks` and lazy xarray
    (whole process minus its imports), with the peak RSS of the working process
    (`ROMPY_TASKS_WARM=0`: the command does the work itself);
(b) the same cut from nginx on loopback (byte ranges): bytes served against the bytes of the
    source's chunks the selection touches, and the cut's own size;
(c) the cut from a glob of 10 daily files; (d) from a Zarr store (when zarr is installed);
(e) `analyze` of a 2 GB output (`rompy-tasks postprocess`) against a dask script;
(f) `ensemble_stats` over 8 and 32 members of 200 MB (`rompy-tasks ensemble`), peak RSS;
(a') the cut of (a) as a rompy DataGrid block in `data:`; (g) and (h) in inputs_products.py:
    16 members sharing a 1 GB static input over https, publishing 500 MB of products to S3.

Medians of `--runs`. Generated data (never committed) lives in --work (default: a temporary
directory); the free disk is checked first and at most about 12 GB exists at a time.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from common import RT, median, spread, stop_server, user_env
from inputs_products import bench_publish, bench_shared_input
from services import bytes_served, nginx_serving

HOURLY_GB = 1440 * 721 * 4 * 2 * 24 / 1e9  # two float32 global fields an hour, a day
CUT = {"west": 110.0, "east": 160.0, "south": -45.0, "north": -10.0}
START, DAYS, BUFFER_HOURS = "2026-01-03T00:00:00", 2, 6


def write_era5_like(path: Path, days: int, start: str = "2026-01-01") -> Path:
    """u10/v10 on a global 0.25 deg grid, hourly, latitude descending, one chunk per step; streamed."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", 721)
        nc.createDimension("lon", 1440)
        time_var = nc.createVariable("time", "f8", ("time",))
        time_var.units = f"hours since {start}"
        nc.createVariable("lat", "f4", ("lat",))[:] = np.linspace(90, -90, 721)
        nc.createVariable("lon", "f4", ("lon",))[:] = np.arange(1440) * 0.25
        nc["lat"].units, nc["lon"].units = "degrees_north", "degrees_east"
        fields = [nc.createVariable(n, "f4", ("time", "lat", "lon"), chunksizes=(1, 721, 1440)) for n in ("u10", "v10")]
        rng = np.random.default_rng(0)
        base = rng.normal(size=(721, 1440)).astype("float32")
        for hour in range(days * 24):
            time_var[hour] = hour
            for k, field in enumerate(fields):
                field[hour] = base * np.float32(1 + 0.01 * hour) + k
    return path


def peak_run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one whole command, measured from a fresh wrapper process."""
    seconds, _, rss = timed_run(cmd, env, cwd)
    return seconds, rss


def timed_run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, all its processes) and peak RSS (MB) of one whole
    command, measured from a fresh wrapper process."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter(); r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "t = time.perf_counter() - t\n"
        "sys.stderr.write(r.stderr.decode()[-3000:] if r.returncode else '')\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(t, u.ru_utime + u.ru_stime, u.ru_maxrss / 1024, r.returncode)\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, cwd=cwd, capture_output=True, text=True)
    seconds, cpu, rss, code = done.stdout.split()
    if code != "0":
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return float(seconds), float(cpu), float(rss)


def interleaved(commands: dict[str, list[str]], env: dict[str, str], cwd: Path, runs: int) -> dict[str, list]:
    """Each command `runs` times, taking turns (a drifting host affects all alike): label -> [(wall, cpu, rss)]."""
    results: dict[str, list] = {label: [] for label in commands}
    for _ in range(runs):
        for label, cmd in commands.items():
            results[label].append(timed_run(cmd, env, cwd))
    for label, rows in results.items():
        walls, cpus = [r[0] for r in rows], [r[1] for r in rows]
        print(f"  {label:<44} wall min {min(walls):5.2f} median {median(walls):5.2f} s, CPU min {min(cpus):5.2f} "
              f"median {median(cpus):5.2f} s, peak {max(r[2] for r in rows):5.0f} MB", flush=True)  # fmt: skip
    return results


def pipeline_file(work: Path, name: str, forcing: dict | None, command: str = "true", post: list | None = None) -> Path:
    doc = {
        "config": {
            "run_id": name,
            "output_dir": str(work / "runs"),
            "delete_existing": True,
            "period": {"start": START, "duration": f"{DAYS}d"},
            "config": {"model_type": "shell", "command": command},
        },
        "postprocessor": post or [],
    }
    if forcing:
        doc["forcing"] = [{"name": "wind", "time_buffer": f"{BUFFER_HOURS}h", "bbox": CUT, **forcing}]
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def measure(label: str, cmd: list[str], env: dict[str, str], cwd: Path, runs: int) -> tuple[float, float]:
    results = [peak_run(cmd, env, cwd) for _ in range(runs)]
    times, peaks = [r[0] for r in results], [r[1] for r in results]
    print(f"  {label:<44} {median(times):7.2f} s {spread(times)}  peak {max(peaks):6.0f} MB", flush=True)
    return median(times), max(peaks)


def cut_steps() -> tuple[int, int]:
    """The first and last hourly step of the cut (the period and its buffer) in the sources."""
    t0 = np.datetime64(START) - np.timedelta64(BUFFER_HOURS, "h")
    first = int((t0 - np.datetime64("2026-01-01")) / np.timedelta64(1, "h"))
    return first, first + DAYS * 24 + 2 * BUFFER_HOURS


def ncks_floor(source: Path, work: Path, env: dict[str, str], runs: int) -> float:
    """ncks on the same cut: the C tool's floor."""
    first, last = cut_steps()
    ncks = ["ncks", "-O", "-d", f"time,{first},{last}", "-d", "lon,110.,160.", "-d", "lat,-45.,-10.", "-v",
            "u10,v10", str(source), str(work / "ncks.nc")]  # fmt: skip
    return measure("floor: ncks", ncks, env, work, runs)[0]


def lazy_floor_script(source: Path, work: Path) -> str:
    """The same cut as plain lazy xarray: open (dask chunks as stored), select, write."""
    first, last = cut_steps()
    return (
        "import xarray as xr\n"
        f"ds = xr.open_dataset({str(source)!r}, chunks={{}})\n"
        f"ds.isel(time=slice({first}, {last + 1})).sel(lon=slice(110, 160), lat=slice(-10, -45))"
        f".to_netcdf({str(work / 'lazy.nc')!r})\n"
    )


def bench_cut(work: Path, env: dict[str, str], runs: int, sizes: list[int], sources: bool) -> None:
    print("(a) forcing cut: rompy-tasks run (ROMPY_TASKS_WARM=0) vs floors, interleaved runs", flush=True)
    bare = pipeline_file(work, "bare", None)
    for gb in sizes:
        source = write_era5_like(work / f"era5-{gb}g.nc", max(1, round(gb / HOURLY_GB)))
        size = source.stat().st_size / 1e9
        print(f" source {source.name}: {size:.2f} GB", flush=True)
        if shutil.which("ncks"):
            ncks_floor(source, work, env, runs)
        cut = pipeline_file(work, f"cut{gb}", {"url": str(source)})
        rows = interleaved(
            {
                "rompy-tasks run without forcing": [RT, "run", str(bare)],
                f"rompy-tasks run, cut from {size:.1f} GB": [RT, "run", str(cut)],
                "floor: lazy xarray (whole process)": [sys.executable, "-c", lazy_floor_script(source, work)],
                "  of which imports": [sys.executable, "-c", "import xarray, dask, netCDF4, h5netcdf"],
            },
            env, work, runs,
        )  # fmt: skip
        base, ours, lazy, imports = (rows[label] for label in rows)
        # both sides without the data stack's imports: the run without forcing never imports
        # xarray, dask, netCDF4 and h5netcdf, and the floor's time is taken without them
        for what, k in (("wall", 0), ("CPU", 1)):
            mine = [o[k] - b[k] - i[k] for o, b, i in zip(ours, base, imports, strict=True)]
            floor = [f[k] - i[k] for f, i in zip(lazy, imports, strict=True)]
            ratios = sorted(m / f for m, f in zip(mine, floor, strict=True))
            print(f"  => cut {what}: ours {median(mine):.2f} s vs lazy xarray {median(floor):.2f} s (medians); "
                  f"per interleaved run {min(ratios):.2f}x (min) to {median(ratios):.2f}x (median)",
                  flush=True)  # fmt: skip
        print(
            f"  => peak RSS {max(o[2] for o in ours):.0f} MB (lazy xarray {max(f[2] for f in lazy):.0f} MB)", flush=True
        )
        if sources and gb == sizes[0]:
            lazy_work = median([f[0] - i[0] for f, i in zip(lazy, imports, strict=True)])
            base_wall = median([b[0] for b in base])
            bench_data_block(work, source, env, runs, base_wall + median([i[0] for i in imports]), lazy_work)
            bench_remote(work, source, env, runs)
            bench_glob(work, source, env, runs)
            bench_zarr(work, source, env, runs)
            bench_analyze(work, source, env, runs)
        source.unlink()


def bench_data_block(work: Path, source: Path, env: dict[str, str], runs: int, base: float, lazy: float) -> None:
    """The same cut as rompy's DataGrid in `data:` (sort filter for the descending latitude, as a
    rompy user writes it), against the same lazy xarray floor."""
    print("(a') the same cut as a rompy DataGrid block", flush=True)
    path = pipeline_file(work, "block", None)
    doc = yaml.safe_load(path.read_text())
    doc["data"] = [{"model_type": "grid", "id": "wind", "variables": ["u10", "v10"], "bbox": CUT,
                    "source": {"model_type": "file", "uri": str(source)}, "time_buffer": [BUFFER_HOURS, BUFFER_HOURS],
                    "coords": {"x": "lon", "y": "lat"}, "filter": {"sort": {"coords": ["lat"]}}}]  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    ours, peak = measure("rompy-tasks run, DataGrid block", [RT, "run", str(path)], env, work, runs)
    print(f"  => cut work {ours - base:.2f} s vs lazy xarray {lazy:.2f} s: {(ours - base) / lazy:.2f}x; "
          f"peak RSS {peak:.0f} MB", flush=True)  # fmt: skip


def bench_remote(work: Path, source: Path, env: dict[str, str], runs: int) -> None:
    print("(b) the same cut over https (nginx, byte ranges)", flush=True)
    www = work / "www"
    www.mkdir(exist_ok=True)
    served = www / source.name
    os.link(source, served)
    with nginx_serving(www, work / "nginx") as (url, log):
        path = pipeline_file(work, "remote", {"url": f"{url}/{source.name}"})
        measure("rompy-tasks run, cut over http", [RT, "run", str(path)], env, work, 1)
        sent = bytes_served(log)
    steps = DAYS * 24 + 2 * BUFFER_HOURS + 1
    touched = steps * 2 * 721 * 1440 * 4
    cut = (work / "runs" / "remote" / "forcing" / "wind.nc").stat().st_size
    print(f"  => served {sent / 1e6:.1f} MB for {touched / 1e6:.1f} MB of chunks touched ({sent / touched:.3f}x); "
          f"the cut itself {cut / 1e6:.1f} MB; the file {source.stat().st_size / 1e9:.2f} GB", flush=True)  # fmt: skip
    served.unlink()


def bench_glob(work: Path, source: Path, env: dict[str, str], runs: int) -> None:
    import xarray as xr

    print("(c) the cut from a glob of daily files", flush=True)
    daily = work / "daily"
    daily.mkdir(exist_ok=True)
    with xr.open_dataset(source, chunks={}) as ds:
        for day in range(ds.sizes["time"] // 24):
            part = ds.isel(time=slice(day * 24, (day + 1) * 24))
            part.to_netcdf(
                daily / f"era5-{day:02d}.nc", encoding={v: {"chunksizes": (1, 721, 1440)} for v in ("u10", "v10")}
            )
    path = pipeline_file(work, "glob", {"url": str(daily / "era5-*.nc")})
    measure(f"rompy-tasks run, glob of {len(list(daily.iterdir()))} files", [RT, "run", str(path)], env, work, runs)
    shutil.rmtree(daily)


def bench_zarr(work: Path, source: Path, env: dict[str, str], runs: int) -> None:
    try:
        import xarray as xr
        import zarr  # noqa: F401
    except ImportError:
        print("(d) Zarr: zarr is not installed, skipped", flush=True)
        return
    print("(d) the cut from a Zarr store", flush=True)
    store = work / "era5.zarr"
    with xr.open_dataset(source, chunks={"time": 1}) as ds:
        ds.to_zarr(store, mode="w", consolidated=True)
    path = pipeline_file(work, "zarr", {"url": str(store)})
    measure("rompy-tasks run, Zarr store", [RT, "run", str(path)], env, work, runs)
    shutil.rmtree(store)


def bench_analyze(work: Path, source: Path, env: dict[str, str], runs: int) -> None:
    print("(e) analyze of a 2 GB output: rompy-tasks postprocess vs a dask script", flush=True)
    post = [{"processor": "analyze", "files": ["out.nc"]}]
    path = pipeline_file(work, "analyze", None, command=f"ln {source} out.nc", post=post)
    subprocess.run([RT, "run", str(path), "--last-stage", "run"], env=env, check=True, capture_output=True)
    ours, peak = measure("rompy-tasks postprocess (analyze)", [RT, "postprocess", str(path)], env, work, runs)
    floor = (
        "import dask, xarray as xr\n"
        f"ds = xr.open_dataset({str(source)!r}, chunks={{'time': 24}})\n"
        "r = [f(ds[v].astype('float64'), dim=('lat', 'lon')) for v in ('u10', 'v10') for f in "
        "(lambda a, dim: a.min(dim), lambda a, dim: a.mean(dim), lambda a, dim: a.max(dim))]\n"
        "dask.compute(*r)\n"
    )
    dask_floor, dask_peak = measure("floor: dask per-step min/mean/max", [sys.executable, "-c", floor], env, work, runs)
    print(f"  => {ours / dask_floor:.2f}x the dask floor; peak {peak:.0f} MB (floor {dask_peak:.0f} MB)", flush=True)


def bench_ensemble_stats(work: Path, env: dict[str, str], runs: int, counts: list[int]) -> None:
    import xarray as xr

    print("(f) ensemble_stats over members of 200 MB (rompy-tasks ensemble)", flush=True)
    outputs = work / "members"
    outputs.mkdir(exist_ok=True)
    steps = 48  # 200 MB a member: 48 steps of hs on a 1024 x 1024 float32 grid
    rng = np.random.default_rng(1)
    for index in range(max(counts)):
        hs = rng.gamma(2.0, 1.0, size=(steps, 1024, 1024)).astype("float32")
        xr.Dataset({"hs": (("time", "y", "x"), hs)}, coords={"time": np.arange(steps)}).to_netcdf(
            outputs / f"m{index:03d}.nc", encoding={"hs": {"chunksizes": (1, 1024, 1024)}})  # fmt: skip
    for n in counts:
        pipeline = yaml.safe_load(pipeline_file(work, "member", None).read_text())
        # each member hard-links its own 200 MB output (no model time: the statistics are measured)
        link = ["ln", f"{outputs}/m{{{{ '%03d' % config.parameters.seed }}}}.nc", "out.nc"]
        pipeline["config"]["config"].update(command=link, parameters={"seed": 0})
        stats = {"processor": "ensemble_stats", "file": "out.nc", "variables": ["hs"],
                 "quantiles": [0.1, 0.5, 0.9], "thresholds": {"hs": [2.0, 4.0]}}  # fmt: skip
        members = {"n": n, "seed_field": "config.config.parameters.seed"}
        doc = {
            "name": f"stats{n}",
            "pipeline": pipeline,
            "members": members,
            "max_parallel": 2,
            "postprocessor": [stats],
        }
        path = work / f"stats{n}.yaml"
        path.write_text(yaml.safe_dump(doc))
        measure(f"rompy-tasks ensemble, {n} members, ensemble_stats", [RT, "ensemble", str(path)], env, work, 1)
    shutil.rmtree(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="2,8", help="source sizes in GB")
    parser.add_argument("--members", default="8,32")
    parser.add_argument("--work", type=Path)
    parts_help = "cut (a), sources (a', b-e, on the first size), stats (f), inputs (g), publish (h)"
    parser.add_argument("--parts", default="cut,sources,stats,inputs,publish", help=parts_help)
    parser.add_argument("--input-gb", type=float, default=1.0, help="(g) the shared static input's size")
    parser.add_argument("--publish-mb", type=int, default=500, help="(h) the products' total size")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="rompy-tasks-data-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    free = shutil.disk_usage(work).free / 1e9
    if free < 2.5 * max(sizes) + 8:
        raise SystemExit(f"{free:.0f} GB free in {work}: need about {2.5 * max(sizes) + 8:.0f} GB")
    env = {**user_env(work), "ROMPY_TASKS_WARM": "0"}
    started = time.time()
    try:
        subprocess.run([RT, "server", "start"], env=env, check=True, capture_output=True)
        parts = args.parts.split(",")
        if "cut" in parts or "sources" in parts:
            bench_cut(work, env, args.runs, sizes, "sources" in parts)
        if "stats" in parts:
            bench_ensemble_stats(work, env, args.runs, [int(n) for n in args.members.split(",")])
        if "inputs" in parts:
            bench_shared_input(work, env, args.input_gb)
        if "publish" in parts:
            bench_publish(work, env, args.publish_mb)
    finally:
        stop_server(env)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"done in {time.time() - started:.0f} s; peak RSS of this script (data generation) {peak:.0f} MB")


if __name__ == "__main__":
    main()
