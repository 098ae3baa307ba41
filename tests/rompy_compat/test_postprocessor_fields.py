"""rompy's postprocessor base fields: timeout, env_vars, working_dir (issue 12).

rompy accepts them on every postprocessor file (timeout 60..86400 s, string variables, an
existing working directory); before, ours rejected them as unknown keys. `timeout` is enforced.
"""

import threading
import time
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import shell_doc, write_yaml

from flows.postprocess import process_within_timeout
from rompy_tasks.core.errors import StageError
from rompy_tasks.postprocess.noop import NoopConfig

FILES = Path(__file__).parent / "files"


def _pipeline_with_processor(tmp_path: Path, processor: Path) -> Path:
    path = write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, ["touch", "out.nc"], run_id="fields"))
    path.write_text(path.read_text().replace("postprocessor: []", f"postprocessor: !include {processor}"))
    return path


def test_a_rompy_file_with_the_base_fields_runs(tmp_path):
    path = _pipeline_with_processor(tmp_path, FILES / "noop-base-fields.yaml")
    ran = run_cli("pipeline", str(path), timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    manifest = (tmp_path / "runs" / "fields" / "rompy_tasks_run.json").read_text()
    assert '"timeout": 1800' in manifest and '"success": true' in manifest
    assert '"DEBUG": "1"' not in manifest  # postprocessor env_vars are hidden like the backend's


def test_the_base_fields_follow_rompys_rules_every_problem_listed(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: noop\ntimeout: 5\nenv_vars: {'': x}\nworking_dir: " + str(tmp_path / "missing") + "\n")
    result = run_cli("validate", str(_pipeline_with_processor(tmp_path, bad)))
    assert result.returncode == 2
    for expected in (
        "postprocessor[0].timeout: Input should be greater than or equal to 60",
        "postprocessor[0].env_vars: Value error, environment variable names cannot be empty",
        "postprocessor[0].working_dir: Value error, working directory",
    ):
        assert expected in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


class _Slow(NoopConfig):
    def process(self, run):
        for _ in range(600):  # Python work between short waits, as a real postprocessor's loop
            time.sleep(0.05)
        return {"success": True}


@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_timeout_stops_an_overrunning_postprocessor(where):
    """The pipeline runs postprocessors in the main thread, ensemble members in worker threads."""
    slow = _Slow.model_construct(processor="noop", timeout=1, validate_outputs=False)  # 1 s: below the file minimum
    outcome: dict[str, object] = {}

    def call() -> None:
        started = time.monotonic()
        try:
            process_within_timeout(None, slow)
        except StageError as err:
            outcome["error"] = str(err)
        outcome["seconds"] = time.monotonic() - started

    if where == "main thread":
        call()
    else:
        thread = threading.Thread(target=call)
        thread.start()
        thread.join(10)
    assert outcome.get("error") == "postprocessor 'noop' did not finish within its timeout of 1 s"
    assert outcome["seconds"] < 5
