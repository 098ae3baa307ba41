"""Validating a huge ensemble: `rompy-tasks ensemble validate` of N members (default 100,000).

Every member's whole pipeline is validated and every problem listed with its path, so the
budget (issue 27.5: 100,000 members in at most 10 s) covers the user's command, in a fresh
process, imports included. Two member shapes: a plain command, and a command templated on the
member (`{{ runtime.run_id }}`, `{{ config.parameters.seed }}`, rendered per member). The floor
is pydantic alone: the pipeline model validating the same N member mappings in a loop, after
its imports (no templates, no checks, no problem list).

    .venv/bin/python bench/ensemble_validation.py [--members 100000]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL

import yaml
from common import RT, shell_ensemble_file, user_env

TEMPLATED = ["sh", "-c", "echo {{ runtime.run_id }} {{ config.parameters.seed }} > out.txt"]

FLOOR = """
import sys, time, yaml
from rompy_tasks.plugins import pipeline_config_class
PipelineConfig = pipeline_config_class()
doc = yaml.safe_load(open(sys.argv[1]))
start = time.perf_counter()
for index in range(doc["members"]["n"]):
    PipelineConfig.model_validate({**doc["pipeline"], "config": {**doc["pipeline"]["config"], "run_id": f"m{index}"}})
print(time.perf_counter() - start)
"""


def validate(path: Path, work: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of the user's command."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [RT, "ensemble", "validate", str(path)], cwd=work, env=user_env(work), stdout=DEVNULL, stderr=DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{RT} ensemble validate {path} failed")
    return seconds, usage.ru_maxrss / 1024


def templated_file(work: Path, members: int) -> Path:
    path = shell_ensemble_file(work, "templated", members, TEMPLATED)
    doc = yaml.safe_load(path.read_text())
    doc["pipeline"]["config"]["config"]["parameters"] = {"seed": 0}
    path.write_text(yaml.safe_dump(doc))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rt-bench-") as tmp:
        work = Path(tmp)
        plain = shell_ensemble_file(work, "plain", args.members, ["sh", "-c", "echo hi > out.txt"])
        templated = templated_file(work, args.members)
        floor = float(
            subprocess.run([sys.executable, "-c", FLOOR, str(plain)], capture_output=True, text=True, check=True).stdout
        )
        print(f"{args.members} members; floor (pydantic alone, imports excluded): {floor:.2f} s")
        for name, path in (("plain command", plain), ("templated command", templated)):
            seconds, peak = validate(path, work)
            print(f"{name}: {seconds:.2f} s ({seconds / floor:.2f}x the floor), peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
