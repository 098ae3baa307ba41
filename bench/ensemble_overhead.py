"""`rompy-tasks ensemble` against its floor, `xargs -P 2`, on the same commands.

1. N members (default 64) of a 1 s CPU-bound command, 2 at a time on this 2-core machine:
   rompy-tasks, `xargs -P 2`, and model-ensembler (PyPI, dummy backend, polling at its 1 s
   minimum; installed into .bench-venv/ on first use; `--no-model-ensembler` skips it).
2. Orchestration overhead per member at M members (default 500) of `true`.
3. Optionally (`--huge 5000`) H members of `true`, with the server's /api/health polled
   throughout: the slowest answer must stay under 1 s.

Each rompy-tasks figure is the whole `rompy-tasks ensemble FILE` process, as a user runs it
with no Prefect configured (the reused local server and the warm command process are started
before timing, as for a user's second command).

    .venv/bin/python bench/ensemble_overhead.py [--members 64] [--overhead-members 500] [--huge 5000]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml
from common import RT, shell_ensemble_file, stop_server, timed, user_env, wait_warm

REPO = Path(__file__).resolve().parent.parent
BUSY = "import time\nt = time.perf_counter() + 1\nwhile time.perf_counter() < t: pass"
COMMAND = ["python3", "-c", BUSY]
ME_VENV = REPO / ".bench-venv" / "model-ensembler"


def ours(work: Path, env: dict[str, str], name: str, members: int, command: list[str]) -> float:
    return timed([RT, "ensemble", str(shell_ensemble_file(work, name, members, command))], work, env)


def xargs(members: int, command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", "2", "-I{}", *command], input="\n".join(map(str, range(members))), text=True, check=True
    )
    return time.perf_counter() - start


def model_ensembler(members: int, work: Path) -> float | None:
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
        "name": "bench", "templatedir": str(templates), "templates": ["job.sh.j2"], "job_file": "job.sh",
        "cluster": "dummy", "basedir": str(work / "me-runs"), "maxruns": 2, "maxjobs": 2, "repeat": False,
        "pre_batch": [], "pre_run": [], "post_run": [], "post_batch": [], "runs": [{"id": i} for i in range(members)],
    }  # fmt: skip
    config = work / "me.yml"
    config.write_text(
        yaml.safe_dump(
            {"ensemble": {"vars": {}, "pre_process": [], "post_process": [], "batch_config": {}, "batches": [batch]}}
        )
    )
    flags = ["-ct", "1", "-st", "1", "-rt", "1", "-et", "1", "-ms", "0"]
    start = time.perf_counter()
    subprocess.run(
        [ME_VENV / "bin" / "model_ensemble", *flags, str(config), "dummy"],
        check=True, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600,
    )  # fmt: skip
    return time.perf_counter() - start


def health_during(work: Path, env: dict[str, str], members: int) -> tuple[float, float]:
    """Makespan of `members` x `true` and the slowest /api/health answer while it ran."""
    state = json.loads((work / "data" / "rompy-tasks" / "server" / "server.json").read_text())
    url = f"http://127.0.0.1:{state['port']}/api/health"
    slowest, stop = [0.0], threading.Event()

    def poll() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                urllib.request.urlopen(url, timeout=30).read()
            except OSError:
                pass
            slowest[0] = max(slowest[0], time.perf_counter() - start)
            time.sleep(0.25)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        makespan = ours(work, env, "huge", members, ["true"])
    finally:
        stop.set()
        poller.join()
    return makespan, slowest[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--overhead-members", type=int, default=500)
    parser.add_argument("--huge", type=int, default=0, help="also run this many members of `true` (e.g. 5000)")
    parser.add_argument("--no-model-ensembler", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rompy-ens-bench-") as tmp:
        work = Path(tmp)
        env = user_env(work)
        try:
            subprocess.run([RT, "server", "start"], env=env, check=True, stdout=subprocess.DEVNULL)
            ours(work, env, "warmup", 2, ["true"])
            wait_warm(env)  # as for a user's second command
            floor = xargs(args.members, COMMAND)
            busy = ours(work, env, "busy", args.members, COMMAND)
            theirs = None if args.no_model_ensembler else model_ensembler(args.members, work)
            empty = timed([RT, "ensemble", str(shell_ensemble_file(work, "one", 1, ["true"]))], work, env)
            many = ours(work, env, "many", args.overhead_members, ["true"])
            floor_true = xargs(args.overhead_members, ["true"])
            huge = health_during(work, env, args.huge) if args.huge else None
        finally:
            stop_server(env)
    print(f"{args.members} members x 1 s CPU-bound, 2 at a time, whole-command makespan:")
    print(f"  xargs -P 2 (floor)     {floor:7.2f} s")
    print(f"  rompy-tasks ensemble   {busy:7.2f} s   {busy / floor:5.2f}x floor")
    if theirs is not None:
        print(f"  model-ensembler        {theirs:7.2f} s   {theirs / floor:5.2f}x floor")
    per_member = (many - empty - floor_true) / args.overhead_members * 1000
    print(
        f"{args.overhead_members} members of `true`, 2 at a time: {many:.2f} s (xargs {floor_true:.2f} s); "
        f"one-member ensemble {empty:.2f} s; orchestration overhead {per_member:.1f} ms a member"
    )
    if huge:
        print(f"{args.huge} members of `true`: {huge[0]:.1f} s; slowest /api/health answer meanwhile {huge[1]:.2f} s")


if __name__ == "__main__":
    main()
