"""Our work pools' workers: Prefect's process and docker workers that keep a locked deployment locked.

A flow run's `job_variables` replace what its work pool runs: on a process pool
`{"command": "..."}` runs any shell as the worker's user, with the API's auth string in its
environment; on a docker pool `{"volumes": ["/:/host"], "privileged": true}` hands a container
the host (the UI's Custom run offers the field). The flow's own policy (flows/policy.py)
cannot see it, since the command that would have started the flow is what was replaced. So the
worker checks before anything starts: a run of a locked deployment (one whose parameters hold
`allowed_overrides`) may carry no job variable other than the deployment's own values;
otherwise it ends Failed, named Refused, with one line naming each variable, and no process
starts. Runs of unlocked deployments are run as Prefect's workers run them.

Both start a run as soon as it is scheduled: besides Prefect's regular polls, they follow the
API's event stream and poll at once on each `prefect.flow-run.Scheduled` event (the polls stay,
should the stream drop). The process worker also starts each run faster: instead of a new interpreter running
`python -m prefect.engine` (importing Prefect and our flows, about 2.5 s), it starts
`rompy-tasks engine <flow run id>`, which the warm command process (flows/warm.py) forks with
everything imported; the worker keeps that process running and stops it at its stop signal (SIGTERM or
SIGINT: Prefect's worker 3.9 does not end on the first one and SIGKILLs itself at the second, before
its teardown). Runs already forked go on, as a stopped Prefect worker's runs do. A pool or deployment
that names its own `command` runs that command, as Prefect's worker does.

The pool types are `rompy-tasks` (a process pool; scripts/operate creates it) and
`rompy-tasks-docker`; Prefect finds these classes through the `prefect.collections` entry
point of our pyproject.
"""

import asyncio
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from prefect.client.schemas.objects import FlowRun
from prefect.states import Failed
from prefect.utilities.processutils import command_to_string
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker
from prefect_docker.worker import DockerWorker

from flows.command_socket import stop_warm_process, warm_process_serving
from flows.entry import start_warm_process
from flows.policy import REFUSAL_PREFIX, REFUSED
from rompy_tasks.data_dir import UnsafeDataDir


def refused_job_variables(run_variables: dict[str, Any] | None, deployed: dict[str, Any] | None) -> list[str]:
    """The job variables a run sets to something other than its deployment's value (empty ones change nothing)."""
    deployed = deployed or {}
    return sorted(name for name, value in (run_variables or {}).items() if value and value != deployed.get(name))


SCHEDULED_EVENT = "prefect.flow-run.Scheduled"
STOPPING = threading.Event()  # the worker was told to stop: its warm process is not started again
STREAM_RETRY_SECONDS = 5.0


class PollOnSchedule:
    """A worker that polls at once when a flow run is scheduled, not only every query interval."""

    _poll_lock: asyncio.Lock | None = None
    _wake_task: "asyncio.Task[None] | None" = None

    async def setup(self) -> None:
        await super().setup()
        self._poll_lock = asyncio.Lock()
        self._wake_task = asyncio.get_running_loop().create_task(self._poll_on_scheduled_events())

    async def teardown(self, *exc_info: Any) -> None:
        if self._wake_task is not None:
            self._wake_task.cancel()
        await super().teardown(*exc_info)

    async def get_and_submit_flow_runs(self) -> list[FlowRun]:
        """One poll at a time: the regular loop and an event may ask together."""
        async with self._poll_lock or asyncio.Lock():
            return await super().get_and_submit_flow_runs()

    async def _poll_on_scheduled_events(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        while True:
            try:
                async with get_events_subscriber(
                    filter=EventFilter(event=EventNameFilter(name=[SCHEDULED_EVENT]))
                ) as events:
                    async for _ in events:
                        await self.get_and_submit_flow_runs()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the stream dropped or was refused: the regular polls go on
                self._logger.debug("event stream: %s; polling only, retrying in %s s", error, STREAM_RETRY_SECONDS)
            await asyncio.sleep(STREAM_RETRY_SECONDS)


class LockedJobVariables:
    """A worker's submission step, refusing job variables a locked deployment does not allow."""

    async def _submit_run(self, flow_run: FlowRun) -> None:
        if flow_run.deployment_id is not None and flow_run.job_variables:
            deployment = await self.client.read_deployment(flow_run.deployment_id)
            if (deployment.parameters or {}).get("allowed_overrides") is not None:
                refused = refused_job_variables(flow_run.job_variables, deployment.job_variables)
                if refused:
                    await self._refuse(flow_run, refused)
                    return
        await super()._submit_run(flow_run)

    async def _refuse(self, flow_run: FlowRun, names: list[str]) -> None:
        """End the run before it starts: Failed, named Refused, one line; release what the worker holds for it."""
        message = (
            f"{REFUSAL_PREFIX}job_variables {', '.join(names)}: this deployment is locked and runs only as deployed "
            "(its job variables cannot be changed by a run)"
        )
        self.get_flow_run_logger(flow_run).error(message)
        await self.client.set_flow_run_state(flow_run.id, Failed(name=REFUSED, message=message), force=True)
        await self.client.update_flow_run(flow_run.id, name=f"refused-{str(flow_run.id)[:8]}")
        self._release_limit_slot(flow_run.id)
        self._submitting_flow_run_ids.discard(flow_run.id)
        if self._cancelling_observer is not None:
            self._cancelling_observer.remove_in_flight_flow_run_id(flow_run.id)


def warm_engine_command(flow_run: FlowRun) -> str:
    """The flow run's process: `rompy-tasks engine <id>` (flows/cli/engine.py), through flows/entry.py."""
    return command_to_string([sys.executable, "-P", "-m", "flows.entry", "engine", str(flow_run.id)])


class RompyTasksJobConfiguration(ProcessJobConfiguration):
    """Prefect's process job; without a command of the pool's or deployment's, the warm engine command."""

    def prepare_for_flow_run(self, flow_run: FlowRun, *args: Any, **kwargs: Any) -> None:
        configured = self.command is not None
        super().prepare_for_flow_run(flow_run, *args, **kwargs)
        if not configured:
            self.command = warm_engine_command(flow_run)
            self._command_configured = True  # Prefect then starts exactly this command


def stop_warm() -> None:
    """Stop the warm command process (a later command or worker starts another)."""
    try:
        stop_warm_process()
    except (UnsafeDataDir, OSError):
        pass


def stop_warm_at_stop_signals() -> None:
    """Stop the warm process when the worker is told to stop, then hand the signal on to Prefect's handler.

    Prefect's `worker start` answers the first SIGTERM or SIGINT by interrupting itself and the
    next by SIGKILL; in 3.9 the first does not end an idle worker, so its teardown never ran and the
    warm process lived on (up to its idle timeout) after `scripts/operate stop`."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers belong to the main thread; teardown still stops it
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(sig: int, frame: FrameType | None, previous: Any = previous) -> None:
            STOPPING.set()
            stop_warm()
            if callable(previous):
                previous(sig, frame)
            elif previous != signal.SIG_IGN:  # the default: end as the signal says
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)

        signal.signal(signum, handler)


def keep_warm() -> None:
    """Start the warm command process unless it runs (it exits when idle or when the code changed)
    or the worker is stopping."""
    if STOPPING.is_set():
        return
    try:
        if not warm_process_serving():
            start_warm_process()
    except (UnsafeDataDir, OSError):
        pass  # no warm process: each run imports everything itself, as with Prefect's worker


class RompyTasksWorker(PollOnSchedule, LockedJobVariables, ProcessWorker):
    """Prefect's process worker, refusing job variables a locked deployment does not allow, and
    starting each run as a fork of the warm command process."""

    type = "rompy-tasks"
    job_configuration = RompyTasksJobConfiguration
    _display_name = "rompy-tasks"
    _description = (
        "Runs rompy-tasks flows as local processes, as Prefect's process worker does, each forked from a "
        "process that has Prefect and the flows imported; runs of a locked deployment may not change its job "
        "variables (command, env, working_dir)."
    )

    async def setup(self) -> None:
        await super().setup()
        keep_warm()
        stop_warm_at_stop_signals()

    async def teardown(self, *exc_info: Any) -> None:
        """The warm process goes with the worker."""
        await super().teardown(*exc_info)
        stop_warm()

    async def sync_with_backend(self) -> None:
        """Prefect's heartbeat, which also restarts the warm command process when it has gone."""
        await super().sync_with_backend()
        keep_warm()


class RompyTasksDockerWorker(PollOnSchedule, LockedJobVariables, DockerWorker):
    """Prefect's docker worker, refusing job variables a locked deployment does not allow."""

    type = "rompy-tasks-docker"
    _display_name = "rompy-tasks (docker)"
    _description = (
        "Runs rompy-tasks flows in containers, as Prefect's docker worker does; runs of a locked deployment "
        "may not change its job variables (image, volumes, privileged, env, ...)."
    )
