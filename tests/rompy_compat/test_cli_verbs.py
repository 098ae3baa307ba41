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
