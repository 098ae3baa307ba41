"""Which process orchestrates a flow run, recorded on the run, so that a run whose orchestrator
died while the API was down does not stay Running for good.

An orchestrator's guard marks its runs Crashed when it dies, but only if the API answers then.
So each flow run the command line starts carries labels naming its host and process (a pid
with its boot and start time: pids are reused), and a local server that starts marks Crashed
the unfinished runs of this host whose process is gone. Runs started by a deployment's worker
belong to that worker (Prefect's own heartbeats and the worker handle them) and carry no labels.
"""

import os
import socket
from pathlib import Path

from rompy_tasks.backends.guard import crash_unfinished, list_flow_runs

HOST_LABEL = "rompy-tasks.orchestrator.host"
PID_LABEL = "rompy-tasks.orchestrator.pid"
PROCESS_LABEL = "rompy-tasks.orchestrator.process"
ACTIVE = ["PENDING", "RUNNING", "PAUSED", "CANCELLING"]


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live, non-zombie process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    state, started = fields[0], fields[19]
    return None if state in {"Z", "X"} else int(started)


def process_identity(pid: int) -> str | None:
    """`pid` as one process for good: this boot's id and the process's start time; None if it is gone."""
    started = process_start_time(pid)
    if started is None:
        return None
    return f"{Path('/proc/sys/kernel/random/boot_id').read_text().strip()}:{started}"


def orchestrator_labels() -> dict[str, str | int]:
    """The labels naming this process as a flow run's orchestrator."""
    return {
        HOST_LABEL: socket.gethostname(),
        PID_LABEL: os.getpid(),
        PROCESS_LABEL: process_identity(os.getpid()) or "",
    }


def crash_runs_of_dead_orchestrators(api_url: str, auth: str | None = None) -> list[str]:
    """Mark Crashed the unfinished flow runs of this host whose orchestrating process is gone; their names."""
    host = socket.gethostname()
    query = {
        "flow_runs": {
            "state": {"type": {"any_": ACTIVE}},
            "deployment_id": {"is_null_": True},
            "parent_task_run_id": {"is_null_": True},
        }
    }
    crashed = []
    for run in list_flow_runs(api_url, query, auth):
        labels = run.get("labels") or {}
        if labels.get(HOST_LABEL) != host or not labels.get(PROCESS_LABEL):
            continue
        if process_identity(int(labels[PID_LABEL])) == labels[PROCESS_LABEL]:
            continue  # its orchestrator still runs
        crash_unfinished(api_url, run["id"], auth=auth)
        crashed.append(run["name"])
    return crashed
