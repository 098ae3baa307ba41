"""Deployment parameters must pass the schema check the Prefect API applies to them.

The API validates a deployment's parameters against the flow's parameter schema
(`enforce_parameter_schema`), with Prefect's own jsonschema validator: what our loader
accepts and what the schema declares must agree.
"""

import json
from pathlib import Path

import pytest
import yaml
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

from flows.ensemble import model_ensemble
from flows.forecast import forecast_cycle
from flows.pipeline import model_pipeline
from rompy_tasks.core.loader import load_document
from rompy_tasks.ensemble import EnsembleConfig, resolve_members
from rompy_tasks.forecast import apply_forecast_overrides, validate_forecast
from rompy_tasks.pipeline import validate_data

REPO = Path(__file__).resolve().parent.parent
SCHEMA = parameter_schema(model_pipeline).model_dump_for_openapi()
SCHEMAS = {
    "model_pipeline": SCHEMA,
    "model_ensemble": parameter_schema(model_ensemble).model_dump_for_openapi(),
    "forecast_cycle": parameter_schema(forecast_cycle).model_dump_for_openapi(),
}
DEPLOYMENT_FILES = sorted((REPO / "deployments").rglob("prefect.yaml"))


def deployments():
    for path in DEPLOYMENT_FILES:
        for deployment in load_document(path, environ={"ROMPY_TASKS_RUNS": "/tmp/rompy-runs"})["deployments"]:
            yield pytest.param(deployment, id=f"{path.parent.name}/{deployment['name']}")


def _check_parameters(params: dict, schema: dict) -> None:
    # exactly as the API does on `prefect deploy` (no format checks) ...
    validate(params, schema, raise_on_error=True, preprocess=True)
    # ... and with formats checked, as a UI form or client may
    errors = validate(params, schema, preprocess=True)
    assert not errors, [e.message for e in errors]
    if "pipeline" in params:
        validate_data(params["pipeline"])
    elif "forecast" in params:
        forecast = validate_forecast(params["forecast"])
        apply_forecast_overrides(forecast, params.get("overrides") or {})
    else:
        resolve_members(EnsembleConfig.model_validate(params["ensemble"]))


@pytest.mark.parametrize("deployment", list(deployments()))
def test_deployment_parameters_conform_to_the_flow_schema(deployment):
    schema = SCHEMAS[deployment["entrypoint"].rsplit(".", 1)[1]]
    text = yaml.safe_dump(deployment["parameters"]).replace("{{ $ROMPY_TASKS_RUNS }}", "/tmp/rompy-runs")
    params = yaml.safe_load(text)
    _check_parameters(params, schema)
    # a schedule's parameters replace the deployment's, key by key, for that schedule's runs
    for schedule in deployment.get("schedules") or []:
        _check_parameters({**params, **(schedule.get("parameters") or {})}, schema)


def test_the_demo_pipeline_conforms_once_shorthands_are_expanded():
    data = load_document(REPO / "examples" / "veros-acc" / "pipeline.yaml", environ={})
    pipeline = validate_data(data)
    errors = validate({"pipeline": pipeline.model_dump(mode="json")}, SCHEMA, preprocess=True)
    assert not errors, [e.message for e in errors]


def test_the_schema_rejects_what_the_model_rejects():
    bad = {
        "pipeline": {
            "config": {
                "period": {"start": "2026-01-01", "duration": "1d"},
                "config": {"model_type": "veros"},
            },
            "backend": {"type": "local", "timeout": 5},
        }
    }
    assert validate(bad, SCHEMA, preprocess=True)


@pytest.mark.parametrize("deployment", list(deployments()))
def test_the_run_forms_defaults_are_no_change_to_a_locked_deployment(deployment):
    """The UI's custom-run form submits the stored parameters with every schema default filled in:
    that is the deployment's own config, not a change (it was refused as one, compared raw)."""
    from flows.pipeline import PipelineConfig
    from flows.policy import refused_parameters
    from rompy_tasks.forecast import ForecastConfig

    text = yaml.safe_dump(deployment["parameters"]).replace("{{ $ROMPY_TASKS_RUNS }}", "/tmp/rompy-runs")
    deployed = yaml.safe_load(text)
    name, model = next(
        (name, model)
        for name, model in (("pipeline", PipelineConfig), ("ensemble", EnsembleConfig), ("forecast", ForecastConfig))
        if name in deployed
    )
    filled = {**deployed, name: model.model_validate(deployed[name]).model_dump(mode="json")}
    assert filled[name] != deployed[name], "the form's parameters differ as raw data"
    assert refused_parameters(filled, deployed, model) == []
    changed = json.loads(json.dumps(filled))
    pipeline = changed[name] if name == "pipeline" else changed[name]["pipeline"]
    pipeline["backend"]["timeout"] = 61  # what a form user might change: refused
    assert [p.loc for p in refused_parameters(changed, deployed, model)] == [name]


def test_a_locked_forecast_may_keep_more_cycles_never_fewer():
    from flows.policy import lowered_retention

    deployed = {"forecast": {"keep_cycles": 6}}
    assert lowered_retention({"keep_cycles": 8}, deployed) == []
    assert lowered_retention({"keep_cycles": 6}, deployed) == []
    assert [p.loc for p in lowered_retention({"keep_cycles": 1}, deployed)] == ["overrides.keep_cycles"]
    assert lowered_retention({"keep_cycles": 1}, {"pipeline": {}}) == [], "only forecasts retain cycles"


@pytest.mark.parametrize("deployment", list(deployments()))
def test_a_locked_deployments_run_form_shows_only_its_allowed_overrides_typed(deployment):
    """Issue 26.1: the form was the whole config (every field refused if changed) and a JSON box.
    Submitted unchanged (every pre-filled value), the narrowed form changes nothing."""
    from flows.policy import refused_overrides
    from flows.run_form import flattened_overrides, narrowed_schema

    schema = SCHEMAS[deployment["entrypoint"].rsplit(".", 1)[1]]
    text = yaml.safe_dump(deployment["parameters"]).replace("{{ $ROMPY_TASKS_RUNS }}", "/tmp/rompy-runs")
    deployed = yaml.safe_load(text)
    form = narrowed_schema(schema, deployed)
    if not deployed.get("allowed_overrides"):
        assert form is None, "an unlocked deployment keeps the full form"
        return
    names = list(form["properties"])
    assert names[-1] == "overrides" and not {"pipeline", "ensemble", "forecast", "allowed_overrides"} & set(names)
    if "forecast" in deployed:
        assert names[:2] == ["cycle", "force"], "the run controls first"
    fields = form["properties"]["overrides"]["properties"]
    assert set(fields) == {pattern.removesuffix(".*") for pattern in deployed["allowed_overrides"]}
    if "forecast" in deployed:
        length = fields["forecast_length"]
        assert length["format"] == "duration" and "Forecast Length" in length["title"]
        assert fields["keep_cycles"]["default"] == deployed["forecast"]["keep_cycles"], "pre-filled as deployed"
        assert fields["forecast_length_by_hour"]["additionalProperties"] == {"format": "duration", "type": "string"}
        cycle = form["properties"]["cycle"]  # a date-time picker left empty, not a date-time/None switch
        assert (cycle["type"], cycle["format"]) == ("string", "date-time") and "default" not in cycle
        assert "floored to the cycle interval" in cycle["description"], "the flow's docstring describes it"
    if "config.period" in fields:  # a wildcard: its fields, empty pickers where the model allows None
        period = fields["config.period"]
        assert period["title"] == "Period (config.period.*)", period["title"]
        assert period["properties"]["start"] == {"title": "Start", "format": "date-time", "type": "string"}
    if "config.config.settings.A_h" in fields:  # Veros settings typed and described as Veros defines them
        viscosity = fields["config.config.settings.A_h"]
        assert viscosity["type"] == "number" and viscosity["description"] == "lateral viscosity in m^2/s"
        assert viscosity["title"] == "A_h (config.config.settings.A_h)"
    # what the form submits unchanged: the run controls' and the overrides' defaults
    submitted = {name: spec["default"] for name, spec in form["properties"].items() if "default" in spec}
    submitted["overrides"] = {path: spec["default"] for path, spec in fields.items() if "default" in spec}
    assert not validate({**deployed, **submitted}, form, preprocess=True), "the API accepts it (enforced schema)"
    # the shell's dotted paths still pass where the allowlist matches; anything else is refused by the API
    for pattern in deployed["allowed_overrides"]:
        if pattern.endswith(".*"):
            shell = {**deployed, "overrides": {pattern.replace("*", "duration"): "2d"}}
            assert not validate(shell, form, preprocess=True), pattern
    assert validate({**deployed, "overrides": {"backend.command": "rm -rf /"}}, form, preprocess=True)
    overrides = flattened_overrides(submitted["overrides"], deployed["allowed_overrides"])
    assert refused_overrides(overrides, deployed["allowed_overrides"]) == []
    config = next(deployed[name] for name in ("pipeline", "ensemble", "forecast") if name in deployed)
    if "forecast" in deployed:
        before = validate_forecast(config)
        assert apply_forecast_overrides(before, overrides) == before, "unchanged, it changes nothing"


def test_a_wildcard_fields_object_becomes_its_paths():
    from flows.run_form import flattened_overrides

    allowed = ["config.period.*", "config.run_id"]
    form = {"config.period": {"duration": "2d", "end": None}, "config.run_id": "storm"}
    assert flattened_overrides(form, allowed) == {"config.period.duration": "2d", "config.run_id": "storm"}
