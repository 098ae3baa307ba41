"""`rompy-tasks ensemble` on the slurm backend against plain `sbatch --wait`, same work.

N members (default 16) of `sleep 1` on the local one-node cluster (scripts/slurm-cluster):

- plain:  N `sbatch --wait` jobs submitted at once (SLURM runs them as the node allows)
- ours:   `rompy-tasks ensemble FILE` with the slurm backend, `max_jobs: 2` and the default
          `max_parallel`, as a user runs it: one Dask cluster for the whole ensemble, its two
          worker jobs shared by the members as pilot jobs (the members wait at its scheduler)

Whole-command makespans, medians of `--repeats`.

    .venv/bin/python bench/slurm_overhead.py [--members 16] [--repeats 3]
"""

import argparse
import concurrent.futures
import subprocess
import tempfile
import time
from pathlib import Path

from common import RT, median, shell_ensemble_file, spread, stop_server, timed, user_env

COMMAND = ["sleep", "1"]


def sbatch_makespan(members: int, work: Path) -> float:
    def one(i: int) -> None:
        out = str(work / f"sb{i}.out")
        subprocess.run(
            ["sbatch", "--wait", "--quiet", "-p", "debug", "-n", "1", "-o", out, "--wrap", " ".join(COMMAND)]
        )

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(members) as pool:
        list(pool.map(one, range(members)))
    return time.perf_counter() - start


def ours_makespan(members: int, work: Path, env: dict[str, str], repeat: int) -> float:
    backend = {"type": "slurm", "queue": "debug", "max_jobs": 2, "time_limit": "00:30:00"}
    path = shell_ensemble_file(work, f"slurm{repeat}", members, COMMAND, max_parallel=None, backend=backend)
    return timed([RT, "ensemble", str(path)], work, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    plain, ours = [], []
    with tempfile.TemporaryDirectory(prefix="rompy-slurm-bench-") as tmp:
        work = Path(tmp)
        env = user_env(work)
        try:
            subprocess.run([RT, "server", "start"], env=env, check=True, stdout=subprocess.DEVNULL)
            for r in range(args.repeats):
                plain.append(sbatch_makespan(args.members, work))
                ours.append(ours_makespan(args.members, work, env, r))
        finally:
            stop_server(env)
    p, o = median(plain), median(ours)
    print(f"{args.members} x `{' '.join(COMMAND)}`, makespan medians of {args.repeats}:")
    print(f"  {args.members} x sbatch --wait                     {p:6.2f} s   {spread(plain)}")
    print(f"  rompy-tasks ensemble, slurm, max_jobs 2    {o:6.2f} s   {spread(ours)}   (max_parallel: default)")
    print(f"  ratio                                      {o / p:6.2f}x")


if __name__ == "__main__":
    main()
