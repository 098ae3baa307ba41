"""Ensemble makespan against `xargs -P 2` (the practical floor) and model-ensembler.

Same batch for all three: N members (default 64) of a 1 s CPU-bound command, 2 at a time on
this 2-core machine. Then the orchestration overhead per member at M members (default 500)
of `true`. Ours runs in-process against a Prefect API that is already up (its start-up is
measured by bench/overhead.py). model-ensembler (PyPI `model-ensembler`, dummy backend) is
installed into .bench-venv/ on first use, with its polling intervals at their 1 s minimum.

    .venv/bin/python bench/ensemble_overhead.py [--members 64] [--overhead-members 500]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.ensemble import model_ensemble  # noqa: E402
from rompy_tasks.ensemble import EnsembleConfig  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BUSY = "import time\nt = time.perf_counter() + 1\nwhile time.perf_counter() < t: pass"
COMMAND = ["python3", "-c", BUSY]
ME_VENV = REPO / ".bench-venv" / "model-ensembler"


def xargs_makespan(members: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", "2", "-I{}", *COMMAND], input="\n".join(map(str, range(members))), text=True, check=True
    )
    return time.perf_counter() - start


def ours_makespan(members: int, work: Path, command: list[str], name: str) -> float:
    ensemble = EnsembleConfig.model_validate(
        {
            "name": name,
            "pipeline": {
                "config": {
                    "run_id": "m",
                    "output_dir": str(work),
                    "period": {"start": "2026-01-01", "duration": "1h"},
                    "config": {"model_type": "shell", "command": command},
                },
                "postprocessor": [],
            },
            "members": {"n": members},
            "max_parallel": 2,
        }
    )
    start = time.perf_counter()
    result = model_ensemble(ensemble=ensemble)
    elapsed = time.perf_counter() - start
    assert result.count("completed") == members, result
    return elapsed


def model_ensembler_makespan(members: int, work: Path) -> float | None:
    if shutil.which("rsync") is None:
        print("  (model-ensembler needs rsync: apt-get install rsync)")
        return None
    if not (ME_VENV / "bin" / "model_ensemble").exists():
        subprocess.run([sys.executable, "-m", "venv", str(ME_VENV)], check=True)
        subprocess.run([ME_VENV / "bin" / "pip", "install", "--quiet", "model-ensembler"], check=True)
    templates = work / "me-templates"
    templates.mkdir()
    job = templates / "job.sh.j2"
    job.write_text(f"#!/bin/sh\nexec python3 -c '{BUSY}'\n")
    job.chmod(0o755)
    batch = {
        "name": "bench",
        "templatedir": str(templates),
        "templates": ["job.sh.j2"],
        "job_file": "job.sh",
        "cluster": "dummy",
        "basedir": str(work / "me-runs"),
        "maxruns": 2,
        "maxjobs": 2,
        "repeat": False,
        "pre_batch": [],
        "pre_run": [],
        "post_run": [],
        "post_batch": [],
        "runs": [{"id": i} for i in range(members)],
    }
    config = work / "me.yml"
    config.write_text(
        yaml.safe_dump(
            {"ensemble": {"vars": {}, "pre_process": [], "post_process": [], "batch_config": {}, "batches": [batch]}}
        )
    )
    start = time.perf_counter()
    subprocess.run(
        [
            ME_VENV / "bin" / "model_ensemble",
            "-ct",
            "1",
            "-st",
            "1",
            "-rt",
            "1",
            "-et",
            "1",
            "-ms",
            "0",
            str(config),
            "dummy",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=3600,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--overhead-members", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rompy-ens-bench-") as tmp:
        work = Path(tmp)
        ours_makespan(2, work, ["true"], "warmup")  # starts the API before timing
        floor = xargs_makespan(args.members)
        ours = ours_makespan(args.members, work, COMMAND, "busy")
        theirs = model_ensembler_makespan(args.members, work)
        many = ours_makespan(args.overhead_members, work, ["true"], "many")
        xargs_true_start = time.perf_counter()
        subprocess.run(
            ["xargs", "-P", "2", "-I{}", "true"],
            input="\n".join(map(str, range(args.overhead_members))),
            text=True,
            check=True,
        )
        xargs_true = time.perf_counter() - xargs_true_start
    print(f"{args.members} members x 1 s CPU-bound, 2 at a time, makespan:")
    print(f"  xargs -P 2 (floor)   {floor:7.2f} s")
    print(f"  rompy-tasks ensemble {ours:7.2f} s   {ours / floor:5.2f}x floor")
    if theirs is not None:
        print(
            f"  model-ensembler      {theirs:7.2f} s   {theirs / floor:5.2f}x floor   "
            f"(rompy-tasks / model-ensembler {ours / theirs:5.2f}x)"
        )
    print(
        f"{args.overhead_members} members of `true`, 2 at a time: {many:7.2f} s, "
        f"{(many - xargs_true) / args.overhead_members * 1000:6.0f} ms orchestration overhead per member "
        f"({many / args.overhead_members * 2 * 1000:.0f} ms per member per slot)"
    )


if __name__ == "__main__":
    main()
