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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flows.services import prefect_server

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
        with prefect_server(work / "server-home", work / "server.log") as server_env:
            url = server_env["PREFECT_API_URL"]
            for i in range(args.runs):
                served.append(ours(work, args.days, {**base_env, "PREFECT_API_URL": url}, 100 + i))
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
