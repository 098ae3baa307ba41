"""rompy's `run CONFIG --backend-config`, `generate`, `postprocess` and `backends validate|schema|create`
with rompy's flags, on rompy's model-run files, in a fresh process (issue 12).

Before, `run` took only pipeline files, and `generate`, `postprocess` and `backends create` did not exist.
"""

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

FILES = Path(__file__).parent / "files"
BACKEND = str(FILES / "backend-local.yaml")


@pytest.fixture
def out(tmp_path, prefect_api) -> dict[str, str]:
    return {"OUTPUT_DIR": str(tmp_path / "runs"), "PREFECT_API_URL": prefect_api}


def _ok(result) -> None:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_run_a_model_run_file_with_its_backend_file(tmp_path, out):
    _ok(run_cli("run", str(FILES / "modelrun.yaml"), "--backend-config", BACKEND, env=out))
    run_dir = tmp_path / "runs" / "modelrun"
    assert (run_dir / "out.nc").read_text() == "hello from the backend file\n", "the backend file's env_vars"
    manifest = json.loads((run_dir / "rompy_tasks_run.json").read_text())
    assert manifest["pipeline"]["backend"]["timeout"] == 600
    assert manifest["pipeline"]["config"]["period"]["start"].startswith("2023-01-01T00:00:00")  # 20230101T00


def test_dry_run_generates_and_skip_generate_runs_what_was_generated(tmp_path, out):
    run_dir = tmp_path / "runs" / "modelrun"
    skipped = run_cli("run", str(FILES / "modelrun.yaml"), "--backend-config", BACKEND, "--skip-generate", env=out)
    assert skipped.returncode == 1 and "were never generated: run the generate stage first" in skipped.stderr
    assert not run_dir.exists(), "a run stage that never started leaves no (unmarked) directory behind"
    _ok(run_cli("run", str(FILES / "modelrun.yaml"), "--backend-config", BACKEND, "--dry-run", env=out))
    assert (run_dir / "logs" / "generate.log").is_file() and not (run_dir / "out.nc").exists()
    _ok(run_cli("run", str(FILES / "modelrun.yaml"), "--backend-config", BACKEND, "--skip-generate", env=out))
    assert (run_dir / "out.nc").is_file()
    both = run_cli("run", str(FILES / "modelrun.yaml"), "--dry-run", "--skip-generate", env=out)
    assert both.returncode == 2 and "--skip-generate: cannot be used with --dry-run" in both.stderr


def test_generate_into_another_output_dir_then_postprocess_with_a_processor_file(tmp_path, out):
    elsewhere = tmp_path / "elsewhere"
    _ok(run_cli("generate", str(FILES / "modelrun.yaml"), "--output-dir", str(elsewhere), env=out))
    assert (elsewhere / "modelrun" / "logs" / "generate.log").is_file()
    assert not (elsewhere / "modelrun" / "out.nc").exists() and not (tmp_path / "runs").exists()

    # nothing ran: the noop file's own validate_outputs is false, --validate-outputs checks the stage
    strict = run_cli(
        "postprocess", str(FILES / "modelrun.yaml"), "--processor-config", str(FILES / "noop.yaml"),
        "--output-dir", str(elsewhere), env=out,
    )  # fmt: skip
    assert strict.returncode == 1 and "no model outputs matching" in strict.stderr, strict.stderr[-1500:]
    _ok(
        run_cli(
            "postprocess",
            str(FILES / "modelrun.yaml"),
            "--processor-config",
            str(FILES / "noop-base-fields.yaml"),
            "--output-dir",
            str(elsewhere),
            "--no-validate",
            env=out,
        )  # fmt: skip
    )
    manifest = json.loads((elsewhere / "modelrun" / "rompy_tasks_run.json").read_text())
    assert manifest["result"]["stages_completed"] == ["postprocess"]
    assert manifest["result"]["postprocess"]["noop"]["message"] == "0 output file(s) present"


def test_backends_validate_takes_rompys_type_flags(tmp_path):
    untyped = tmp_path / "untyped.yaml"
    untyped.write_text("timeout: 600\ncommand: ls -l\n")
    assert run_cli("backends", "validate", str(untyped), "--backend-type", "local").returncode == 0
    missing = run_cli("backends", "validate", str(untyped))
    assert missing.returncode == 2 and "type: missing: name the backend in the file or with --backend-type" in (
        missing.stderr
    )
    clash = run_cli("backends", "validate", BACKEND, "--backend-type", "docker")
    assert clash.returncode == 2 and "type: the file says 'local' but --backend-type is 'docker'" in clash.stderr
    processor = run_cli("backends", "validate", str(FILES / "noop-base-fields.yaml"), "--processor-type", "noop")
    assert processor.returncode == 0 and "valid noop postprocessor config" in processor.stdout


def test_backends_schema_as_yaml_and_create_writes_files_that_validate(tmp_path):
    schema = run_cli("backends", "schema", "--backend-type", "slurm", "--format", "yaml")
    assert schema.returncode == 0 and "job_name" in yaml.safe_load(schema.stdout)["properties"]
    for backend in ("local", "docker", "slurm"):
        for extra in ([], ["--with-examples"]):
            target = tmp_path / f"{backend}{len(extra)}.yaml"
            created = run_cli("backends", "create", "--backend-type", backend, "--output", str(target), *extra)
            assert created.returncode == 0, created.stderr
            assert yaml.safe_load(target.read_text())["type"] == backend
            checked = run_cli("backends", "validate", str(target))
            assert checked.returncode == 0, (backend, extra, checked.stderr)
    unknown = run_cli("backends", "create", "--backend-type", "kubernetes")
    assert unknown.returncode == 2 and "unknown backend 'kubernetes'; available: docker, local, slurm" in unknown.stderr
