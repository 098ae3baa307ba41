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
    """Through the real worker: each refusal fails the run before anything is written or started."""
    marker = operated.tmp / "pwned"
    pipeline = operated.deployment("model-pipeline/veros-acc")["parameters"]["pipeline"]
    pipeline["backend"]["command"] = f"touch {marker}"
    attempts = {
        "a backend command override": (
            f'overrides={{"backend.command": "touch {marker}", "config.run_id": "locked-1"}}',
            "overrides.backend.command: this deployment allows overriding only config.run_id, config.period.*",
        ),
        "a replaced pipeline": (f"pipeline={json.dumps(pipeline)}", "pipeline: differs from the deployment's value"),
        "a widened allowlist": (
            'allowed_overrides=["*"]',
            "allowed_overrides: differs from the deployment's value",
        ),
    }
    for what, (param, reason) in attempts.items():
        ran = operated.deployment_run("model-pipeline/veros-acc", param)
        assert ran.returncode != 0 and "Refused" in ran.stdout, f"{what}: {ran.stdout[-1500:]}"
        flow_run = operated.flow_run_of(ran)
        state = flow_run["state"]
        assert (state["type"], state["name"]) == ("FAILED", "Refused"), f"{what}: {state}"
        assert reason in state["message"], f"{what}: {state}"
        assert flow_run["name"].startswith("refused-"), "a refused run is not named as the run it would have been"
        logs = operated.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run["id"]]}}})
        assert not [log["message"] for log in logs if "Traceback" in log["message"]], "one clear line, no traceback"
    assert not marker.exists()
    assert not (operated.runs / "locked-1").exists() and not (operated.runs / "veros-acc").exists()


@pytest.mark.veros
def test_the_run_form_filling_in_defaults_changes_nothing(operated):
    """Prefect's run form submits every schema default the stored parameters leave out
    (`run_retries: 0`, `period.include_end: true`, `delete_existing: false`, ...). Compared as
    raw dicts, every custom run of a locked deployment was refused, even with nothing changed."""
    from flows.pipeline import PipelineConfig

    deployed = operated.deployment("model-pipeline/veros-acc")["parameters"]
    filled = PipelineConfig.model_validate(deployed["pipeline"]).model_dump(mode="json")
    filled["config"]["period"]["end"] = None  # the form sends the unset alternative as null
    assert filled != deployed["pipeline"], "the form's parameters differ as raw data"
    ran = operated.deployment_run(
        "model-pipeline/veros-acc",
        f"pipeline={json.dumps(filled)}",
        f"allowed_overrides={json.dumps(deployed['allowed_overrides'])}",
        'overrides={"config.run_id": "from-the-form", "config.period.duration": "2d"}',
    )
    assert ran.returncode == 0 and "Completed" in ran.stdout, ran.stdout[-1500:] + operated.worker_log()
    assert (operated.runs / "from-the-form" / "acc.snapshot.nc").is_file()
