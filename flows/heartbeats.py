"""Liveness of flow runs: what tells the API a run's process is alive, or that it died.

A subflow runs in its parent's process, and the parent flow run's heartbeat already tells
the API that process is alive. Each heartbeat thread also costs up to 1 s to stop (it sleeps
in whole seconds and the engine joins it), which dominated short ensemble members and
postprocessors (measured: 1.17 s -> 0.39 s per shell pipeline). The top-level flow keeps its
heartbeat (the CLI turns it off: it has its own guard, below).

If the process dies without reporting (SIGKILL, OOM killer, a lost node), this process's
guard (`rompy_tasks.backends.guard`) marks its flow runs and their unfinished children
Crashed, so the UI does not show them Running forever.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows.runners import current_api_url
from rompy_tasks.backends import guard


@contextmanager
def subflow_context() -> Iterator[None]:
    """Call subflows inside this (it is per thread/context, like Prefect's settings)."""
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def crash_if_this_process_dies() -> None:
    """Call first in a flow: if this process dies before the run ends, the run is marked Crashed."""
    guard.watch_flow_run(flow_run.id, current_api_url())
