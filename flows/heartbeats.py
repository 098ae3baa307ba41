"""Liveness of flow runs: what tells the API a run's process is alive, or that it died.

A subflow runs in its parent's process, and the parent flow run's heartbeat already tells
the API that process is alive. Each heartbeat thread also costs up to 1 s to stop (it sleeps
in whole seconds and the engine joins it), which dominated short ensemble members and
postprocessors (measured: 1.17 s -> 0.39 s per shell pipeline). The top-level flow keeps its
heartbeat (the CLI turns it off: it has its own guard, below).

If the process dies without reporting (SIGKILL, OOM killer, a lost node), this process's
guard (`rompy_tasks.backends.guard`) marks its flow runs and their unfinished children
Crashed, so the UI does not show them Running forever. A flow run that ends (completed or
failed) first delivers its task runs' state events, then is released from the guard: those
states travel as events, and the API may still show a finished member Running while they
are on the way; a forced Crashed would then overwrite its Completed.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.schemas.objects import FlowRun
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows.runners import current_api_url, drain_events
from rompy_tasks.backends import guard
from rompy_tasks.orchestrators import orchestrator_labels


@contextmanager
def subflow_context() -> Iterator[None]:
    """Call subflows inside this (it is per thread/context, like Prefect's settings)."""
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def release_when_ended(flow: object, run: FlowRun, state: object) -> None:
    """A flow's on_completion/on_failure hook: deliver this process's events, then release the run."""
    drain_events()
    guard.release_flow_run(run.id)


GUARD_HOOKS = {"on_completion": [release_when_ended], "on_failure": [release_when_ended]}


def crash_if_this_process_dies() -> None:
    """Call first in a flow: if this process dies before the run ends, the run is marked Crashed.

    A top-level run started from the command line also names this process on the run (labels), so
    that the next local server start marks it Crashed if the guard could not (the API was down too)."""
    guard.watch_flow_run(flow_run.id, current_api_url())
    from prefect.context import FlowRunContext

    run = FlowRunContext.get().flow_run
    if run.deployment_id is None and run.parent_task_run_id is None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(run.id, orchestrator_labels())
