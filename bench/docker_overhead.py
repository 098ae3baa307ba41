"""Per-run overhead of the docker backend against a plain `docker run` of the same work.

Three timings of `true`: plain `docker run`, the backend's `execute` (its own cost), and the
whole `rompy-tasks run FILE` with the docker backend, as a user runs it (the reused local
server started before timing). Plain and backend both run `true` (and a 2-day Veros ACC run)
in rompy-tasks/veros:<version>, with no network, 1 CPU and
the container removed afterwards; the backend additionally checks the engine and image,
mounts the run directory, applies limits and streams logs. Needs scripts/docker-engine.

    .venv/bin/python bench/docker_overhead.py [--runs 7]
"""

import argparse
import importlib.metadata
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from common import RT, median, stop_server, timed, user_env

from rompy_tasks.backends.docker import DockerConfig
from rompy_tasks.plugins import model_run_class

IMAGE = f"rompy-tasks/veros:{importlib.metadata.version('veros')}"


def plain_docker(command: list[str], workdir: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--cpus",
            "1",
            "--user",
            "1000:1000",
            "-v",
            f"{workdir}:/rompy/run",
            "-w",
            "/rompy/run",
            IMAGE,
            *command,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def backend(model: dict, work: Path, index: int, days: str = "1h") -> float:
    run = model_run_class()(
        run_id=f"b{index}", output_dir=work, period={"start": "2026-01-01", "duration": days}, config=model
    )
    run.prepare_staging()
    run.config.generate(run, run.staging_dir)
    start = time.perf_counter()
    DockerConfig(image=IMAGE, pull_policy="never").execute(run)
    return time.perf_counter() - start


def cli_run(work: Path, env: dict[str, str], index: int) -> float:
    """The user's command: `rompy-tasks run` of a `true` pipeline on the docker backend."""
    path = work / f"cli{index}.yaml"
    doc = {
        "config": {
            "run_id": f"cli{index}",
            "output_dir": str(work / "cli"),
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": "true"},
        },
        "backend": {"type": "docker", "image": IMAGE, "pull_policy": "never"},
        "postprocessor": [],
    }
    path.write_text(yaml.safe_dump(doc))
    return timed([RT, "run", str(path)], work, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rompy-docker-bench-") as tmp:
        work = Path(tmp)
        subprocess.run(["chmod", "777", str(work)], check=True)
        env = user_env(work)
        try:
            subprocess.run([RT, "server", "start"], env=env, check=True, stdout=subprocess.DEVNULL)
            cli_true = [cli_run(work, env, i) for i in range(args.runs)]
        finally:
            stop_server(env)
        plain_true = [plain_docker(["true"], work) for _ in range(args.runs)]
        ours_true = [backend({"model_type": "shell", "command": "true"}, work, i) for i in range(args.runs)]
        veros = {"model_type": "veros", "setup": "acc"}
        ours_veros = [backend(veros, work, 100 + i, days="2d") for i in range(5)]
        setup = work / "b100"
        plain_veros = [
            plain_docker(
                [
                    "veros",
                    "run",
                    "rompy_tasks_setup.py",
                    "-s",
                    "runlen",
                    "172800",
                    "-s",
                    "identifier",
                    f"plain{i}",
                ],
                setup,
            )
            for i in range(5)
        ]
    rows = [
        ("`true`", plain_true, ours_true),
        ("Veros ACC 2 days", plain_veros, ours_veros),
    ]
    print(f"docker backend vs plain `docker run --rm` ({IMAGE}), medians:")
    for label, plain, ours in rows:
        p, o = statistics.median(plain), statistics.median(ours)
        print(
            f"  {label:18s} plain {p:6.2f} s   backend {o:6.2f} s   ratio {o / p:5.2f}x   "
            f"overhead {o - p:+6.2f} s   (n={len(plain)})"
        )
    c, p = median(cli_true), median(plain_true)
    print(f"  `true`, whole `rompy-tasks run` (docker backend): {c:6.2f} s, {c - p:+.2f} s over plain docker run")


if __name__ == "__main__":
    main()
