"""Multi-rank MPI runs (issue 37.1): Veros with mpi4py on two ranks, locally (Open MPI's mpiexec),
on SLURM (srun through PMIx) and in Docker (mpiexec in the image scripts/docker-engine builds),
from the user's command with the shipped backend files; outputs equal to the one-rank run within
the model's solver tolerance; a rank that dies ends the whole job.
"""

import importlib.util
import shutil
import subprocess
import time

import numpy as np
import pytest
import xarray as xr
from conftest import REPO, process_gone, run_cli
from helpers import VEROS_IMAGE, shell_doc, write_yaml

from rompy_tasks.backends.docker import RUN_LABEL

DEMO = REPO / "examples" / "veros-acc" / "pipeline.yaml"
BACKENDS = REPO / "examples" / "backends"


def _mpi_ready() -> str | None:
    if shutil.which("mpiexec") is None or importlib.util.find_spec("mpi4py") is None:
        return "no MPI (scripts/setup-mpi installs Open MPI and mpi4py as root)"
    probe = "import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)"
    if subprocess.run([REPO / ".venv/bin/python", "-c", probe]).returncode != 0:
        return "h5py without parallel HDF5 (scripts/setup-mpi builds it as root)"
    return None


pytestmark = pytest.mark.skipif(bool(_mpi_ready()), reason=_mpi_ready() or "")


def _demo(tmp_path, prefect_api: str, run_id: str, backend: str | None, *sets: str):
    args = ["run", str(DEMO), "--set", "config.period.duration=2d", "--set", f"config.run_id={run_id}",
            "--set", "postprocessor=[]", *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    if backend:
        args += ["--backend-config", str(BACKENDS / f"{backend}.yaml")]
    ran = run_cli(*args, env={"PREFECT_API_URL": prefect_api, "ROMPY_TASKS_OUTPUT": str(tmp_path)}, timeout=600)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    return tmp_path / run_id


def _same_within_solver_tolerance(one, two) -> float:
    """The largest difference between the runs' snapshot fields, relative to each field's magnitude."""
    worst = 0.0
    with xr.open_dataset(one / "acc.snapshot.nc") as a, xr.open_dataset(two / "acc.snapshot.nc") as b:
        assert set(a.data_vars) == set(b.data_vars) and a.sizes == b.sizes
        for name in a.data_vars:
            if a[name].dtype.kind != "f" or a[name].size == 0:
                continue
            x, y = a[name].values, b[name].values
            scale = max(float(np.nanmax(np.abs(x))), 1e-30)
            worst = max(worst, float(np.nanmax(np.abs(x - y))) / scale)
    return worst


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory, prefect_api):
    return _demo(tmp_path_factory.mktemp("one"), prefect_api, "one-rank", None)


@pytest.mark.veros
def test_veros_on_two_local_ranks_equals_one_rank(one_rank, tmp_path, prefect_api):
    two = _demo(tmp_path, prefect_api, "two-local", "local-mpi", "config.config.num_proc=[2,1]")
    log = (two / "logs" / "run.log").read_text()
    assert "mpiexec -n 2" in log.splitlines()[0], log[:500]
    assert _same_within_solver_tolerance(one_rank, two) < 1e-8, "two ranks agree with one (1e-10 measured)"


@pytest.mark.veros
@pytest.mark.slurm
def test_veros_on_two_slurm_ranks_equals_one_rank(cluster, one_rank, tmp_path, prefect_api):
    two = _demo(tmp_path, prefect_api, "two-slurm", "slurm-mpi", "config.config.num_proc=[2,1]")
    first = (two / "logs" / "run.log").read_text().splitlines()[0]
    assert "srun --ntasks=2" in first and "--mpi=pmix" in first, first
    assert _same_within_solver_tolerance(one_rank, two) < 1e-8


@pytest.mark.veros
def test_veros_on_two_docker_ranks_equals_one_rank(engine, one_rank, tmp_path, prefect_api):
    two = _demo(tmp_path, prefect_api, "two-docker", "docker-mpi", "config.config.num_proc=[2,1]")
    log = (two / "logs" / "run.log").read_text()
    assert "mpiexec -n 2" in log.splitlines()[0], log[:500]
    assert _same_within_solver_tolerance(one_rank, two) < 1e-8


def test_a_decomposition_the_backend_does_not_start_is_invalid(tmp_path):
    ran = run_cli("validate", str(DEMO), "--set", "config.config.num_proc=[2,1]")
    assert ran.returncode == 2 and "config.config.num_proc: the model is decomposed into 2 MPI rank(s)" in ran.stderr
    ran = run_cli("validate", str(DEMO), "--set", "backend.mpiexec=mpiexec", "--set", "backend.ntasks=2")
    assert ran.returncode == 2 and "1 MPI rank(s) but the local backend starts 2" in ran.stderr, ran.stderr


# each rank writes its pid; rank 1 fails at once, rank 0 would run on for two minutes
DYING_RANK = (
    "echo $$ >> pids.txt; r=$OMPI_COMM_WORLD_RANK$SLURM_PROCID; "
    'if [ "$r" = 1 ]; then sleep 1; echo "rank 1 dies: out of memory" >&2; exit 3; fi; exec sleep 120'
)


@pytest.mark.parametrize("backend", ["local", "slurm", "docker"])
def test_a_rank_that_dies_ends_the_whole_job_with_its_message(request, tmp_path, prefect_api, backend):
    if backend == "docker":
        request.getfixturevalue("engine")
        spec = {"type": "docker", "image": VEROS_IMAGE, "pull_policy": "never", "mpiexec": "mpiexec", "cpu": 2,
                "timeout": 300}  # fmt: skip
    elif backend == "slurm":
        request.getfixturevalue("cluster")
        spec = {"type": "slurm", "queue": "debug", "ntasks": 2, "timeout": 300}
    else:
        spec = {"type": "local", "mpiexec": "mpiexec", "ntasks": 2, "timeout": 300}
    doc = shell_doc(tmp_path, ["sh", "-c", DYING_RANK], backend=spec)
    started = time.monotonic()
    ran = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    took = time.monotonic() - started
    assert ran.returncode == 1 and "rank 1 dies: out of memory" in ran.stderr, ran.stderr[-3000:]
    assert took < 90, f"the job ended with its rank ({took:.0f} s), not after the other rank's two minutes"
    pids = [int(p) for p in (tmp_path / "runs" / "r" / "pids.txt").read_text().split()]
    assert len(pids) == 2
    if backend == "docker":  # the ranks' pids are the container's: the container is what must be gone
        client = request.getfixturevalue("engine")
        assert not client.containers.list(all=True, filters={"label": f"{RUN_LABEL}=r"}), "the container is gone"
        return
    deadline = time.monotonic() + 20
    while not all(process_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(process_gone(pid) for pid in pids), "no rank is left running"
