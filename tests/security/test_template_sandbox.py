"""Templates see plain data: no live object whose methods reach the filesystem (issue 11.1, 11.9)."""

import yaml
from conftest import run_cli

from rompy_tasks.pipeline import validate_data


def pipeline_with_template(tmp_path, text: str) -> dict:
    template = tmp_path / "template"
    template.mkdir(exist_ok=True)
    (template / "input.txt").write_text(text)
    return {
        "config": {
            "run_id": "t",
            "output_dir": str(tmp_path / "runs"),
            "period": {"start": "2026-01-02T03:00:00", "duration": "1h"},
            "config": {"model_type": "shell", "command": "true", "template": str(template), "parameters": {"a": 1}},
        },
        "postprocessor": [],
    }


def validate_file(tmp_path, doc: dict):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return run_cli("validate", str(path))


def test_validating_a_template_cannot_read_a_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doc = pipeline_with_template(tmp_path, f"{{{{ runtime.output_dir.joinpath('{secret}').read_text() }}}}")
    result = validate_file(tmp_path, doc)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "template input.txt" in result.stderr and "TOP-SECRET" not in result.stdout + result.stderr


def test_validating_a_template_cannot_write_or_delete(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.nc").write_text("keep")
    doc = pipeline_with_template(
        tmp_path,
        f"{{{{ runtime.output_dir.joinpath('{tmp_path}/pwned').write_text('x') }}}}"
        "{{ runtime.model_copy(update={'output_dir': '" + str(victim) + "', 'run_id_subdir': False, "
        "'delete_existing': True}).prepare_staging() }}",
    )
    result = validate_file(tmp_path, doc)
    assert result.returncode == 2
    assert not (tmp_path / "pwned").exists() and (victim / "data.nc").read_text() == "keep"
    assert not (tmp_path / "runs").exists(), "validation wrote nothing"


def test_templates_cannot_change_their_context(tmp_path):
    doc = pipeline_with_template(tmp_path, "{{ config.parameters.update({'a': 2}) }}{{ config.parameters.a }}")
    result = validate_file(tmp_path, doc)
    assert result.returncode == 2 and "template input.txt" in result.stderr


def test_templates_still_see_every_value_as_plain_data(tmp_path):
    text = (
        "{{ runtime.run_id }} {{ runtime.period.start.strftime('%Y%m%d%H') }} {{ runtime.staging_dir }} "
        "{{ config.parameters.a + 1 }} {{ runtime.output_dir }}"
    )
    pipeline = validate_data(pipeline_with_template(tmp_path, text))
    run = pipeline.config
    written = run.config.generate(run, run.prepare_staging())
    assert written[0].read_text() == f"t 2026010203 {tmp_path / 'runs' / 't'} 2 {tmp_path / 'runs'}"


def test_veros_wind_stress_with_tauy_null_generates_valid_python(tmp_path):
    pipeline = validate_data(
        {
            "config": {
                "run_id": "w",
                "output_dir": str(tmp_path),
                "period": {"start": "2026-01-01", "duration": "1d"},
                "config": {
                    "model_type": "veros",
                    "setup": "acc",
                    "wind_stress": {"file": "forcing/w.nc", "tauy": None},
                },
            },
            "postprocessor": [],
        }
    )
    run = pipeline.config
    run.config.generate(run, run.prepare_staging())
    source = (run.staging_dir / "rompy_tasks_setup.py").read_text()
    wind_line = next(line for line in source.splitlines() if "WIND_STRESS =" in line)
    assert eval(wind_line.split("=", 1)[1]) == {  # noqa: S307 - our own generated literal
        "file": "forcing/w.nc", "taux": "taux", "tauy": None, "time": "time", "lon": "lon", "lat": "lat"
    }  # fmt: skip
    compile(source, "rompy_tasks_setup.py", "exec")


def test_a_template_file_linking_out_of_the_template_tree_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doc = pipeline_with_template(tmp_path, "harmless {{ runtime.run_id }}")
    (tmp_path / "template" / "stolen.txt").symlink_to(secret)
    (tmp_path / "template" / "inside.txt").symlink_to(tmp_path / "template" / "input.txt")
    result = validate_file(tmp_path, doc)
    assert result.returncode == 2 and "template stolen.txt" in result.stderr and "links outside" in result.stderr
    assert "TOP-SECRET" not in result.stdout + result.stderr and not (tmp_path / "runs").exists()
