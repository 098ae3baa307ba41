"""`rompy-tasks ensemble validate` has `validate`'s parity (issue 12), while `ensemble FILE` still runs."""

from conftest import run_cli
from helpers import shell_ensemble_doc, write_yaml


def test_ensemble_validate_checks_every_member_and_writes_nothing(tmp_path):
    good = shell_ensemble_doc(tmp_path, "true", {"overrides": [{"config.config.parameters.a": 1}, {}]})
    result = run_cli("ensemble", "validate", str(write_yaml(tmp_path / "good.yaml", good)))
    assert result.returncode == 0, result.stderr
    assert "valid: ensemble ens, 2 member(s)" in result.stdout
    bad = shell_ensemble_doc(
        tmp_path, "true", {"overrides": [{"config.config.nonsense": 1}, {"config.period.duration": "soon"}]}
    )
    result = run_cli("ensemble", "validate", str(write_yaml(tmp_path / "bad.yaml", bad)))
    assert result.returncode == 2
    assert "members[0].config.config.nonsense" in result.stderr and "members[1].config.period.duration" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_ensemble_without_a_verb_still_runs_the_file(tmp_path):
    path = write_yaml(tmp_path / "e.yaml", shell_ensemble_doc(tmp_path, "true", {"overrides": [{}]}))
    result = run_cli("ensemble", str(path), "--max-parallel", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Ensemble directory" in result.stdout
