"""rompy's verbs and flags work with the command name changed (issue 12), in a fresh process.

Before, `rompy-tasks pipeline FILE --backend-config B --processor-config P` did not exist.
"""

from pathlib import Path

from conftest import run_cli
from helpers import shell_doc, write_yaml

FILES = Path(__file__).parent / "files"


def test_rompy_pipeline_with_backend_and_processor_files(prefect_api, tmp_path):
    doc = shell_doc(tmp_path, ["sh", "-c", 'echo "$GREETING" > out.nc'], run_id="verbs")
    del doc["backend"], doc["postprocessor"]
    path = write_yaml(tmp_path / "pipeline.yaml", doc)
    result = run_cli(
        "pipeline", str(path),
        "--backend-config", str(FILES / "backend-local.yaml"),
        "--processor-config", str(FILES / "noop.yaml"),
        "--no-cleanup", "--validate-stages",
        env={"PREFECT_API_URL": prefect_api},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_dir = tmp_path / "runs" / "verbs"
    assert (run_dir / "out.nc").read_text() == "hello from the backend file\n", "the backend file's env_vars"
    assert '"processor": "noop"' in (run_dir / "rompy_tasks_run.json").read_text(), "the processor file's noop"


def test_rompy_pipeline_reports_problems_in_the_section_files_and_starts_nothing(tmp_path):
    bad = write_yaml(tmp_path / "backend.yaml", {"type": "local", "timeout": 5})
    path = write_yaml(tmp_path / "pipeline.yaml", shell_doc(tmp_path, "true"))
    result = run_cli("pipeline", str(path), "--backend-config", str(bad))
    assert result.returncode == 2 and "backend.timeout" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


def test_rompys_backend_type_key_and_a_timeout_string_of_seconds(prefect_api, tmp_path):
    """rompy's backend example files name the backend `backend_type:`; it was refused with `type: missing`,
    and `timeout: "3600"` was refused although seconds are accepted."""
    backend = str(FILES / "backend-type-key.yaml")
    valid = run_cli("backends", "validate", backend)
    assert valid.returncode == 0 and "valid local backend config" in valid.stdout, valid.stderr
    doc = shell_doc(tmp_path, ["sh", "-c", 'echo "$GREETING" > out.txt'], run_id="backend-type")
    del doc["backend"]
    path = write_yaml(tmp_path / "pipeline.yaml", doc)
    ran = run_cli("run", str(path), "--backend-config", backend, env={"PREFECT_API_URL": prefect_api})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert (tmp_path / "runs" / "backend-type" / "out.txt").read_text() == "hello from backend_type\n"
    inline = shell_doc(tmp_path, "true", backend={"backend_type": "local", "timeout": "600"})
    assert run_cli("validate", str(write_yaml(tmp_path / "inline.yaml", inline))).returncode == 0


def test_the_core_install_says_which_extra_gives_rompys_models(tmp_path):
    """Issues 29.4 and 29.9: a file without `config:` is rompy's base model, read with rompy's
    model-run keys (not as a pipeline with the wrong schema's errors); `swan` names the extra."""
    result = run_cli("validate", str(FILES / "basic-modelrun.yaml"), env={"OUTPUT_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "Extra inputs" not in result.stderr and "run_id" not in result.stderr, result.stderr
    assert "Input tag 'base'" in result.stderr and "pip install 'rompy-tasks[rompy]'" in result.stderr
