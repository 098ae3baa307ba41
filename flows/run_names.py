"""Forecast runs carry their cycle's name while they wait, not only once they start.

Prefect names a flow run by the flow's `flow_run_name` only when the run starts. Its scheduler
(3.9) inserts the runs of a deployment's schedules in bulk under random slugs
(`myrtle-donkey`): it has no name template and emits no event for them, and no automation
action renames a run (a webhook back into the API would store the API's auth string in a block
every API user can read). So during an outage the UI showed random names pile up, not which
cycles wait. `name_waiting_runs` renames every waiting forecast run (scheduled, late, pending)
to `<forecast>-<YYYYMMDDTHH>`; `scripts/operate` runs it beside the server every few seconds
(`rompy-tasks forecast name-runs --every 5`), so it works while the worker is down, and each
cycle's run does it as it starts.
"""

import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort

from flows.pipeline import overridden_value
from rompy_tasks.core.time import parse_duration
from rompy_tasks.forecast import ForecastConfig, cycle_id, floor_cycle

FORECAST_FLOW = "model-forecast"
WAITING = [StateType.SCHEDULED, StateType.PENDING]
PAGE = 200  # the API's default page size
MAX_REMEMBERED = 5000  # runs named once and not read again; beyond, all are read once more


def cycle_run_name(parameters: dict[str, Any], scheduled: datetime) -> str:
    """`<forecast name>-<YYYYMMDDTHH>`: the `cycle` parameter, else the scheduled start time,
    floored to the cycle interval (both after the run's overrides)."""
    name = overridden_value(parameters, "forecast", "name")
    interval = overridden_value(parameters, "forecast", "cycle_interval")
    interval = ForecastConfig.model_fields["cycle_interval"].default if interval is None else parse_duration(interval)
    return f"{name}-{cycle_id(run_cycle(parameters, scheduled, interval))}"


def run_cycle(parameters: dict[str, Any], scheduled: datetime, interval: timedelta) -> datetime:
    """The cycle a run is for: its `cycle` parameter (API JSON: a string), else its scheduled start, floored."""
    when = parameters.get("cycle") or scheduled
    return floor_cycle(datetime.fromisoformat(when) if isinstance(when, str) else when, interval)


def give_cycle_name(client: SyncPrefectClient, run: FlowRun) -> bool:
    """Rename `run` to its cycle's name if it has another; False if it had it (or has no cycle)."""
    try:
        name = cycle_run_name(run.parameters, run.expected_start_time)
    except Exception:  # noqa: BLE001 - bad parameters: the run itself reports them when it starts
        return False
    if run.name == name:
        return False
    client.update_flow_run(run.id, name=name)
    return True


def waiting_forecast_runs(
    client: SyncPrefectClient, deployment_id: Any = None, skip: Collection[UUID] = ()
) -> list[FlowRun]:
    """Every waiting run of the forecast flow (of one deployment if given; not those in `skip`), page by page."""
    runs: list[FlowRun] = []
    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=WAITING))
    deployment = FlowRunFilterDeploymentId(any_=[deployment_id]) if deployment_id else None
    ids = FlowRunFilterId(not_any_=list(skip)) if skip else None
    while True:
        page = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FORECAST_FLOW])),
            flow_run_filter=FlowRunFilter(id=ids, state=state, deployment_id=deployment),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=PAGE,
            offset=len(runs),
        )
        runs.extend(page)
        if len(page) < PAGE:
            return runs


def name_waiting_runs(client: SyncPrefectClient, named: set[UUID] | None = None) -> int:
    """Give every waiting forecast run its cycle's name; how many were renamed.

    `named`: runs already named by an earlier pass, not read again (their parameters, the whole
    forecast config each, made a pass over 500 waiting runs take 0.3 s); the ones named now are added.
    """
    named = set() if named is None else named
    runs = waiting_forecast_runs(client, skip=named)
    renamed = sum(give_cycle_name(client, run) for run in runs)
    named.update(run.id for run in runs)
    return renamed


def keep_naming(client_factory: Callable[[], Any], every: float, on_error: Callable[[Exception], None]) -> None:
    """`name_waiting_runs` every `every` seconds until stopped; an unreachable API is reported
    and tried again (the server may be restarting), never fatal. Runs named once are not read
    again (the set is emptied when it grows large: runs that ended leave it that way)."""
    named: set[UUID] = set()
    while True:
        if len(named) > MAX_REMEMBERED:
            named.clear()
        try:
            with client_factory() as client:
                name_waiting_runs(client, named)
        except Exception as error:  # noqa: BLE001 - a daemon beside the server outlives its restarts
            on_error(error)
        time.sleep(every)
