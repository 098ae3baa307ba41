"""The `model-forecast` flow (one operational cycle) and `model-forecast-backfill` (catch-up).

A cycle's time is the `cycle` parameter, or else the flow run's scheduled start time (the
cron instant of a deployment schedule), floored to the cycle interval. The cycle runs the
pipeline as a subflow, hot-started from the newest earlier cycle's restart valid at the
cycle time. A completed cycle is not run again unless `force`. A run the scheduler created
for a cycle older than `max_lateness` records it as skipped; a cycle asked for by name runs.
Backfill runs the missing, failed and skipped cycles of a range oldest first, so each
hot-starts from the one before.

Catch-up after an outage is serial and oldest first: the deployment runs one cycle at a time
(concurrency limit 1), and a cycle's run first runs, oldest first, the earlier cycles whose
runs are still waiting (late or queued), so each hot-starts from its predecessor whichever
waiting run the worker happens to start first; those runs then find their cycle done.
"""

import traceback
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_client, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.states import Cancelled, State

from flows.heartbeats import GUARD_HOOKS, crash_if_this_process_dies, subflow_context
from flows.pipeline import model_pipeline, overridden, postprocess_stage
from flows.policy import RunRefused, deployment_run
from flows.postprocess import artifact_key
from flows.run_names import cycle_run_name, give_cycle_name, run_cycle, waiting_forecast_runs
from rompy_tasks.core.run_files import exclusive
from rompy_tasks.core.time import as_utc
from rompy_tasks.forecast import (
    CycleRecord,
    FailedAttempt,
    ForecastConfig,
    HotStart,
    apply_forecast_overrides,
    attempt_output_dir,
    cold_cycles_to_rechain,
    cycle_id,
    cycle_pipeline,
    cycle_times,
    cycles_dir,
    floor_cycle,
    install_attempt,
    is_late,
    prune_cycles,
    published_destinations,
    publishers,
    read_cycle,
    require_restart,
    retention_fate,
    save_cycle,
    unpublish_old_cycles,
    without_publishers,
)
from rompy_tasks.pipeline import moved_result, write_manifest


def _cycle_run_name() -> str:
    """`<forecast name>-<YYYYMMDDTHH>`, from the parameters or the scheduled start time.

    Never raises: a failing run-name function would crash the flow run before it starts.
    """
    try:
        return cycle_run_name(flow_run.parameters or {}, flow_run.scheduled_start_time)
    except Exception:  # noqa: BLE001 - the flow itself reports bad parameters properly
        return "forecast-cycle"


def resolve_cycle(forecast: ForecastConfig, cycle: datetime | None) -> datetime:
    """The cycle time: the parameter, or the scheduled start time, floored to the cycle interval."""
    return floor_cycle(cycle if cycle is not None else flow_run.scheduled_start_time, forecast.cycle_interval)


def _record_artifact(forecast: ForecastConfig, record: CycleRecord) -> None:
    create_markdown_artifact(
        record.summary_markdown(forecast.name),
        key=artifact_key("forecast", forecast.name, record.run_id),
        description=f"Forecast {forecast.name} cycle {record.run_id}: {record.status}",
    )


@flow(name="model-forecast", flow_run_name=_cycle_run_name, **GUARD_HOOKS)
def forecast_cycle(
    forecast: ForecastConfig,
    cycle: datetime | None = None,
    force: bool = False,
    overrides: dict[str, Any] | None = None,
    allowed_overrides: list[str] | None = None,
) -> CycleRecord | State:
    """Run one forecast cycle: hot start from the previous cycle, pipeline, restarts, retention.

    `cycle` defaults to the scheduled start time; `force` re-runs a completed (or late) cycle;
    `overrides` ({"forecast_length": "72h", ...}) changes single fields of `forecast`. A skipped
    cycle ends in a state named Skipped (not a green Completed); its caller still gets the record.

    Args:
        forecast: The forecast: its pipeline, cycle interval, hot start and retention.
        cycle: The cycle to run (UTC). Empty: the scheduled start time (or now), floored to the cycle interval.
        force: Run the cycle again even if it completed (the completed cycle stays unless the new attempt succeeds).
        overrides: Single fields to change, by dotted path.
        allowed_overrides: The paths a run of a locked deployment may override (globs).
    """
    crash_if_this_process_dies()
    logger = get_run_logger()
    try:
        forecast = overridden(forecast, overrides, apply_forecast_overrides, allowed_overrides)
    except RunRefused as refused:
        return refused.state()
    cycle_time = resolve_cycle(forecast, cycle)
    if cycle is not None and as_utc(cycle) != cycle_time:
        logger.warning("cycle %s is not a cycle time; using %s", as_utc(cycle).isoformat(), cycle_time.isoformat())
    for earlier, by_name in waiting_earlier_cycles(forecast, cycle_time):
        logger.info("cycle %s first: its run is still waiting and this cycle hot-starts after it", cycle_id(earlier))
        _run_cycle_locked(forecast, earlier, force=False, lateness_applies=not by_name)
    record = _run_cycle_locked(forecast, cycle_time, force, lateness_applies=cycle is None)
    if record.status == "skipped":
        return skipped_state(record)
    return record


def skipped_state(record: CycleRecord) -> State:
    """A skipped cycle's final state: type CANCELLED, named Skipped.

    The cycle was deliberately not run. CANCELLED is Prefect's terminal type for "did not run,
    by decision": grey in the UI and not counted by a filter on COMPLETED (a Completed named
    Skipped showed green); FAILED would be retried and read as a fault. (The flow's hooks do not
    run for a returned Cancelled state; the guard leaves a final run alone, so none is needed.)
    """
    return Cancelled(name="Skipped", message=f"cycle {record.run_id} skipped: {record.reason}", data=record)


def waiting_earlier_cycles(forecast: ForecastConfig, cycle_time: datetime) -> list[tuple[datetime, bool]]:
    """Earlier cycles of this run's deployment whose runs are due but waiting, oldest first.

    Each with whether it was asked for by name (its run has a `cycle` parameter) rather than
    created by the scheduler. Cycles already completed are left out. Outside a deployment: none.
    Waiting runs of this deployment get their cycle's name on the way (flows/run_names.py).
    """
    this_run = deployment_run()
    if this_run is None:
        return []
    now = datetime.now(UTC)
    cycles: dict[datetime, bool] = {}
    with get_client(sync_client=True) as client:
        for run in waiting_forecast_runs(client, this_run.deployment_id):
            if run.id == this_run.id:
                continue
            give_cycle_name(client, run)
            if run.expected_start_time is None or run.expected_start_time > now:
                continue  # not due yet
            named = run.parameters.get("cycle")
            earlier = run_cycle(run.parameters, run.expected_start_time, forecast.cycle_interval)
            done = read_cycle(forecast, earlier)
            if earlier < cycle_time and not (done and done.status == "completed"):
                cycles[earlier] = cycles.get(earlier, False) or named is not None
    return sorted(cycles.items())


def _run_cycle_locked(
    forecast: ForecastConfig, cycle_time: datetime, force: bool, lateness_applies: bool
) -> CycleRecord:
    """`_run_cycle` holding the cycle's lock: a second run of the same cycle (a cron run and a
    click) is refused at once, records intact."""
    lock = cycles_dir(forecast) / f".{cycle_id(cycle_time)}.lock"
    with exclusive(lock, f"forecast {forecast.name} cycle {cycle_id(cycle_time)}"):
        return _run_cycle(forecast, cycle_time, force, lateness_applies)


def _run_cycle(forecast: ForecastConfig, cycle_time: datetime, force: bool, lateness_applies: bool) -> CycleRecord:
    """The cycle: skip if done (or late and scheduled), else hot start, pipeline, record, retention."""
    logger = get_run_logger()
    previous = read_cycle(forecast, cycle_time)
    late = lateness_applies and not force and is_late(forecast, cycle_time)
    if (
        previous is not None
        and not force
        and (previous.status == "completed" or (previous.status == "skipped" and late))
    ):
        logger.info(
            "cycle %s already %s (%s); nothing to do (force re-runs it)",
            previous.run_id,
            previous.status,
            previous.written.isoformat(),
        )
        return previous
    record = CycleRecord.begin(forecast, cycle_time)
    if late:
        record.status, record.reason = (
            "skipped",
            f"the scheduler's run came later than max_lateness ({forecast.max_lateness}); not run",
        )
        logger.warning("cycle %s skipped: %s", record.run_id, record.reason)
        save_cycle(forecast, record)
        _record_artifact(forecast, record)
        return record
    if previous is not None and previous.status == "completed":
        return _rerun_completed_cycle(forecast, previous)
    try:
        hot = require_restart(forecast, cycle_time)
        pipeline = cycle_pipeline(forecast, cycle_time, hot)
        _note_start(record, pipeline, hot)
        save_cycle(forecast, record)
        with subflow_context():
            result = model_pipeline(pipeline)
        _complete(forecast, record, pipeline, result, hot)
        _note_published(forecast, record, pipeline)
    except BaseException as err:
        record.status, record.reason = "failed", _reason(err)
        raise
    finally:
        save_cycle(forecast, record)
        _record_artifact(forecast, record)
    return record


def _rerun_completed_cycle(forecast: ForecastConfig, previous: CycleRecord) -> CycleRecord:
    """A forced re-run of a completed cycle, in a fresh directory that replaces the cycle's only on success.

    Until then the completed record, outputs and restarts stand (the next cycle may hot-start from
    them); a failed attempt is noted in the record and history.log, its directory kept for its logs.
    """
    logger = get_run_logger()
    record = CycleRecord.begin(forecast, previous.cycle)
    attempt_dir = attempt_output_dir(forecast, previous.cycle) / record.run_id
    logger.info("cycle %s re-run in %s; it replaces the completed cycle when it succeeds", record.run_id, attempt_dir)
    save_cycle(forecast, previous, event=f"forced re-run started in {attempt_dir}")
    try:
        hot = require_restart(forecast, previous.cycle)
        pipeline = cycle_pipeline(forecast, previous.cycle, hot, attempt_dir.parent)
        _note_start(record, pipeline, hot)
        with subflow_context():
            result = model_pipeline(without_publishers(pipeline))  # products go out once they stand
        record.note_results(pipeline, {t.stage: t.seconds for t in result.timings})
        final = install_attempt(forecast, previous.cycle, attempt_dir)
        final_pipeline = cycle_pipeline(forecast, previous.cycle, hot)
        result = moved_result(result, final)
        write_manifest(result, final_pipeline)
    except BaseException as err:
        attempt = FailedAttempt(when=datetime.now(UTC), reason=_reason(err), run_dir=attempt_dir)
        previous.failed_attempts.append(attempt)
        save_cycle(forecast, previous, event=f"forced re-run failed (the completed cycle stands): {attempt.reason}")
        _record_artifact(forecast, previous)
        logger.error("cycle %s: %s; the completed cycle's outputs and restarts are kept", record.run_id, attempt.note())
        raise
    _complete(forecast, record, final_pipeline, result, hot, timings_done=True)
    try:
        for processor in publishers(final_pipeline).values():
            result.postprocess[processor.processor] = postprocess_stage(final_pipeline.config, processor)
        write_manifest(result, final_pipeline)
        _note_published(forecast, record, final_pipeline)
    except BaseException as err:
        record.reason = f"the re-run replaced the cycle, but publishing its products failed: {_reason(err)}"
        raise
    finally:
        save_cycle(forecast, record)
        _record_artifact(forecast, record)
    return record


def _note_start(record: CycleRecord, pipeline: Any, hot: HotStart | None) -> None:
    logger = get_run_logger()
    record.note_start(pipeline, hot)
    if hot:
        logger.info("cycle %s: hot start from %s (cycle %s)", record.run_id, hot.restart, hot.cycle)
    else:
        logger.warning("cycle %s: %s", record.run_id, record.reason)


def _complete(
    forecast: ForecastConfig,
    record: CycleRecord,
    pipeline: Any,
    result: Any,
    hot: HotStart | None,
    timings_done: bool = False,
) -> None:
    """Note what the cycle's run left, mark it completed and apply retention."""
    if not timings_done:
        record.note_results(pipeline, {t.stage: t.seconds for t in result.timings})
    record.status = "completed"
    record.removed_cycles = prune_cycles(forecast, keep={record.run_id} | ({hot.cycle} if hot else set()))
    if record.removed_cycles:
        get_run_logger().info("keep_cycles=%s: removed %s", forecast.keep_cycles, ", ".join(record.removed_cycles))


def _note_published(forecast: ForecastConfig, record: CycleRecord, pipeline: Any) -> None:
    """Record where the cycle's products went; remove older cycles' beyond keep_published_cycles."""
    record.published = published_destinations(pipeline)
    if not record.published:
        return
    record.unpublished_cycles = unpublish_old_cycles(forecast, record)
    if record.unpublished_cycles:
        get_run_logger().info(
            "keep_published_cycles=%s: removed the published products of %s",
            forecast.keep_published_cycles,
            ", ".join(record.unpublished_cycles),
        )


def _reason(err: BaseException) -> str:
    return "".join(traceback.format_exception_only(err)).strip()[-2000:]


@flow(name="model-forecast-backfill", flow_run_name="{forecast.name}-backfill", **GUARD_HOOKS)
def forecast_backfill(
    forecast: ForecastConfig, start: datetime, end: datetime, force: bool = False, rechain: bool = False
) -> list[CycleRecord]:
    """Run every cycle from `start` to `end` oldest first; stop at the first failed cycle.

    `rechain`: then re-run (forced, each in a fresh directory) the completed cycles after `end`
    from the first one that cold-started but now finds a restart, so the chain is hot again.
    """
    crash_if_this_process_dies()
    logger = get_run_logger()
    records = []
    try:
        for cycle in cycle_times(start, end, forecast.cycle_interval):
            with subflow_context():
                records.append(forecast_cycle(forecast, cycle=cycle, force=force))
        later = cold_cycles_to_rechain(forecast, as_utc(end)) if rechain else []
        if later:
            logger.info("re-chaining %s from the backfilled restarts", ", ".join(map(cycle_id, later)))
        for cycle in later:
            with subflow_context():
                records.append(forecast_cycle(forecast, cycle=cycle, force=True))
    finally:
        fate = retention_fate(forecast, [r.run_id for r in records])
        for record in records:
            if fate.get(record.run_id, "kept") != "kept":
                logger.warning("cycle %s: %s", record.run_id, fate[record.run_id])
        create_table_artifact(
            [
                {
                    "cycle": r.run_id,
                    "status": r.status,
                    "start": r.start or "-",
                    "restart from": r.restart_cycle or "-",
                    "directory": fate.get(r.run_id, "-"),
                    "note": r.reason or "",
                }
                for r in records
            ],
            key=artifact_key("forecast-backfill", forecast.name),
            description=f"Backfill of {forecast.name} from {as_utc(start).isoformat()} to {as_utc(end).isoformat()}",
        )
    return records
