"""The API is the trust boundary (issue 11.8): scripts/operate requires an auth string, and a
locked deployment refuses runs that change more than its `allowed_overrides`, through a real worker.

Before, the operated server answered anyone on loopback, and any run could replace a
deployment's backend command through `--param` or `overrides`.
"""

import json
import urllib.error

import pytest
from services import api_request

pytestmark = pytest.mark.e2e


def test_the_api_requires_the_auth_string_operate_made(operated):
    auth_file = operated.tmp / "op" / "api-auth"
    assert auth_file.stat().st_mode & 0o777 == 0o600 and len(operated.auth) > 20
    with pytest.raises(urllib.error.HTTPError) as refused:
        api_request(f"{operated.url}/api", "POST", "/deployments/filter", {}, attempts=1, auth="rompy:guess")
    assert refused.value.code == 401
    assert operated.api("POST", "/deployments/filter", {}), "with the auth string the API answers"


def test_a_locked_deployment_refuses_what_it_does_not_allow(operated):
    """The shell's `--param` and the API check the narrowed run form's schema, so a path outside the
    allowlist never becomes a run. An API user can skip that check (`enforce_parameter_schema: false`)
    or send parameters the form does not have (the config, the allowlist): the flow refuses those,
    through the real worker, before anything is written or started."""
    marker = operated.tmp / "pwned"
    deployment = operated.deployment("model-pipeline/veros-acc")
    command_override = {"backend.command": f"touch {marker}", "config.run_id": "locked-1"}
    ran = operated.deployment_run("model-pipeline/veros-acc", f"overrides={json.dumps(command_override)}")
    assert ran.returncode != 0 and "'backend.command' does not match" in ran.stdout, ran.stdout[-1500:]
    assert "UUID" not in ran.stdout, "no flow run was created"

    pipeline = deployment["parameters"]["pipeline"]
    pipeline["backend"]["command"] = f"touch {marker}"
    attempts = {
        "a backend command override, the schema check skipped": (
            {"overrides": command_override},
            "overrides.backend.command: this deployment allows overriding only config.run_id, config.period.*",
        ),
        "a replaced pipeline": ({"pipeline": pipeline}, "pipeline: differs from the deployment's value"),
        "a widened allowlist": ({"allowed_overrides": ["*"]}, "allowed_overrides: differs from the deployment's value"),
        # issue 36: with config.run_id allowed, skipping generate would run on another run's directory
        "generate skipped": ({"first_stage": "run"}, "first_stage: this deployment runs with first_stage 'generate'"),
        "stage checks skipped": ({"validate_stages": False}, "validate_stages: this deployment runs with"),
        "a run directory removed on failure": ({"cleanup_on_failure": True}, "cleanup_on_failure: this deployment"),
    }
    for what, (parameters, reason) in attempts.items():
        body = {"parameters": parameters, "enforce_parameter_schema": False}
        created = operated.api("POST", f"/deployments/{deployment['id']}/create_flow_run", body)
        flow_run = operated.final_flow_run(created["id"])
        state = flow_run["state"]
        assert (state["type"], state["name"]) == ("FAILED", "Refused"), f"{what}: {state}"
        assert reason in state["message"], f"{what}: {state}"
        assert flow_run["name"].startswith("refused-"), "a refused run is not named as the run it would have been"
        logs = operated.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run["id"]]}}})
        assert not [log["message"] for log in logs if "Traceback" in log["message"]], "one clear line, no traceback"
    assert not marker.exists()
    assert not (operated.runs / "locked-1").exists() and not (operated.runs / "veros-acc").exists()


@pytest.mark.veros
def test_the_config_filled_with_its_defaults_changes_nothing(operated):
    """A client that sends the deployed config back with every schema default filled in (as Prefect's
    generic run form did: `run_retries: 0`, `period.include_end: true`, `delete_existing: false`, ...)
    changes nothing: compared as raw dicts, every such run of a locked deployment was refused."""
    from flows.pipeline import PipelineConfig

    deployment = operated.deployment("model-pipeline/veros-acc")
    deployed = deployment["parameters"]
    filled = PipelineConfig.model_validate(deployed["pipeline"]).model_dump(mode="json")
    filled["config"]["period"]["end"] = None  # the form sent the unset alternative as null
    assert filled != deployed["pipeline"], "the filled-in parameters differ as raw data"
    parameters = {
        "pipeline": filled,
        "allowed_overrides": deployed["allowed_overrides"],
        "overrides": {"config.run_id": "from-the-form", "config.period.duration": "2d"},
    }
    created = operated.api("POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters})
    flow_run = operated.final_flow_run(created["id"], 600)
    assert flow_run["state"]["type"] == "COMPLETED", f"{flow_run['state']}\n{operated.worker_log()}"
    assert (operated.runs / "from-the-form" / "acc.snapshot.nc").is_file()


def test_a_locked_deployment_refuses_job_variables_before_anything_starts(operated):
    """Issue 36.3: `job_variables: {"command": ...}` replaced what the worker runs (any shell, as the
    worker's user, the auth string in its environment); the UI's Custom run offers the field. Our
    worker refuses it before a process starts, as it refuses a working_dir or env change."""
    marker = operated.tmp / "pwned-by-job-variables"
    deployment = operated.deployment("model-pipeline/veros-acc")
    pool = operated.api("GET", "/work_pools/rompy-process")
    assert pool["type"] == "rompy-tasks", "scripts/operate made the pool for our worker"
    attempts = {
        "command": {"command": f"sh -c 'touch {marker}; env > {marker}'"},
        "env": {"env": {"PYTHONPATH": str(operated.tmp)}},
        "working_dir": {"working_dir": "/"},
    }
    for name, job_variables in attempts.items():
        body = {"parameters": {}, "job_variables": job_variables}
        created = operated.api("POST", f"/deployments/{deployment['id']}/create_flow_run", body)
        flow_run = operated.final_flow_run(created["id"])
        state = flow_run["state"]
        assert (state["type"], state["name"]) == ("FAILED", "Refused"), f"{name}: {state}\n{operated.worker_log()}"
        assert f"job_variables {name}: this deployment is locked" in state["message"], state["message"]
        assert flow_run["name"].startswith("refused-")
    assert not marker.exists(), "the replaced command never ran"
