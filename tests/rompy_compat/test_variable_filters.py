"""rompy's `${VAR|filter}` file variables work as in rompy (issue 12), through the CLI.

Before, `${CYCLE|strftime:%Y%m%d}` stayed literal text in the config, with no error.
"""

from conftest import run_cli
from helpers import shell_doc, write_yaml


def test_rompy_datetime_filters_render_from_the_environment(tmp_path):
    doc = shell_doc(tmp_path, "true")
    doc["config"]["run_id"] = "cycle_${CYCLE|strftime:%Y%m%d}"
    doc["config"]["period"] = {"start": "${CYCLE|as_datetime|shift:-1d}", "end": "${CYCLE|shift:+6h}"}
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)), env={"CYCLE": "20230102T00"})
    assert result.returncode == 0, result.stderr
    assert "run cycle_20230102," in result.stdout
    assert "period 2023-01-01T00:00:00+00:00 to 2023-01-02T06:00:00+00:00" in result.stdout


def test_an_unknown_filter_or_an_unreadable_time_is_an_error_naming_the_field(tmp_path):
    doc = shell_doc(tmp_path, "true")
    doc["config"]["run_id"] = "cycle_${CYCLE|strftime}"
    doc["config"]["output_dir"] = "${CYCLE|upper}"
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)), env={"CYCLE": "soon"})
    assert result.returncode == 2
    assert "config.run_id: ${CYCLE|strftime}: filter strftime needs a format" in result.stderr
    assert "config.output_dir: ${CYCLE|upper}: unknown filter 'upper'" in result.stderr


def test_a_shift_beyond_the_representable_dates_is_invalid_input_naming_the_field(tmp_path):
    """It ended in an OverflowError traceback and exit 1."""
    doc = shell_doc(tmp_path, "true")
    doc["config"]["period"] = {"start": "${T|as_datetime|shift:9999999d}", "duration": "1h"}
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)), env={"T": "20230102T00"})
    assert result.returncode == 2, result.stderr
    assert "config.period.start: ${T|as_datetime|shift:9999999d}: filter shift:9999999d goes beyond" in result.stderr
    assert "Traceback" not in result.stderr
