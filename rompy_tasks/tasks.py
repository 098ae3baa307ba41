"""The Prefect tasks of the pipeline: thin wrappers over core and backends.

Tasks are side-effecting (they write run directories), so none is cached.
"""

from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.logging.handlers import APILogHandler

from rompy_tasks.backends.base import BaseBackendConfig, RunResult
from rompy_tasks.forcing import ForcingSource, write_forcing
from rompy_tasks.pipeline import record_generated


@task(name="generate-inputs", task_run_name="generate-{model_run.run_id}", cache_policy=NO_CACHE)
def generate_inputs(model_run: Any, forcing: Sequence[ForcingSource] = ()) -> list[str]:
    """Create the run directory and write the model's inputs and its forcing cut into it."""
    logger = get_run_logger()
    staging = model_run.prepare_staging()
    files = model_run.config.generate(model_run, staging)
    for source in forcing:
        path = write_forcing(source, model_run.period, staging)
        logger.info("forcing %s: %s cut to the run period into %s", source.name, source.url, path.name)
        files.append(path)
    record_generated(model_run, files)
    logger.info("generated %d input file(s) in %s", len(files), staging)
    return [str(f) for f in files]


@task(name="run-model", task_run_name="run-{model_run.run_id}", cache_policy=NO_CACHE)
def run_model(model_run: Any, backend: BaseBackendConfig) -> RunResult:
    """Execute the model on its backend, streaming every output line to the run logger."""
    logger = get_run_logger()
    logger.info("running %s on the %s backend in %s", model_run.config.model_type, backend.type, model_run.staging_dir)
    try:
        result = backend.execute(model_run, on_line=logger.info)
        logger.info("model finished with exit code %d in %.1f s", result.exit_code, result.duration_seconds)
        return result
    finally:
        # On a remote worker (a SLURM job) the process may be retired right after the task:
        # deliver the model's last log lines to the API first.
        APILogHandler().flush()
