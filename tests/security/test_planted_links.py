"""A model that plants symbolic links in its run directory cannot redirect the host's writes (issue 11.3)."""

import yaml
from conftest import run_cli


def pipeline_file(tmp_path, command, postprocessor=None, name="p.yaml"):
    doc = {
        "config": {
            "run_id": "r",
            "output_dir": str(tmp_path / "runs"),
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": command, "outputs": ["*.txt"]},
        },
        "postprocessor": postprocessor or [],
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_planted_log_link_does_not_receive_the_next_runs_output(tmp_path):
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA owner\n")
    plant = ["sh", "-c", f"echo out > out.txt; rm logs/run.log; ln -s {victim} logs/run.log"]
    assert run_cli("run", str(pipeline_file(tmp_path, plant))).returncode == 0
    assert (tmp_path / "runs" / "r" / "logs" / "run.log").is_symlink(), "the model planted its link"
    again = run_cli("run", str(pipeline_file(tmp_path, ["sh", "-c", "echo attacker-key; echo x > out.txt"])))
    assert again.returncode == 1 and "symbolic link" in again.stderr, again.stderr[-2000:]
    assert victim.read_text() == "ssh-ed25519 AAAA owner\n"


def test_a_planted_directory_link_does_not_receive_logs_or_analysis(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plant = ["sh", "-c", f"echo 1 > out.txt; ln -s {elsewhere} analysis; ln -s {elsewhere} archive"]
    archive = [{"processor": "archive", "include": ["*.txt"]}]
    result = run_cli("run", str(pipeline_file(tmp_path, plant, archive)))
    assert result.returncode == 1 and "symbolic link" in result.stderr, result.stderr[-2000:]
    assert list(elsewhere.iterdir()) == [], "nothing was written through the planted link"


def test_a_planted_manifest_link_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    plant = ["sh", "-c", f"echo 1 > out.txt; ln -sf {victim} rompy_tasks_run.json"]
    assert run_cli("run", str(pipeline_file(tmp_path, plant))).returncode == 0
    assert victim.read_text() == "{}"
    manifest = tmp_path / "runs" / "r" / "rompy_tasks_run.json"
    assert not manifest.is_symlink() and '"status": "completed"' in manifest.read_text()
