"""Each postprocessor runs as its own Prefect subflow, named `postprocess-<name>`.

Results with a `table` become a table artifact and with `markdown` a markdown artifact, so
implementations stay free of Prefect.
"""

import re
from functools import cache
from typing import Any

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.utilities.timeout import timeout

from rompy_tasks.core.errors import StageError
from rompy_tasks.core.model_run import ModelRun
from rompy_tasks.postprocess.base import BasePostprocessorConfig


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def _publish(result: dict[str, Any], name: str, run_id: str) -> None:
    if result.get("table"):
        create_table_artifact(result["table"], key=artifact_key(name, run_id), description=result.get("message"))
    if result.get("markdown"):
        create_markdown_artifact(
            result["markdown"], key=artifact_key(name, run_id, "md"), description=result.get("message")
        )


def process_within_timeout(model_run: ModelRun, processor: BasePostprocessorConfig) -> dict[str, Any]:
    """`processor.process(model_run)`, stopped with a StageError when it overruns `processor.timeout`.

    Prefect's cancellation raises inside the postprocessor's thread (an alarm in the main
    thread), so an ensemble member's postprocessor is bounded as well as a pipeline's.
    """
    if processor.timeout is None:
        return processor.process(model_run)
    try:
        with timeout(processor.timeout):
            return processor.process(model_run)
    except TimeoutError:
        raise StageError(
            f"postprocessor {processor.processor!r} did not finish within its timeout of {processor.timeout} s"
        ) from None


@cache
def postprocess_flow(name: str) -> Flow:
    """The subflow for postprocessor `name` (created once per process)."""

    def run_postprocessor(model_run: Any, processor: Any) -> dict[str, Any]:
        logger = get_run_logger()
        result = process_within_timeout(model_run, processor)
        logger.info("%s: %s", name, result.get("message", "done"))
        _publish(result, name, model_run.run_id)
        return {k: v for k, v in result.items() if k not in {"table", "markdown"}}

    run_postprocessor.__doc__ = f"Postprocessor {name!r} on one model run's outputs."
    return flow(
        run_postprocessor,
        name=f"postprocess-{name}",
        flow_run_name=f"{name}-{{model_run.run_id}}",
        validate_parameters=False,
    )
