"""Overhead of rompy-tasks over a bare `veros run` on the same setup and run length.

Three timings of the whole process, each repeated and reduced to the median:

- bare:      `veros copy-setup acc` + `veros run acc.py -s runlen N` (what a user scripts today)
- ephemeral: `rompy-tasks run` with no PREFECT_API_URL (a temporary Prefect server per run)
- server:    `rompy-tasks run` against an already running `prefect server start`

Prefect start-up = ephemeral - server; per-run overhead = server - bare.

    .venv/bin/python bench/overhead.py [--runs 3] [--days 10]
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PIPELINE = REPO / "examples" / "veros-acc" / "pipeline.yaml"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return elapsed


def bare_veros(work: Path, runlen: int, env: dict[str, str], index: int) -> float:
    target = work / f"bare{index}"
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "veros"), "copy-setup", "acc", "--to", str(target)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return (
        time.perf_counter()
        - start
        + timed([str(BIN / "veros"), "run", "acc.py", "-s", "runlen", str(runlen)], target, env)
    )


def ours(work: Path, days: int, env: dict[str, str], index: int) -> float:
    return timed(
        [
            str(BIN / "rompy-tasks"),
            "run",
            str(PIPELINE),
            "--set",
            f"config.output_dir={work}/ours",
            "--set",
            f"config.run_id=bench{index}",
            "--set",
            f"config.period.duration={days}d",
            "--set",
            "postprocessor=[]",
            "--set",
            "config.config.diagnostics={}",  # the stock setup's diagnostics, as in the bare run
        ],
        REPO,
        env,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, 9)
    raise SystemExit("prefect server did not become healthy in 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    runlen = args.days * 86400
    base_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    base_env["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory(prefix="rompy-bench-") as tmp:
        work = Path(tmp)
        bare, ephemeral, served = [], [], []
        for i in range(args.runs):
            bare.append(bare_veros(work, runlen, base_env, i))
            ephemeral.append(ours(work, args.days, {**base_env, "PREFECT_HOME": str(work / f"home{i}")}, i))
        server, url = start_server(work / "server-home")
        try:
            for i in range(args.runs):
                served.append(ours(work, args.days, {**base_env, "PREFECT_API_URL": url}, 100 + i))
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    m_bare, m_eph, m_srv = (statistics.median(x) for x in (bare, ephemeral, served))
    print(f"Veros ACC, {args.days} model days, {args.runs} runs each, medians (whole process):")
    print(f"  bare veros copy-setup + run         {m_bare:7.2f} s   {sorted(round(x, 2) for x in bare)}")
    print(f"  rompy-tasks run, temporary server   {m_eph:7.2f} s   {sorted(round(x, 2) for x in ephemeral)}")
    print(f"  rompy-tasks run, running server     {m_srv:7.2f} s   {sorted(round(x, 2) for x in served)}")
    print(f"  ratio (temporary server / bare)     {m_eph / m_bare:7.2f}x")
    print(f"  ratio (running server / bare)       {m_srv / m_bare:7.2f}x")
    print(f"  Prefect start-up (temporary server) {m_eph - m_srv:7.2f} s")
    print(f"  per-run overhead (running server)   {m_srv - m_bare:7.2f} s")


if __name__ == "__main__":
    main()
