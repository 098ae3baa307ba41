"""The `model-pipeline` flow: generate -> run -> postprocess for one model run.

The whole pipeline config is one pydantic parameter, so a deployment gets a full JSON-schema
form. `first_stage`/`last_stage` select a contiguous part (re-run postprocessing only, or
generate only). A failure keeps inputs and logs; `cleanup_on_failure` removes outputs.
"""

import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from flows.heartbeats import GUARD_HOOKS, crash_if_this_process_dies, subflow_context
from flows.policy import RunRefused, enforce_deployment_policy
from flows.postprocess import artifact_key, postprocess_flow
from flows.run_form import flattened_overrides
from flows.runners import QueueNotes, attempts_made, cluster_runner, deliver_worker_events, result_or_lost
from rompy_tasks.backends.base import BaseBackendConfig, RunResult
from rompy_tasks.core.errors import WorkerLostError
from rompy_tasks.core.model_run import ModelRun
from rompy_tasks.core.secrets import REDACTED, redact_url
from rompy_tasks.pipeline import (
    PipelineResult,
    Stage,
    StageCalls,
    apply_overrides,
    execute_stages,
    new_result,
    remove_outputs,
    select_stages,
)
from rompy_tasks.plugins import pipeline_config_class
from rompy_tasks.postprocess.base import BasePostprocessorConfig
from rompy_tasks.tasks import generate_inputs, run_model

PipelineConfig = pipeline_config_class()
T = TypeVar("T")


def overridden_value(parameters: dict[str, Any], config: str, path: str) -> Any:
    """The value at dotted `path` of the `config` parameter, after the run's `overrides`.

    For run names, which Prefect computes from the parameters before the flow applies
    overrides. Parameters are API JSON or, in-process, the config objects themselves.
    """
    overrides = parameters.get("overrides") or {}
    if path in overrides:
        return overrides[path]
    value = parameters.get(config)
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
    return value


def _pipeline_run_name() -> str:
    """The run id (after overrides): a run named `veros-acc` must not hide `config.run_id=storm`."""
    return str(overridden_value(flow_run.parameters or {}, "pipeline", "config.run_id") or "model-pipeline")


def overridden(
    config: T,
    overrides: dict[str, Any] | None,
    apply: Callable[[T, dict[str, Any]], T],
    allowed_overrides: list[str] | None = None,
) -> T:
    """`config` with a flow's `overrides` parameter applied (validated) and logged.

    First, the run must keep to its deployment's lock (`allowed_overrides`, flows/policy.py).
    """
    overrides = flattened_overrides(overrides, allowed_overrides)  # the narrowed run form's objects
    enforce_deployment_policy(config, overrides, allowed_overrides)
    if not overrides:
        return config
    config = apply(config, overrides)
    shown = (
        f"{path}={REDACTED if 'env_vars' in path.split('.') else redact_url(str(value))}"
        for path, value in overrides.items()
    )
    get_run_logger().info("applied overrides: %s", ", ".join(shown))  # env values and URL credentials hidden
    return config


@flow(name="remote-run-stage", flow_run_name="run-{model_run.run_id}", validate_parameters=False)
def remote_run_stage(
    model_run: ModelRun, backend: BaseBackendConfig, retries: int, retry_delay_seconds: float
) -> RunResult:
    """The run stage on a backend's own task runner (e.g. Dask workers in SLURM jobs).

    A lost worker job ends its attempt with an error naming the job; another attempt starts
    only while `retries` allows, logged as a retry, after the lost attempt's outputs are removed.
    """
    attempts_left = retries + 1
    task_runner = FlowRunContext.get().task_runner
    while True:
        task = run_model.with_options(retries=attempts_left - 1, retry_delay_seconds=retry_delay_seconds)
        future = task.submit(model_run, backend)
        try:
            result = result_or_lost(future, backend, model_run, notes=QueueNotes(task_runner, backend))
            deliver_worker_events(task_runner)
            return result
        except WorkerLostError as err:
            attempts_left -= attempts_made(future)
            if attempts_left <= 0:
                raise
            removed = remove_outputs(model_run)
            get_run_logger().warning(
                "%s; retrying (%d attempt(s) left) after removing %d output file(s) of the lost attempt",
                str(err).split("\n")[0],
                attempts_left,
                len(removed),
            )
            time.sleep(retry_delay_seconds)


def run_stage(model_run: ModelRun, backend: BaseBackendConfig, retries: int, retry_delay_seconds: float) -> RunResult:
    """Run the model: in this thread, or as a subflow on the cluster the backend declares.

    Only the run stage moves (generate and postprocess stay where the flow runs), so the
    same flow works from the CLI and from a deployment.
    """
    backend.preflight()
    runner = cluster_runner(backend, model_run.staging_dir)
    if runner is None:
        task = run_model.with_options(retries=retries, retry_delay_seconds=retry_delay_seconds)
        return task(model_run, backend)
    with subflow_context():
        return remote_run_stage.with_options(task_runner=runner)(model_run, backend, retries, retry_delay_seconds)


def postprocess_stage(model_run: ModelRun, processor: BasePostprocessorConfig) -> dict[str, Any]:
    """One postprocessor, as its own subflow run."""
    with subflow_context():
        return postprocess_flow(processor.processor)(model_run, processor)


@flow(name="model-pipeline", flow_run_name=_pipeline_run_name, **GUARD_HOOKS)
def model_pipeline(
    pipeline: PipelineConfig,
    first_stage: Stage = "generate",
    last_stage: Stage = "postprocess",
    cleanup_on_failure: bool = False,
    validate_stages: bool = True,
    overrides: dict[str, Any] | None = None,
    allowed_overrides: list[str] | None = None,
) -> PipelineResult:
    """Generate inputs, run the model on the configured backend, postprocess the outputs.

    `overrides` ({"config.period.duration": "2d", ...}) changes single fields of `pipeline`;
    a deployment's `allowed_overrides` (globs such as `config.period.*`) locks everything else.

    Args:
        pipeline: The run: model config, backend and postprocessors.
        first_stage: Start at this stage (run or postprocess reuse the run directory's inputs).
        last_stage: Stop after this stage.
        cleanup_on_failure: Remove the run directory if the run fails (it is kept by default).
        validate_stages: Check before starting that the stages asked for can run.
        overrides: Single fields to change, by dotted path.
        allowed_overrides: The paths a run of a locked deployment may override (globs).
    """
    crash_if_this_process_dies()
    logger = get_run_logger()
    try:
        pipeline = overridden(pipeline, overrides, apply_overrides, allowed_overrides)
    except RunRefused as refused:
        return refused.state()
    result = new_result(pipeline, select_stages(first_stage, last_stage))
    calls = StageCalls(
        generate=generate_inputs,
        run=lambda run, backend: run_stage(run, backend, pipeline.run_retries, pipeline.run_retry_delay_seconds),
        postprocess=postprocess_stage,
    )
    try:
        execute_stages(
            pipeline,
            result,
            calls,
            validate_stages=validate_stages,
            cleanup_on_failure=cleanup_on_failure,
            log=logger.info,
        )
    finally:
        create_markdown_artifact(
            result.summary_markdown(pipeline),
            key=artifact_key("pipeline", pipeline.config.run_id),
            description=f"Model run {pipeline.config.run_id}: {result.status}",
        )
    return result
