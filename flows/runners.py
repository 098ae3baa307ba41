"""Prefect task runners built from what a backend declares.

A backend says which Dask cluster its run stage needs (`dask_cluster`, e.g. SLURM worker
jobs); here that becomes a `prefect_dask.DaskTaskRunner`. A pipeline builds one for its run
stage; an ensemble builds one for all its members, so the worker jobs act as pilot jobs and
`max_jobs` bounds the queue for the whole ensemble. Backends without a cluster run in this
process: in the flow's thread (a pipeline) or in a thread pool (ensemble members).

Build runners in the main thread: importing dask-jobqueue installs a signal handler, which
Python allows only there.
"""

import importlib
import sys
import threading
from pathlib import Path

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from rompy_tasks.backends.base import BaseBackendConfig
from rompy_tasks.core.errors import BackendError


def current_api_url() -> str:
    """The Prefect API this process uses; starts (or joins) the temporary server if none is set."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        return url
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the same singleton Prefect's own client uses
    server.start()
    return server.api_url


def _import_cluster_class(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    top = module_name.split(".")[0]
    if top not in sys.modules and threading.current_thread() is not threading.main_thread():
        raise BackendError(
            f"{path} must first be imported in the main thread (it installs a signal handler); "
            "build the task runner before starting worker threads"
        )
    return getattr(importlib.import_module(module_name), name)


def cluster_runner(backend: BaseBackendConfig, owner_dir: Path) -> TaskRunner | None:
    """The DaskTaskRunner for a backend that declares a cluster, else None.

    Worker job output goes to `<owner_dir>/logs/slurm/` (the run's or the ensemble's directory).
    """
    log_directory = owner_dir / "logs" / "slurm"
    spec = backend.dask_cluster(current_api_url(), log_directory)
    if spec is None:
        return None
    from prefect_dask import DaskTaskRunner

    log_directory.mkdir(parents=True, exist_ok=True)
    return DaskTaskRunner(
        cluster_class=_import_cluster_class(spec.cluster_class),
        cluster_kwargs=spec.cluster_kwargs,
        adapt_kwargs=spec.adapt_kwargs,
    )


def members_runner(backend: BaseBackendConfig, parallel: int, ensemble_dir: Path) -> TaskRunner:
    """Where an ensemble's members run: the backend's cluster, or `parallel` threads here."""
    return cluster_runner(backend, ensemble_dir) or ThreadPoolTaskRunner(max_workers=parallel)
