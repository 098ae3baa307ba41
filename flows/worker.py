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

The pool types are `rompy-tasks` (a process pool; scripts/operate creates it) and
`rompy-tasks-docker`; Prefect finds these classes through the `prefect.collections` entry
point of our pyproject.
"""

from typing import Any

from prefect.client.schemas.objects import FlowRun
from prefect.states import Failed
from prefect.workers.process import ProcessWorker
from prefect_docker.worker import DockerWorker

from flows.policy import REFUSAL_PREFIX, REFUSED


def refused_job_variables(run_variables: dict[str, Any] | None, deployed: dict[str, Any] | None) -> list[str]:
    """The job variables a run sets to something other than its deployment's value (empty ones change nothing)."""
    deployed = deployed or {}
    return sorted(name for name, value in (run_variables or {}).items() if value and value != deployed.get(name))


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


class RompyTasksWorker(LockedJobVariables, ProcessWorker):
    """Prefect's process worker, refusing job variables a locked deployment does not allow."""

    type = "rompy-tasks"
    _display_name = "rompy-tasks"
    _description = (
        "Runs rompy-tasks flows as local processes, as Prefect's process worker does; runs of a locked "
        "deployment may not change its job variables (command, env, working_dir)."
    )


class RompyTasksDockerWorker(LockedJobVariables, DockerWorker):
    """Prefect's docker worker, refusing job variables a locked deployment does not allow."""

    type = "rompy-tasks-docker"
    _display_name = "rompy-tasks (docker)"
    _description = (
        "Runs rompy-tasks flows in containers, as Prefect's docker worker does; runs of a locked deployment "
        "may not change its job variables (image, volumes, privileged, env, ...)."
    )
