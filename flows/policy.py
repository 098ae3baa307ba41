"""What a run created through the Prefect API may change of its deployment (issue 11.8).

Anyone who can reach the API can create a flow run with any parameters, so a deployment that
declares `allowed_overrides` (glob patterns of dotted field paths, e.g. `config.period.*`)
is locked: its run's config parameter (`pipeline`, `ensemble` or `forecast`) and the
allowlist itself must be exactly as deployed (read back from the deployment, not from the
run), and `overrides` may set only matching paths; so must the pipeline's run controls that
touch run directories (`first_stage`, `validate_stages`, `cleanup_on_failure`). Everything else
a run may set (`last_stage`, `cycle`, `force`, `max_parallel`, member indexes) changes what
runs, not how. Job variables are the worker's to refuse (flows/worker.py). The check runs
first in the flow, so a refused run writes and starts nothing.

This guards against mistakes and narrows what a UI user can do; it is not a wall against
someone with full API access, who can also edit the deployment itself: keep the API on
loopback or behind its auth string (scripts/operate does both).
"""

import logging
from fnmatch import fnmatchcase
from typing import Any

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.states import Failed, State
from pydantic import BaseModel, ValidationError

from rompy_tasks.core.errors import ConfigError, Problem
from rompy_tasks.core.loader import as_text

# The pipeline's run controls that change how a run treats its directory, not just what runs:
# skipping generate runs the model (or the postprocessors) on whatever a run directory holds
# (with `config.run_id` allowed, another run's), skipping the stage checks starts what would
# fail, cleanup removes a run directory. A locked deployment keeps them as deployed (or at the
# flow's default), as it keeps its config.
LOCKED_RUN_CONTROLS = {"first_stage": "generate", "validate_stages": True, "cleanup_on_failure": False}
LOCKED_PARAMETERS = ("pipeline", "ensemble", "forecast", "allowed_overrides", *LOCKED_RUN_CONTROLS)
REFUSED = "Refused"  # the state's name: its event is prefect.flow-run.Refused, which the alerts do not page on


class QuietRefusals(logging.Filter):
    """Prefect's engine re-raises a run's failure at its end and logs it with a traceback; for a
    refused run that would bury the one clear line (the refusal) under two tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (error is not None and str(error).startswith(REFUSAL_PREFIX))


REFUSAL_PREFIX = "refused: "
logging.getLogger("prefect.flow_runs").addFilter(QuietRefusals())  # where the engine logs a run's end


class RunRefused(ConfigError):
    """A run that breaks its deployment's lock: every refused change, with what is allowed."""

    def state(self) -> State:
        """The run's final state: Failed in type, named Refused, one clear message, no traceback.

        The run is renamed (`refused-<id>`): named after a cycle it never ran, it would look
        like a failed cycle."""
        message = REFUSAL_PREFIX + "; ".join(str(problem) for problem in self.problems)
        get_run_logger().error(message)
        if (flow_run := deployment_run()) is not None:
            with get_client(sync_client=True) as client:
                client.update_flow_run(flow_run.id, name=f"refused-{str(flow_run.id)[:8]}")
        return Failed(name=REFUSED, message=message)


def refused_overrides(overrides: dict[str, Any], allowed: list[str]) -> list[Problem]:
    """The override paths no pattern of `allowed` matches."""
    return [
        Problem(f"overrides.{path}", f"this deployment allows overriding only {', '.join(allowed) or 'nothing'}")
        for path in overrides
        if not any(fnmatchcase(path, pattern) for pattern in allowed)
    ]


def canonical(value: Any, model: type[BaseModel]) -> Any:
    """`value` as the flow sees it: validated by `model` (defaults filled in), dumped as JSON data.

    Prefect's run form submits every schema default that the stored parameters leave out
    (`run_retries: 0`, `period.end: null`, ...): such a run changes nothing, so values are
    compared after validation, never as raw dicts. A value that does not validate stays raw.
    """
    if isinstance(value, dict):
        try:
            return model.model_validate(value).model_dump(mode="json", fallback=as_text)
        except ValidationError:
            pass
    return value


def refused_parameters(run: dict[str, Any], deployed: dict[str, Any], model: type[BaseModel]) -> list[Problem]:
    """The locked parameters a run changed from its deployment's values (compared as validated by `model`)."""
    problems = [
        Problem(name, "differs from the deployment's value: this deployment accepts changes only through overrides")
        for name in LOCKED_PARAMETERS
        if name not in LOCKED_RUN_CONTROLS
        and (name in run or name in deployed)
        and canonical(run.get(name), model) != canonical(deployed.get(name), model)
    ]
    problems += [
        Problem(name, f"this deployment runs with {name} {deployed.get(name, default)!r}; a run cannot change it")
        for name, default in LOCKED_RUN_CONTROLS.items()
        if run.get(name, default) != deployed.get(name, default)
    ]
    return problems


RETENTION_SETTINGS = ("keep_cycles", "keep_published_cycles")


def lowered_retention(overrides: dict[str, Any], deployed: dict[str, Any]) -> list[Problem]:
    """A locked forecast may keep more cycles (run directories, published products) than deployed,
    never fewer: a UI user setting `keep_cycles: 1` would delete every retained cycle after the
    next success."""
    if "forecast" not in deployed:
        return []  # only forecasts retain cycles
    problems = []
    for name in RETENTION_SETTINGS:
        kept = (deployed["forecast"] or {}).get(name)
        wanted = overrides.get(name)
        if wanted is None:
            continue
        if kept is None:  # unset: every cycle is kept, and any number would be fewer
            problems.append(Problem(f"overrides.{name}", "this deployment keeps every cycle; it cannot be limited"))
            continue
        try:
            lowered = int(wanted) < int(kept)
        except (TypeError, ValueError):
            continue  # not a number: the forecast's own validation names it
        if lowered:
            problems.append(
                Problem(f"overrides.{name}", f"this deployment keeps at least {kept}; raise it, never lower it")
            )
    return problems


def deployment_run() -> FlowRun | None:
    """This flow run, if it was created from a deployment (by the scheduler, the UI or the API)."""
    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    return flow_run if flow_run is not None and flow_run.deployment_id is not None else None


def enforce_deployment_policy(
    config: BaseModel, overrides: dict[str, Any] | None, allowed_overrides: list[str] | None
) -> None:
    """Raise RunRefused, listing every refused change, if this run breaks its deployment's lock.

    `config` is the run's validated config parameter: its class validates the deployed value.
    """
    allowed = allowed_overrides
    problems: list[Problem] = []
    if (flow_run := deployment_run()) is not None:
        with get_client(sync_client=True) as client:
            deployed = client.read_deployment(flow_run.deployment_id).parameters
        if deployed.get("allowed_overrides") is not None:
            problems += refused_parameters(flow_run.parameters, deployed, type(config))
            problems += lowered_retention(overrides or {}, deployed)
            allowed = deployed["allowed_overrides"]
    if allowed is not None:
        problems += refused_overrides(overrides or {}, allowed)
    if problems:
        raise RunRefused(problems, "this run's parameters")
