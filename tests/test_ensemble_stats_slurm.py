"""Ensemble statistics computed on SLURM worker jobs sized for the reduction, not in the submitting
process: the user's command in a fresh process, on the local one-node cluster."""

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import CLI, wait_queue_empty

pytestmark = pytest.mark.slurm

MEMBER = (
    "import numpy as np, xarray as xr; rng = np.random.default_rng({{ config.parameters.seed }}); "
    "xr.Dataset({'hs': (('time', 'y', 'x'), rng.gamma(2.0, 1.0, (6, 40, 50)).astype('f4'))}, "
    "coords={'time': np.arange(6.0)}).to_netcdf('waves.nc')"
)


def stats_ensemble(tmp_path, queue: str) -> dict:
    return {
        "name": "waves",
        "pipeline": {
            "config": {
                "run_id": "w",
                "output_dir": str(tmp_path),
                "period": {"start": "2026-01-01", "duration": "1h"},
                "config": {"model_type": "shell", "command": [sys.executable, "-c", MEMBER], "parameters": {}},
            },
            "backend": {"type": "slurm", "queue": queue, "time_limit": "00:10:00", "max_jobs": 2, "launcher": "none"},
        },
        "members": {"n": 4, "seed_field": "config.config.parameters.seed", "seed_start": 10},
        "max_parallel": 4,
        "postprocessor": [
            {
                "processor": "ensemble_stats",
                "file": "waves.nc",
                "variables": ["hs"],
                "quantiles": [0.1, 0.9],
                "thresholds": {"hs": [2.0, 4.0]},
                "workers": {"jobs": 1, "cores": 1, "memory": "1G", "time_limit": "00:10:00"},
            }
        ],
    }


def run_ensemble(path, prefect_api, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    return subprocess.run(
        [*CLI, "-v", "ensemble", str(path)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_statistics_computed_on_slurm_worker_jobs_match_the_members(cluster, prefect_api, tmp_path):
    path = tmp_path / "ensemble.yaml"
    path.write_text(yaml.safe_dump(stats_ensemble(tmp_path, cluster)))
    first = run_ensemble(path, prefect_api, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "statistics computed on 1 SLURM worker job(s)" in first.stderr, first.stderr[-3000:]
    where = tmp_path / "waves"
    members = np.stack([xr.open_dataset(where / f"w_m{i:03d}" / "waves.nc")["hs"].values for i in range(4)])
    with xr.open_dataset(where / "stats" / "ensemble_stats.nc") as stats:
        np.testing.assert_allclose(stats["hs_mean"].values, members.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(stats["hs_spread"].values, members.std(axis=0), rtol=1e-5)
        np.testing.assert_allclose(stats["hs_quantile"].values, np.quantile(members, [0.1, 0.9], axis=0), rtol=1e-5)
        np.testing.assert_allclose(stats["hs_exceedance"].values[1], (members > 4.0).mean(axis=0), rtol=1e-6)
    assert wait_queue_empty(), "the statistics' worker jobs left the queue"

    # every member already complete: the statistics still go to worker jobs
    (where / "stats" / "ensemble_stats.nc").unlink()
    again = run_ensemble(path, prefect_api, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 member(s) to run, 4 already complete" in again.stderr
    assert "statistics computed on 1 SLURM worker job(s)" in again.stderr
    assert (where / "stats" / "ensemble_stats.nc").is_file()
    assert wait_queue_empty()


def test_workers_on_a_backend_without_batch_jobs_are_invalid(tmp_path):
    doc = stats_ensemble(tmp_path, "debug")
    doc["pipeline"]["backend"] = {"type": "local"}
    path = tmp_path / "ensemble.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = subprocess.run([*CLI, "ensemble", "validate", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "postprocessor[0].workers" in result.stderr, result.stderr
