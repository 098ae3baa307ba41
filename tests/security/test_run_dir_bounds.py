"""What the host reads, archives or deletes stays inside the run directory; small validation gaps (issue 11.9)."""

import os

import pytest
import yaml
from conftest import run_cli
from helpers import shell_doc, write_yaml

from rompy_tasks.backends.docker import DockerConfig
from rompy_tasks.core.errors import ConfigError
from rompy_tasks.pipeline import validate_data


def problems_of(doc: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        validate_data(doc)
    return {p.loc: p.msg for p in caught.value.problems}


def test_output_and_archive_patterns_outside_the_run_directory_are_refused(tmp_path):
    found = problems_of(shell_doc(tmp_path, "true", outputs=["*.nc", "../*.dat", "/etc/*"]))
    assert set(found) == {"config.config.outputs[1]", "config.config.outputs[2]"}
    doc = shell_doc(tmp_path, "true")
    doc["postprocessor"] = [{"processor": "archive", "include": ["../../**/*"]}]
    assert set(problems_of(doc)) == {"postprocessor[0].include[0]"}


def test_matching_never_yields_a_link_or_a_path_that_leaves_the_run_directory(tmp_path):
    from rompy_tasks.core.model_run import files_matching

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.dat").write_text("user data")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "out.dat").write_text("model output")
    (run_dir / "planted.dat").symlink_to(outside / "keep.dat")
    (run_dir / "linkdir").symlink_to(outside)
    found = files_matching(run_dir, ["*.dat", "linkdir/*", "../outside/*", "**/*"])
    assert found == [run_dir / "out.dat"]


def test_cleanup_on_failure_cannot_reach_a_sibling_of_the_run_directory(tmp_path):
    (tmp_path / "runs").mkdir()
    sibling = tmp_path / "runs" / "keep.dat"
    sibling.write_text("user data")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(shell_doc(tmp_path, ["sh", "-c", "exit 3"], outputs=["*.nc", "../*.dat"])))
    result = run_cli("run", str(path), "--cleanup-on-failure")
    assert result.returncode == 2 and "config.config.outputs[1]" in result.stderr, result.stderr[-2000:]
    assert sibling.read_text() == "user data"


def test_environment_variable_names_are_checked_at_validation(tmp_path):
    doc = shell_doc(tmp_path, "true")
    doc["backend"] = {"type": "local", "env_vars": {"A=B": "x", "1X": "y", "GOOD_1": "z"}}
    found = problems_of(doc)
    assert set(found) == {"backend.env_vars"} and "'A=B', '1X'" in found["backend.env_vars"]


def test_deeply_nested_yaml_is_invalid_input_not_a_crash(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("config: " + "[" * 20000 + "]" * 20000 + "\n")
    result = run_cli("validate", str(path))
    # our own check, or libyaml's (its parser stops at 1000 levels)
    assert result.returncode == 2, result.stderr
    assert "nested too deeply" in result.stderr or "exceeded maximum nesting depth" in result.stderr
    assert "Traceback" not in result.stderr


def test_docker_maps_only_whole_run_directory_paths(tmp_path):
    pipeline = validate_data(shell_doc(tmp_path, ["model", "RUN/in.nml", "RUN", "RUN2/x", "RUNx"]))
    run = pipeline.config
    staging = str(run.staging_dir)
    command = [arg.replace("RUN", staging) for arg in run.config.run_command(run)]
    run = run.model_copy(update={"config": run.config.model_copy(update={"command": command})})
    mapped = DockerConfig(image="x").container_command(run)
    assert mapped == ["model", "/rompy/run/in.nml", "/rompy/run", f"{staging}2/x", f"{staging}x"]
    assert os.path.basename(staging) == "r"


def test_delete_existing_never_empties_a_directory_rompy_tasks_did_not_create(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "observations.nc").write_text("years of work")
    doc = shell_doc(tmp_path, "true")
    doc["config"].update(output_dir=str(data), run_id_subdir=False, delete_existing=True)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run_cli("run", str(path), "--last-stage", "generate")
    assert result.returncode == 2 and "config.delete_existing" in result.stderr, result.stderr[-2000:]
    assert (data / "observations.nc").read_text() == "years of work"


def test_delete_existing_removes_and_recreates_a_run_directory_of_ours(tmp_path):
    from rompy_tasks.core.model_run import RUN_MARKER

    doc = shell_doc(tmp_path, "true")
    doc["config"]["delete_existing"] = True
    run = validate_data(doc).config
    staging = run.prepare_staging()
    (staging / "old-output.nc").write_text("stale")
    assert (staging / RUN_MARKER).is_file()
    validate_data(doc).config.prepare_staging()
    assert not (staging / "old-output.nc").exists() and (staging / RUN_MARKER).is_file()
    (staging / RUN_MARKER).unlink()
    (staging / RUN_MARKER).symlink_to(tmp_path / "elsewhere")
    (staging / "x.nc").write_text("x")
    assert set(problems_of(doc)) == {"config.delete_existing"}, "a linked marker does not count"


def test_veros_file_name_settings_cannot_point_outside_the_run(tmp_path):
    """`restart_output_filename` takes an absolute path (and is a format template): through the shipped
    lock's settings glob a UI user wrote a 1.5 MB HDF5 file outside the output directory."""
    doc = shell_doc(tmp_path, "true")
    doc["config"]["config"] = {"model_type": "veros", "setup": "acc", "settings": {
        "restart_output_filename": "/tmp/elsewhere/{identifier}.h5", "A_h": 2.0e5}}  # fmt: skip
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 2, result.stderr
    assert "config.config.settings: Value error, restart_output_filename: file names are set by" in result.stderr
