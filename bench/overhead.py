"""`rompy-tasks run` as a user runs it, against a bare `veros run` of the same setup and length.

Whole processes, no Prefect configured (the CLI starts the reused local server itself):

- first time:  a trivial pipeline (`true`) in a fresh data directory: includes starting the
               local Prefect server on a new database
- repeated:    the same trivial pipeline again (the server is reused, and the command is
               forked by the warm command process the first one left behind)
- Veros:       ACC, N model days (default 10), `rompy-tasks run` vs bare `veros copy-setup` +
               `veros run acc.py -s runlen` (what a user scripts today); no postprocessors, the
               stock diagnostics in both

    .venv/bin/python bench/overhead.py [--runs 3] [--days 10]
"""

import argparse
import tempfile
from pathlib import Path

import yaml
from common import BIN, RT, median, spread, stop_server, timed, user_env, wait_warm

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "examples" / "veros-acc" / "pipeline.yaml"


def trivial(work: Path) -> Path:
    path = work / "trivial.yaml"
    doc = {
        "config": {
            "run_id": "trivial",
            "output_dir": str(work / "runs"),
            "delete_existing": True,
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": "true"},
        },
        "postprocessor": [],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def bare_veros(work: Path, runlen: int, env: dict[str, str], index: int) -> float:
    target = work / f"bare{index}"
    setup = timed([str(BIN / "veros"), "copy-setup", "acc", "--to", str(target)], work, env)
    return setup + timed([str(BIN / "veros"), "run", "acc.py", "-s", "runlen", str(runlen)], target, env)


def ours_veros(work: Path, days: int, env: dict[str, str], index: int) -> float:
    sets = {
        "config.output_dir": f"{work}/ours",
        "config.run_id": f"bench{index}",
        "config.period.duration": f"{days}d",
        "postprocessor": "[]",
        "config.config.diagnostics": "{}",  # the stock setup's diagnostics, as in the bare run
    }
    args = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    return timed([RT, "run", str(PIPELINE), *args], REPO, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rompy-bench-") as tmp:
        work = Path(tmp)
        env = {**user_env(work), "OMP_NUM_THREADS": "1"}
        try:
            first = timed([RT, "run", str(trivial(work))], work, env)
            wait_warm(env)
            repeated = [timed([RT, "run", str(trivial(work))], work, env) for _ in range(args.runs)]
            bare, ours = [], []
            for i in range(args.runs):
                bare.append(bare_veros(work, args.days * 86400, env, i))
                ours.append(ours_veros(work, args.days, env, i))
        finally:
            stop_server(env)
    b, o = median(bare), median(ours)
    print("rompy-tasks run, trivial pipeline (`true`), whole process:")
    print(f"  first time (starts the local server, new database)  {first:6.2f} s")
    print(
        f"  repeated (server reused, warm), median of {args.runs}      {median(repeated):6.2f} s   {spread(repeated)}"
    )
    print(f"Veros ACC, {args.days} model days, medians of {args.runs} (whole process):")
    print(f"  bare veros copy-setup + run   {b:6.2f} s   {spread(bare)}")
    print(f"  rompy-tasks run               {o:6.2f} s   {spread(ours)}")
    print(f"  ratio                         {o / b:6.2f}x   ({o - b:+.2f} s)")


if __name__ == "__main__":
    main()
