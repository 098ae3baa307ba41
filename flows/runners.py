"""Prefect task runners built from what a backend declares.

A backend says which Dask cluster its run stage needs (`dask_cluster`, e.g. SLURM worker
jobs); here that becomes a `prefect_dask.DaskTaskRunner`. A pipeline builds one for its run
stage; an ensemble builds one for all its members, so the worker jobs act as pilot jobs and
`max_jobs` bounds the queue for the whole ensemble. Backends without a cluster run in this
process: in the flow's thread (a pipeline) or in a thread pool (ensemble members).

Build runners in the main thread: importing dask-jobqueue installs a signal handler, which
Python allows only there. A cluster's batch jobs are cancelled if this process dies (the
guard), and a worker lost with its job fails its task run with an error naming the job
(`result_or_lost`) instead of Dask re-running the model elsewhere.
"""

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.futures import PrefectFuture
from prefect.states import Crashed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from rompy_tasks.backends import guard
from rompy_tasks.backends.base import BaseBackendConfig, stage_log_path, tail_lines
from rompy_tasks.core.errors import BackendError, WorkerLostError
from rompy_tasks.core.model_run import ModelRun
from rompy_tasks.core.run_files import open_for_append


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

    cluster_class = _prepared_cluster_class(spec, log_directory)
    return DaskTaskRunner(
        cluster_class=cluster_class,
        cluster_kwargs=spec.cluster_kwargs,
        adapt_kwargs=spec.adapt_kwargs,
    )


def _prepared_cluster_class(spec: Any, log_directory: Path) -> type:
    """The cluster class of `spec`, imported, with its Dask settings, log directory and guard in place."""
    cluster_class = _import_cluster_class(spec.cluster_class)
    import dask

    dask.config.set(spec.dask_config)  # process-wide: read when the scheduler starts
    # Dask's scheduler logs every connection at INFO; keep its warnings. Set after the import:
    # importing distributed resets its loggers to its own config.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    log_directory.mkdir(parents=True, exist_ok=True)
    if spec.batch_job_name:
        guard.watch("slurm", spec.batch_job_name)  # listed until this process ends; its jobs end first
    return cluster_class


@contextmanager
def reduction_client(backend: BaseBackendConfig, workers: Any, owner_dir: Path) -> Iterator[Any]:
    """A Dask client on batch jobs of `backend` sized by `workers` (ensemble statistics' `workers`);
    None when there are none. The jobs end with the block, and with this process (the guard)."""
    if workers is None:
        yield None
        return
    log_directory = owner_dir / "logs" / "slurm"
    spec = backend.reduction_cluster(
        current_api_url(), log_directory, workers.jobs, workers.cores, workers.memory, workers.time_limit
    )
    if spec is None:
        raise BackendError(f"backend {backend.type!r} has no batch jobs to compute on (workers need slurm)")
    backend.preflight()
    cluster_class = _prepared_cluster_class(spec, log_directory)
    from distributed import Client

    with cluster_class(**spec.cluster_kwargs) as cluster, Client(cluster) as client:
        cluster.scale(jobs=spec.adapt_kwargs["n"])
        yield client


class QueueNotes:
    """Says, every ROMPY_TASKS_QUEUE_NOTE_SECONDS (30) that nothing ends while the batch jobs wait
    in the queue, that the run waits and for what: a busy SLURM queue printed nothing for minutes.

    The interval is read per run, not at import: a warm process imported this module long before
    the command whose environment counts."""

    def __init__(self, runner: TaskRunner, backend: BaseBackendConfig):
        self.interval = float(os.environ.get("ROMPY_TASKS_QUEUE_NOTE_SECONDS", "30"))
        # the batch jobs' name, as the cluster submits them (Prefect runs a flow on a copy of its runner)
        self.job_name = (getattr(runner, "cluster_kwargs", None) or {}).get("job_name")
        self.backend = backend
        self.since = self.last = time.monotonic()

    def progressed(self) -> None:
        self.last = time.monotonic()

    def note_if_waiting(self) -> None:
        now = time.monotonic()
        if self.job_name is None or now - self.last < self.interval:
            return
        self.last = now
        if note := self.backend.queue_note(self.job_name):
            get_run_logger().warning("%s; waited %.0f s", note, now - self.since)


EVENTS_DRAIN_SECONDS = 10  # bounded: an API that stopped answering must not hold the end


def drain_events() -> None:
    """Send the task run states this process still holds (Prefect sends them as events, in the
    background) before it goes: at the end of a flow, or in a worker before its job ends.

    In a thread of its own: on a Dask worker this runs on the worker's event loop, where
    Prefect's drain would hand back a coroutine instead of waiting."""
    from prefect.events.worker import EventsWorker

    drain = threading.Thread(target=EventsWorker.drain_all, kwargs={"timeout": EVENTS_DRAIN_SECONDS, "at_exit": False})
    drain.start()
    drain.join()


def deliver_worker_events(runner: TaskRunner) -> None:
    """Before a cluster closes: every worker sends its task runs' last states.

    A worker job ends with its cluster, and states still queued in it would be lost: the
    task run would stay Running in the UI although its model finished."""
    client = getattr(runner, "_client", None)  # a DaskTaskRunner's client, once it started
    if client is not None:
        client.run(drain_events)


def members_runner(backend: BaseBackendConfig, parallel: int, ensemble_dir: Path) -> TaskRunner:
    """Where an ensemble's members run: the backend's cluster, or `parallel` threads here."""
    return cluster_runner(backend, ensemble_dir) or ThreadPoolTaskRunner(max_workers=parallel)


def result_or_lost(
    future: PrefectFuture,
    backend: BaseBackendConfig,
    run: ModelRun,
    raise_on_failure: bool = True,
    notes: "QueueNotes | None" = None,
) -> Any:
    """`future.result(...)`, or WorkerLostError naming the batch job if the worker running it was lost.

    Its task run is then marked Crashed with that message: the worker that would have
    reported a final state is gone, and the UI must not show it Running forever.
    """
    from distributed import KilledWorker

    try:
        if notes is not None:
            while not future.wrapped_future.done():
                future.wait(timeout=1)
                notes.note_if_waiting()
        return future.result(raise_on_failure=raise_on_failure)
    except KilledWorker:
        message = backend.lost_worker_message(run)
        _mark_crashed(future.task_run_id, message)
        log = stage_log_path(run.staging_dir, "run")
        with open_for_append(log) as handle:  # the attempt's own lines end without an exit line
            handle.write(f"# {datetime.now(UTC).isoformat()} {message}\n")
        raise WorkerLostError(message, None, str(log), tail_lines(log)) from None


def _mark_crashed(task_run_id: Any, message: str) -> None:
    """Best effort: a task run whose worker died before its first events arrived is not in the API."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    try:
        with get_client(sync_client=True) as client:
            client.set_task_run_state(task_run_id, Crashed(message=message), force=True)
    except (ObjectNotFound, PrefectHTTPStatusError):
        pass


def attempts_made(future: PrefectFuture) -> int:
    """How many times the task run behind `future` ran (its own retries included)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            return max(1, client.read_task_run(future.task_run_id).run_count)
    except ObjectNotFound:  # its worker died before the task run's first events reached the API
        return 1
