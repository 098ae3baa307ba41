"""rompy's SLURM keys reach the real cluster with rompy's meaning (issue 12).

Before, `job_name`, `output_file`, `error_file`, `mail_type`, `mail_user`, `reservation` and
`additional_options` were rejected as unknown fields.
"""

from conftest import run_cli
from helpers import shell_doc, write_yaml


def test_a_rompy_slurm_backend_file_runs_with_its_job_name_output_and_options(cluster, prefect_api, tmp_path):
    output = tmp_path / "job-%j.out"
    backend = {
        "type": "slurm",
        "queue": cluster,
        "time_limit": "00:10:00",
        "job_name": "rompy-compat",
        "output_file": str(output),
        "error_file": str(tmp_path / "job-%j.err"),
        "mail_type": "NONE",
        "additional_options": ["--comment=from-rompy"],
    }
    doc = shell_doc(tmp_path, ["sh", "-c", "echo $SLURM_JOB_NAME > job-name.txt"], run_id="compat", backend=backend)
    result = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    job_name = (tmp_path / "runs" / "compat" / "job-name.txt").read_text().strip()
    assert job_name.startswith("rompy-compat-"), job_name  # rompy's name, plus our unique suffix
    job_id = (tmp_path / "runs" / "compat" / "logs" / "slurm-job").read_text().strip()
    assert (tmp_path / f"job-{job_id}.out").is_file(), "the job's stdout went to output_file"
    assert "dask_worker" in (tmp_path / f"job-{job_id}.err").read_text(), "the job's stderr went to error_file"
