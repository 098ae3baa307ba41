"""rompy's postprocessor and docker backend files mean the same to us (issue 12).

Before, a rompy postprocessor file (`type: noop`) was rejected for lacking `processor:`, and a
docker `dockerfile` was looked up from the current directory instead of inside `build_context`.
"""

from pathlib import Path

from conftest import run_cli
from helpers import shell_doc, write_yaml

FILES = Path(__file__).parent / "files"


def test_a_rompy_postprocessor_file_selects_its_processor_with_type(tmp_path):
    doc = shell_doc(tmp_path, ["touch", "out.nc"], run_id="noop")
    path = write_yaml(tmp_path / "p.yaml", doc)
    path.write_text(path.read_text().replace("postprocessor: []", f"postprocessor: !include {FILES / 'noop.yaml'}"))
    validated = run_cli("validate", str(path))
    assert validated.returncode == 0 and "postprocessors noop" in validated.stdout, validated.stderr
    ran = run_cli("run", str(path), timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "noop" in (tmp_path / "runs" / "noop" / "rompy_tasks_run.json").read_text()


def test_a_rompy_dockerfile_is_relative_to_the_build_context(tmp_path):
    context = tmp_path / "image"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM rompy-tasks/base:bookworm\n")
    backend = {"type": "docker", "dockerfile": "Dockerfile", "build_context": str(context)}
    valid = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, "true", backend=backend))))
    assert valid.returncode == 0, valid.stderr  # run from the repository, where no ./Dockerfile exists
    backend["dockerfile"] = "docker/Dockerfile"
    invalid = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, "true", backend=backend))))
    assert invalid.returncode == 2
    assert f"backend.dockerfile: Value error, dockerfile {context}/docker/Dockerfile (relative to build_context" in (
        invalid.stderr
    )
