"""The docker backend against a real Docker engine (started by scripts/docker-engine)."""

import importlib.metadata
import os
import signal
import subprocess
import time
import uuid

import numpy as np
import pytest
import xarray as xr
from conftest import REPO, run_cli
from helpers import VEROS_IMAGE, shell_model_run, signal_cli_once, write_yaml
from pydantic import ValidationError

from rompy_tasks.backends.docker import RUN_LABEL, DockerConfig, run_container
from rompy_tasks.core.errors import BackendError, ModelRunError, RunTimeoutError

BASE_IMAGE = "rompy-tasks/base:bookworm"


def containers_for(client, run_id):
    return client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


# --- validation: every seed rule -------------------------------------------------------------


def problems(**fields):
    with pytest.raises(ValidationError) as info:
        DockerConfig(**fields)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}


def test_exactly_one_of_image_or_dockerfile(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    assert DockerConfig(image="x:1").image == "x:1"
    assert DockerConfig(dockerfile=dockerfile).dockerfile == dockerfile
    assert "exactly one" in str(problems())
    assert "exactly one" in str(problems(image="x:1", dockerfile=dockerfile))


def test_dockerfile_and_build_context_must_exist(tmp_path):
    assert "dockerfile" in problems(dockerfile=tmp_path / "nope")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    assert "build_context" in problems(dockerfile=dockerfile, build_context=tmp_path / "missing")
    assert DockerConfig(dockerfile=dockerfile, build_context=tmp_path, build_args={"V": "1"}).build_args == {"V": "1"}


@pytest.mark.parametrize("cpu", [1, 2, 128])
def test_cpu_in_range_accepted(cpu):
    assert DockerConfig(image="x", cpu=cpu).cpu == cpu


@pytest.mark.parametrize("cpu", [0, 129, -1])
def test_cpu_out_of_range_rejected(cpu):
    assert "cpu" in problems(image="x", cpu=cpu)


@pytest.mark.parametrize("memory", ["512m", "2g", "4G", "1024k", "268435456"])
def test_memory_forms_accepted(memory):
    assert DockerConfig(image="x", memory=memory).memory == memory


@pytest.mark.parametrize("memory", ["2 GB", "lots", "-1g", "1.5g", "g"])
def test_memory_forms_rejected(memory):
    assert "memory" in problems(image="x", memory=memory)


def test_volumes_format_mode_and_host_path(tmp_path):
    ok = DockerConfig(image="x", volumes=[f"{tmp_path}:/data", f"{tmp_path}:/in:ro", f"{tmp_path}:/out:rw"])
    assert len(ok.volumes) == 3
    for spec, message in [
        ("/only-one-part", "host:container"),
        (f"{tmp_path}:/data:rx", "mode must be ro or rw"),
        (f"{tmp_path}:relative", "absolute"),
        (f"{tmp_path / 'missing'}:/data", "does not exist"),
        (f"{tmp_path}:/rompy/run", "run directory is mounted"),
    ]:
        assert message in problems(image="x", volumes=[spec])["volumes"], spec


def test_user_pull_policy_and_inherited_base_rules(tmp_path):
    assert DockerConfig(image="x", user="root").user == "root"
    assert DockerConfig(image="x", user="1000:1000").user == "1000:1000"
    assert "user" in problems(image="x", user="bad user;rm")
    assert "pull_policy" in problems(image="x", pull_policy="sometimes")
    found = problems(image="x", timeout=10, env_vars={"N": 1}, working_dir=tmp_path / "nope")
    assert {"timeout", "env_vars.N", "working_dir"} <= set(found)
    defaults = DockerConfig(image="x")
    assert (defaults.pull_policy, defaults.remove_container, defaults.network) == ("if-missing", True, "none")


def test_default_user_is_never_root():
    user = DockerConfig(image="x").container_user()
    assert user not in {"root", "0", "0:0"}
    assert DockerConfig(image="x", user="root").container_user() == "root"


def test_mpiexec_and_executable_shape_the_command(tmp_path):
    run = shell_model_run(tmp_path, ["model", f"{tmp_path}/dock/input.nml"], run_id="dock")
    config = DockerConfig(image="x", cpu=4, executable="/opt/bin/model", mpiexec="mpiexec")
    assert config.container_command(run) == ["mpiexec", "-n", "4", "/opt/bin/model", "/rompy/run/input.nml"]


def test_json_schema_export():
    schema = DockerConfig.model_json_schema()
    assert schema["properties"]["cpu"]["maximum"] == 128
    assert schema["properties"]["type"]["const"] == "docker"


# --- clear errors before anything starts ------------------------------------------------------


def test_unreachable_engine_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    run = shell_model_run(tmp_path, "true", run_id="dock")
    with pytest.raises(BackendError, match="Docker engine unreachable"):
        DockerConfig(image=VEROS_IMAGE).execute(run)
    assert not (run.staging_dir / "logs" / "run.log").exists(), "nothing started"


def test_missing_image_with_pull_never(engine, tmp_path):
    run = shell_model_run(tmp_path, "true", run_id="dock")
    with pytest.raises(BackendError, match="not on this Docker engine"):
        DockerConfig(image="rompy-tasks/no-such-image:0", pull_policy="never").execute(run)


def test_missing_image_that_cannot_be_pulled(engine, tmp_path):
    run = shell_model_run(tmp_path, "true", run_id="dock")
    with pytest.raises(BackendError, match="cannot pull"):
        DockerConfig(image="rompy-tasks/no-such-image:0").execute(run)


def test_volume_host_path_removed_after_validation(engine, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    config = DockerConfig(image=VEROS_IMAGE, volumes=[f"{data}:/data:ro"])
    data.rmdir()
    run = shell_model_run(tmp_path, "true", run_id="dock")
    with pytest.raises(BackendError, match="does not exist"):
        config.execute(run)
    assert not containers_for(engine, "dock")


# --- execution --------------------------------------------------------------------------------


def test_limits_user_env_and_mount_are_applied(engine, tmp_path):
    # the limits as the kernel enforces them, cgroup v2 or v1
    cgroup_limits = (
        "if [ -f /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max; else "
        "echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; fi"
    )
    command = ["sh", "-c", f"{cgroup_limits}; id -u; pwd; echo $GREETING; echo written > from-container.txt"]
    run = shell_model_run(tmp_path, command, run_id="limits")
    lines: list[str] = []
    result = DockerConfig(image=VEROS_IMAGE, cpu=1, memory="256m", env_vars={"GREETING": "hello"}, timeout=120).execute(
        run, on_line=lines.append
    )
    assert lines[:5] == ["100000 100000", str(256 * 1024 * 1024), "1000", "/rompy/run", "hello"]
    assert (run.staging_dir / "from-container.txt").read_text() == "written\n"
    assert result.details["container_id"] and result.details["image"] == VEROS_IMAGE
    assert not containers_for(engine, "limits"), "removed after success"


def test_containers_are_hardened_even_for_root(engine, tmp_path):
    """No privilege gain, no capabilities, a process limit, and an init as PID 1 (issues 11.4, 15.5)."""
    probe = (
        "grep -E '^(NoNewPrivs|CapEff):' /proc/self/status | tr -s '\t ' ' '; cat /proc/1/comm; "
        "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
    )
    run = shell_model_run(tmp_path, ["sh", "-c", probe], run_id="hardened")
    lines: list[str] = []
    DockerConfig(image=VEROS_IMAGE, user="root", pids_limit=256).execute(run, on_line=lines.append)
    assert lines == ["CapEff: 0000000000000000", "NoNewPrivs: 1", "docker-init", "256"]


def test_cancel_reaches_the_model_at_once(engine, tmp_path):
    """With an init as PID 1 a SIGTERM-respecting model stops without waiting out the grace period."""
    import threading

    run = shell_model_run(tmp_path, ["sleep", "300"], run_id="prompt-stop")
    config = DockerConfig(image=VEROS_IMAGE, timeout=60)
    started = threading.Event()
    outcome: list = []

    def runner():
        try:
            config.execute(run, on_line=lambda line: started.set())
        except BaseException as err:  # noqa: BLE001 - the timeout error is the expected outcome
            outcome.append(err)

    containers_before = {c.id for c in engine.containers.list()}
    thread = threading.Thread(target=runner)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (set(c.id for c in engine.containers.list()) - containers_before):
        time.sleep(0.1)
    (container,) = [c for c in engine.containers.list() if c.id not in containers_before]
    begin = time.monotonic()
    container.stop(timeout=10)
    stopped_in = time.monotonic() - begin
    thread.join(timeout=60)
    assert stopped_in < 3, f"stop took {stopped_in:.1f} s (an init forwards SIGTERM to the model)"


def test_root_only_when_explicit(engine, tmp_path):
    run = shell_model_run(tmp_path, ["id", "-u"], run_id="rooted")
    lines: list[str] = []
    DockerConfig(image=VEROS_IMAGE, user="root").execute(run, on_line=lines.append)
    assert lines == ["0"]


def test_nonzero_exit_raises_with_tail_and_keeps_container_if_asked(engine, tmp_path):
    run = shell_model_run(tmp_path, ["sh", "-c", "echo 'blew up at step 3'; exit 9"], run_id="failing")
    with pytest.raises(ModelRunError) as info:
        DockerConfig(image=VEROS_IMAGE, remove_container=False).execute(run)
    assert info.value.exit_code == 9
    assert any("blew up at step 3" in line for line in info.value.log_tail)
    kept = containers_for(engine, "failing")
    assert len(kept) == 1 and kept[0].attrs["State"]["ExitCode"] == 9
    kept[0].remove(force=True)


def test_timeout_stops_and_removes_the_container(engine, tmp_path):
    run = shell_model_run(tmp_path, "true", run_id="slow")
    image = engine.images.get(VEROS_IMAGE)
    start = time.monotonic()
    with pytest.raises(RunTimeoutError):
        run_container(engine, DockerConfig(image=VEROS_IMAGE), image, ["sleep", "300"], run, timeout=3, grace=1)
    assert time.monotonic() - start < 30
    assert not containers_for(engine, "slow"), "no container left behind"


def test_dockerfile_is_built_once_and_reused(engine, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    nonce = uuid.uuid4().hex  # a fresh context: this test's build is never cached from an earlier one
    (context / "message.txt").write_text(f"from the build context {nonce}\n")
    (context / "Dockerfile").write_text(
        f'FROM {BASE_IMAGE}\nARG FLAVOUR\nCOPY message.txt /message.txt\nRUN echo "$FLAVOUR" >> /message.txt\n'
    )
    config = DockerConfig(dockerfile=context / "Dockerfile", build_args={"FLAVOUR": "vanilla"})
    for run_id in ("build1", "build2"):
        run = shell_model_run(tmp_path, ["cat", "/message.txt"], run_id=run_id)
        lines: list[str] = []
        result = config.execute(run, on_line=lines.append)
        assert lines[-2:] == [f"from the build context {nonce}", "vanilla"]
        assert result.details["image"].startswith("rompy-tasks-build:")
    assert (tmp_path / "build1" / "logs" / "build.log").exists()
    assert not (tmp_path / "build2" / "logs" / "build.log").exists(), "second run reused the image"


@pytest.mark.veros
def test_veros_in_docker_matches_the_local_backend(engine, prefect_api, tmp_path):
    from flows.pipeline import model_pipeline
    from rompy_tasks.pipeline import validate_data

    def pipeline(run_id, backend):
        return validate_data(
            {
                "config": {
                    "run_id": run_id,
                    "output_dir": str(tmp_path),
                    "period": {"start": "2026-01-01", "duration": "2d"},
                    "config": {"model_type": "veros", "setup": "acc", "diagnostics": {"snapshot": 86400}},
                },
                "backend": backend,
                "postprocessor": ["noop"],
            }
        )

    local = model_pipeline(pipeline=pipeline("local", {"type": "local"}))
    assert local.run.backend == "local"
    docked = model_pipeline(
        pipeline=pipeline("docked", {"type": "docker", "image": VEROS_IMAGE, "cpu": 1, "memory": "2g"})
    )
    assert docked.run.backend == "docker" and docked.run.details["container_id"]
    assert "container rompy-docked-" in (tmp_path / "docked" / "logs" / "run.log").read_text()
    names = sorted(p.name for p in (tmp_path / "local").glob("acc*"))
    assert names == sorted(p.name for p in (tmp_path / "docked").glob("acc*"))
    with (
        xr.open_dataset(tmp_path / "local" / "acc.snapshot.nc") as a,
        xr.open_dataset(tmp_path / "docked" / "acc.snapshot.nc") as b,
    ):
        for var in ("temp", "salt", "u", "psi"):
            np.testing.assert_allclose(a[var].values, b[var].values, rtol=1e-10, atol=1e-12, err_msg=var)


def test_sigterm_to_the_cli_stops_the_container(engine, prefect_api, tmp_path):
    run_id = f"cancel-{uuid.uuid4().hex[:8]}"
    doc = {
        "config": {
            "run_id": run_id,
            "output_dir": str(tmp_path),
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": ["sh", "-c", "echo started; sleep 300"]},
        },
        "backend": {"type": "docker", "image": VEROS_IMAGE, "timeout": 600},
    }
    log = tmp_path / run_id / "logs" / "run.log"
    started = lambda: log.exists() and "\nstarted\n" in log.read_text() and containers_for(engine, run_id)  # noqa: E731
    path = write_yaml(tmp_path / "p.yaml", doc)
    assert signal_cli_once(("run", str(path)), prefect_api, started, signal.SIGTERM) != 0
    assert not containers_for(engine, run_id), "SIGTERM stopped and removed the container"


def test_docker_work_pool_runs_the_whole_pipeline_in_a_container(engine, tmp_path):
    """prefect server + docker worker + `prefect deploy` of deployments/docker/prefect.yaml."""
    from services import prefect_cli, prefect_server, prefect_worker

    flow_image = f"rompy-tasks/flow:{importlib.metadata.version('rompy-tasks')}"
    if os.getuid() == 0:  # (re)build from this checkout; cached layers make an unchanged build quick
        subprocess.run([REPO / "scripts" / "docker-engine", "flow-image"], check=True)
    elif not engine.images.list(name=flow_image):
        pytest.skip(f"{flow_image} is not built and we are not root to build it")
    runs = tmp_path / "runs"
    runs.mkdir()
    os.chown(runs, 1000, 1000) if os.getuid() == 0 else runs.chmod(0o777)
    with prefect_server(tmp_path / "home", tmp_path / "server.log") as env:
        env["ROMPY_TASKS_RUNS"] = str(runs)
        created = prefect_cli(
            "work-pool", "create", "rompy-docker", "--type", "rompy-tasks-docker", env=env, cwd=REPO
        )  # our docker worker (flows/worker.py)
        assert created.returncode == 0, (created.stdout + created.stderr)[-3000:]
        deployed = prefect_cli(
            "deploy", "--prefect-file", "deployments/docker/prefect.yaml", "--all", env=env, cwd=REPO
        )
        assert deployed.returncode == 0, (deployed.stdout + deployed.stderr)[-3000:]
        narrowed = run_cli("deployments", "narrow-forms", env=env)
        assert "narrowed the run form of veros-acc-docker: overrides config.run_id" in narrowed.stdout, narrowed
        refused = prefect_cli(
            "deployment", "run", "model-pipeline/veros-acc-docker",
            "--param", 'overrides={"backend.command": "touch /tmp/x"}', env=env, cwd=REPO,
        )  # fmt: skip
        assert refused.returncode != 0 and "'backend.command' does not match" in refused.stdout, refused.stdout
        with prefect_worker("rompy-docker", "rompy-tasks-docker", env, tmp_path / "worker.log"):
            # issue 36.3: a run of the locked deployment may not mount the host or change the image
            hostile = prefect_cli(
                "deployment", "run", "model-pipeline/veros-acc-docker", "--watch", "--watch-timeout", "120",
                "--job-variable", 'volumes=["/:/host"]', "--job-variable", "privileged=true", env=env, cwd=REPO,
            )  # fmt: skip
            assert "Refused" in hostile.stdout + hostile.stderr, (hostile.stdout + hostile.stderr)[-2000:]
            ran = prefect_cli(
                "deployment",
                "run",
                "model-pipeline/veros-acc-docker",
                "--watch",
                "--watch-timeout",
                "300",
                env=env,
                cwd=REPO,
            )
    worker_log = (tmp_path / "worker.log").read_text()
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-2000:] + worker_log[-3000:]
    assert "Completed" in ran.stdout
    staging = runs / "veros-acc-docker-pool"
    assert (staging / "acc.energy.nc").exists() and (staging / "analysis" / "summary.json").exists()
    assert (staging / "archive" / "manifest.json").exists()
    assert "Integration done" in (staging / "logs" / "run.log").read_text()
    assert not engine.containers.list(all=True, filters={"ancestor": flow_image}), "auto-removed"
