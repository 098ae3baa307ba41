"""Static inputs and published products at real size (issue 25), as parts (g) and (h) of data.py.

(g) `rompy-tasks ensemble` of 16 members that all need one 1 GB static input served by nginx
    over http: bytes the server sent (target: the file once) and the command's time against a
    single plain fetch of the file (fsspec `get`, the same HTTP client) in a fresh process;
(h) `rompy-tasks postprocess` publishing 500 MB of products (five NetCDF-sized files) to an
    S3-compatible endpoint on loopback (moto), as a user runs it (through the warm command
    process), against a plain fsspec `put` of the same files to the same endpoint in a fresh
    process (target: within 1.2x), then the same publish again (nothing changed: checksums only).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import RT, wait_warm
from services import bytes_served, nginx_serving, s3_endpoint

CHUNK = 64 * 1024 * 1024


def write_random(path: Path, size: int) -> Path:
    """`size` random bytes (incompressible, as model output mostly is), written in chunks."""
    with open(path, "wb") as handle:
        left = size
        while left:
            handle.write(os.urandom(min(CHUNK, left)))
            left -= min(CHUNK, left)
    return path


def timed_command(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def bench_shared_input(work: Path, env: dict[str, str], gigabytes: float) -> None:
    print(f"(g) 16 members sharing a {gigabytes:.1f} GB static input over http", flush=True)
    www = work / "www-inputs"
    www.mkdir(exist_ok=True)
    source = write_random(www / "bathy.nc", int(gigabytes * 1e9))
    size = source.stat().st_size
    with nginx_serving(www, work / "nginx-inputs") as (url, log):
        fetch = f"import fsspec; fsspec.filesystem('http').get({url + '/bathy.nc'!r}, {str(work / 'plain.nc')!r})"
        floor = timed_command([sys.executable, "-c", fetch], env, work)
        before = bytes_served(log)
        doc = {
            "name": "shared",
            "max_parallel": 2,
            "members": {"n": 16},
            "pipeline": {
                "config": {"run_id": "m", "output_dir": str(work / "runs"), "period": {"start": "2026-01-01",
                           "duration": "1h"}, "config": {"model_type": "shell", "command": ["test", "-s", "bathy.nc"]}},
                "inputs": [{"id": "bathy", "source": f"{url}/bathy.nc"}],
                "cache_dir": str(work / "cache"),
            },
        }  # fmt: skip
        path = work / "shared.yaml"
        path.write_text(yaml.safe_dump(doc))
        ours = timed_command([RT, "ensemble", str(path)], env, work)
        sent = bytes_served(log) - before
    print(f"  plain fetch (fsspec get, fresh process): {floor:.2f} s", flush=True)
    print(f"  rompy-tasks ensemble, 16 members: {ours:.2f} s; served {sent / 1e9:.3f} GB for a {size / 1e9:.3f} GB "
          f"file ({sent / size:.2f}x the file)", flush=True)  # fmt: skip
    source.unlink()
    (work / "plain.nc").unlink()


def bench_publish(work: Path, env: dict[str, str], megabytes: int) -> None:
    print(f"(h) publishing {megabytes} MB of products to S3 (moto on loopback)", flush=True)
    run_dir = work / "runs" / "products"
    run_dir.mkdir(parents=True, exist_ok=True)
    files = [write_random(run_dir / f"out{k}.nc", megabytes * 1_000_000 // 5) for k in range(5)]
    with s3_endpoint(work / "moto") as s3:
        # the user's command as they run it: through the warm command process (data.py's other
        # parts turn it off to measure the memory of the process that does the work)
        env = {**{k: v for k, v in env.items() if k != "ROMPY_TASKS_WARM"}, **s3}
        make = "import s3fs; s3fs.S3FileSystem().mkdir('products')"
        subprocess.run([sys.executable, "-c", make], env=env, check=True)
        put = f"import s3fs; s3fs.S3FileSystem().put({[str(f) for f in files]!r}, 'products/plain/')"
        floor = timed_command([sys.executable, "-c", put], env, work)
        doc = {
            "config": {"run_id": "products", "output_dir": str(work / "runs"), "period": {"start": "2026-01-01",
                       "duration": "1h"}, "config": {"model_type": "shell", "command": ["true"], "outputs": ["*.nc"]}},
            "postprocessor": [{"processor": "publish", "destination": "s3://products/{{ runtime.run_id }}",
                               "files": ["*.nc"]}],
        }  # fmt: skip
        path = work / "publish.yaml"
        path.write_text(yaml.safe_dump(doc))
        timed_command([RT, "validate", str(path)], env, work)
        timed_command([RT, "run", str(path), "--last-stage", "generate"], env, work)  # starts a warm process
        wait_warm(env)
        first = timed_command([RT, "postprocess", str(path)], env, work)
        again = timed_command([RT, "postprocess", str(path)], env, work)
    print(f"  plain fsspec put (fresh process): {floor:.2f} s", flush=True)
    print(f"  rompy-tasks postprocess (publish): {first:.2f} s ({first / floor:.2f}x); again, unchanged: "
          f"{again:.2f} s", flush=True)  # fmt: skip
    for f in files:
        f.unlink()
