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


def test_rompys_slurm_command_runs_once_in_the_job_as_written(cluster, prefect_api, tmp_path):
    """rompy's slurm `command` is a line of its job script: run once (the author writes srun when
    wanted), through a shell with `shell: true`; before, slurm rejected `command`."""
    backend = {
        "type": "slurm",
        "queue": cluster,
        "time_limit": "00:10:00",
        "ntasks": 2,
        "shell": True,
        "command": 'echo "job $SLURM_JOB_ID" >> ran.txt && test -s INPUT',
    }
    template = tmp_path / "template"
    template.mkdir()
    (template / "INPUT").write_text("generated\n")
    # the model's own command (`false`) is replaced by the backend's, never run
    doc = shell_doc(tmp_path, ["false"], run_id="slurmcmd", backend=backend, template=str(template))
    path = write_yaml(tmp_path / "p.yaml", doc)
    result = run_cli("run", str(path), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    job_id = (tmp_path / "runs" / "slurmcmd" / "logs" / "slurm-job").read_text().strip()
    assert (tmp_path / "runs" / "slurmcmd" / "ran.txt").read_text() == f"job {job_id}\n", "once, not once per task"
