"""rompy's periods mean the same to us (issue 12): every form in periods.yaml, through the CLI.

Before, `start: "20230101"` was read as a Unix timestamp (1970-08-23) and the other compact
forms, end + duration, and YAML's unquoted dates were rejected.
"""

from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from helpers import shell_doc, write_yaml

CASES = yaml.safe_load((Path(__file__).parent / "periods.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_a_rompy_period_means_what_it_means_in_rompy(tmp_path, case):
    doc = shell_doc(tmp_path, "true")
    doc["config"]["period"] = case["period"]
    # safe_dump keeps what YAML made of each form (int, float, date, str), as the user's file would
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 0, result.stderr[-2000:]
    start, end = case["means"]
    assert f"period {start} to {end}" in result.stdout


@pytest.mark.parametrize("start", ["1700000000", 1700000000, "1700000000.5", 1.7e9])
def test_a_number_is_never_read_as_a_unix_time(tmp_path, start):
    doc = shell_doc(tmp_path, "true")
    doc["config"]["period"] = {"start": start, "duration": "1d"}
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 2, result.stdout
    assert "config.period.start" in result.stderr
    assert "1970" not in result.stdout + result.stderr
