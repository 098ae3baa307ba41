"""Makespan of N short runs through the slurm backend against plain `sbatch --wait` jobs.

Both sides run the same command N times (default 16 x `sleep 1`) on the local single-node
cluster, with at most 2 jobs at a time (this machine has 2 cores):

- sbatch: N `sbatch --wait --wrap CMD` submitted at once; SLURM runs 2 at a time
- ours:   one flow submitting N `run_model` tasks to the DaskTaskRunner of a SlurmConfig with
          max_jobs=2 (2 worker jobs, each running tasks one after another, each via srun)

Needs scripts/slurm-cluster. Run against a Prefect API (PREFECT_API_URL) or the temporary one.

    .venv/bin/python bench/slurm_overhead.py [--members 16] [--repeats 3]
"""

import argparse
import concurrent.futures
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prefect import flow  # noqa: E402

from rompy_tasks.backends.slurm import SlurmConfig  # noqa: E402
from rompy_tasks.plugins import model_run_class  # noqa: E402
from rompy_tasks.tasks import run_model  # noqa: E402

COMMAND = ["sleep", "1"]


def sbatch_makespan(members: int, work: Path) -> float:
    def one(i: int) -> None:
        subprocess.run(
            [
                "sbatch",
                "--wait",
                "--quiet",
                "-p",
                "debug",
                "-n",
                "1",
                "-o",
                str(work / f"sb{i}.out"),
                "--wrap",
                " ".join(COMMAND),
            ],
            check=True,
        )

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(members) as pool:
        list(pool.map(one, range(members)))
    return time.perf_counter() - start


@flow(name="bench-slurm-members")
def members_flow(runs: list, backend: SlurmConfig) -> int:
    futures = [run_model.submit(run, backend) for run in runs]
    return sum(f.result().exit_code == 0 for f in futures)


def ours_makespan(members: int, work: Path, repeat: int) -> float:
    backend = SlurmConfig(queue="debug", max_jobs=2, time_limit="00:30:00")
    runs = []
    for i in range(members):
        run = model_run_class()(
            run_id=f"r{repeat}m{i}",
            output_dir=work,
            period={"start": "2026-01-01", "duration": "1h"},
            config={"model_type": "shell", "command": COMMAND},
        )
        run.prepare_staging()
        runs.append(run)
    start = time.perf_counter()
    done = members_flow.with_options(task_runner=backend.task_runner())(runs, backend)
    elapsed = time.perf_counter() - start
    assert done == members
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    SlurmConfig(queue="debug").preflight()
    plain, ours = [], []
    with tempfile.TemporaryDirectory(prefix="rompy-slurm-bench-") as tmp:
        work = Path(tmp)
        for r in range(args.repeats):
            plain.append(sbatch_makespan(args.members, work))
            ours.append(ours_makespan(args.members, work, r))
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"{args.members} x `{' '.join(COMMAND)}`, 2 at a time, makespan medians of {args.repeats}:")
    print(f"  sbatch --wait      {p:6.2f} s   {sorted(round(x, 2) for x in plain)}")
    print(f"  slurm backend      {o:6.2f} s   {sorted(round(x, 2) for x in ours)}")
    print(f"  ratio              {o / p:6.2f}x   ({(o - p) / args.members:+.2f} s per member)")


if __name__ == "__main__":
    main()
