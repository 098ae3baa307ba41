"""The Prefect tasks of the pipeline flow: thin wrappers over the plain stage functions.

Tasks are side-effecting (they write run directories), so none is cached.
"""

from collections.abc import Sequence
from pathlib import Path

from prefect import get_run_logger, task
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.logging.handlers import APILogHandler

from rompy_tasks import pipeline
from rompy_tasks.backends.base import BaseBackendConfig, RunResult
from rompy_tasks.core.model_run import ModelRun
from rompy_tasks.core.secrets import register_secret_source
from rompy_tasks.inputs import StaticInput
from rompy_tasks.pipeline_config import DataCut


def read_prefect_secret(block_name: str) -> str:
    """The value of a Prefect Secret block (`prefect-secret:NAME` in a backend's `secret_env`)."""
    value = Secret.load(block_name, _sync=True).get()
    return value if isinstance(value, str) else str(value)


register_secret_source("prefect-secret", read_prefect_secret)


@task(name="generate-inputs", task_run_name="generate-{model_run.run_id}", cache_policy=NO_CACHE)
def generate_inputs(
    model_run: ModelRun,
    forcing: Sequence[DataCut] = (),
    inputs: Sequence[StaticInput] = (),
    cache: Path | None = None,
) -> list[str]:
    """Create the run directory and write the static inputs, the model's inputs and its forcing cut into it."""
    return pipeline.generate(model_run, forcing, get_run_logger().info, inputs, cache)


@task(name="run-model", task_run_name="run-{model_run.run_id}", cache_policy=NO_CACHE)
def run_model(model_run: ModelRun, backend: BaseBackendConfig) -> RunResult:
    """Execute the model on its backend, streaming every output line to the run logger."""
    try:
        return pipeline.execute(model_run, backend, get_run_logger().info)
    finally:
        flush_api_logs()


def flush_api_logs() -> None:
    """Deliver buffered log lines to the API now.

    On a remote worker (a SLURM job) the process may be retired right after the task.
    """
    APILogHandler().flush()
