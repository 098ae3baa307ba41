"""What a user set survives every hop on the way to a model (rompy's plugins rely on it).

rompy-swan starts SWAN's output times at the run's start unless `tbeg` was given, asking
pydantic's `model_fields_set`. A hop that dumps every default and validates again marks every
default as given: SWAN then wrote `tbegblk=19700101.000000`. Each hop is checked here on the
core install (the shell model's `parameters` default stands in for rompy-swan's `tbeg`);
tests/rompy_compat/test_rompy_models.py checks SWAN's INPUT itself.
"""

from datetime import UTC, datetime

from helpers import shell_doc

from rompy_tasks.ensemble import EnsembleConfig, resolve_members
from rompy_tasks.forecast import cycle_pipeline, validate_forecast
from rompy_tasks.pipeline import apply_overrides, validate_data


def given(pipeline) -> tuple[set[str], set[str], set[str]]:
    """The fields given of the model run, its period and the model config."""
    run = pipeline.config
    return run.model_fields_set, run.period.model_fields_set, run.config.model_fields_set


def test_an_override_marks_only_its_own_field_as_given(tmp_path):
    pipeline = validate_data(shell_doc(tmp_path, "true"))
    before = given(pipeline)
    assert "parameters" not in before[2] and "delete_existing" not in before[0]
    after = given(apply_overrides(pipeline, {"config.run_id": "other", "config.config.command": "false"}))
    assert after == before


def test_an_ensemble_member_keeps_what_was_given(tmp_path):
    ensemble = EnsembleConfig.model_validate(
        {
            "name": "e",
            "pipeline": shell_doc(tmp_path, "true"),
            "members": {"matrix": {"config.config.command": ["a", "b"]}},
        }
    )
    for member in resolve_members(ensemble):
        run_fields, period_fields, model_fields = given(member.pipeline)
        assert "parameters" not in model_fields and "template" not in model_fields
        assert "include_end" not in period_fields and "interval" not in period_fields


def test_a_forecast_cycle_keeps_what_was_given(tmp_path):
    doc = shell_doc(tmp_path, "true")
    doc["config"]["config"] = {"model_type": "veros", "setup": "acc", "wind_stress": {"file": "forcing/w.nc"}}
    forecast = validate_forecast({"name": "f", "cycle_interval": "12h", "forecast_length": "12h", "pipeline": doc})
    cycle = cycle_pipeline(forecast, datetime(2026, 1, 2, 12, tzinfo=UTC), None)
    assert cycle.config.run_id == "20260102T12"
    model = cycle.config.config
    assert {"settings", "backend", "identifier"}.isdisjoint(model.model_fields_set)
    assert {"restart_input", "restart_frequency"} <= model.model_fields_set, "set by the cycle"
    assert {"taux", "lon"}.isdisjoint(model.wind_stress.model_fields_set)
