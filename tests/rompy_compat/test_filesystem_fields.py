"""Fields with a filesystem meaning, and the OS's limits, are checked at validation (issue 12).

Before, an output_dir under a file or a template that is a file failed only when the run
started, and a 200 KiB argument or variable failed at exec time with E2BIG.
"""

from conftest import run_cli
from helpers import shell_doc, write_yaml


def test_every_filesystem_field_problem_is_listed_with_its_path(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    doc = shell_doc(tmp_path, "true", template=str(afile), backend={"type": "local", "working_dir": str(afile)})
    doc["config"]["output_dir"] = str(afile / "runs")
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 2
    assert f"config.output_dir: Value error, {afile} is a file, so no run directory can be made" in result.stderr
    assert f"config.config.template: Value error, template {afile} is not a directory" in result.stderr
    assert "backend.working_dir: Value error" in result.stderr
    assert "3 problem(s)" in result.stderr


def test_an_argument_or_variable_longer_than_the_os_allows_is_invalid_input(tmp_path):
    huge = "x" * (200 * 1024)
    doc = shell_doc(tmp_path, ["echo", "{{ config.parameters.blob }}"], parameters={"blob": huge})
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 2
    assert "config.config.command: an argument of the command longer than the 128 KiB the OS allows" in result.stderr
    doc = shell_doc(tmp_path, "true", backend={"type": "local", "env_vars": {"BLOB": huge}})
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 2 and "backend.env_vars: Value error, a variable longer than" in result.stderr
    assert not (tmp_path / "runs").exists()
