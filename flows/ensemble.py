"""The `model-ensemble` flow: many members of one pipeline, concurrent and resumable.

A member is one Prefect task run named by its run id: its own state, logs and retries in
the UI, orchestrated client-side (its states travel as events), with its pipeline stages
run inside it. That keeps the cost of a member near the cost of its model. Members run on
one task runner for the whole ensemble: threads in this process, or the Dask cluster the
backend declares (SLURM worker jobs shared by all members as pilot jobs, at most
`max_jobs` in the queue, closed when the ensemble ends). On a cluster every member is handed
to its scheduler at once and waits there for a free worker job, so the jobs decide how many
run (a job takes the next member the moment one ends); `max_parallel`, when set, bounds the
members in flight (2 by default in threads here). Starts are `stagger_seconds` apart;
`allow_failures` decides the flow's state.
A completed member leaves a record holding the hash of its resolved config, so a re-run
skips it and runs only what failed, was interrupted or changed. Per-member files (manifest,
logs, record) stay on disk; the summary artifact lists every member.
"""

import os
import queue
import shlex
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run, task_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from flows.heartbeats import GUARD_HOOKS, crash_if_this_process_dies, subflow_context
from flows.pipeline import overridden, overridden_value
from flows.policy import RunRefused
from flows.postprocess import artifact_key, process_within_timeout
from flows.runners import QueueNotes, deliver_worker_events, members_runner, reduction_client, result_or_lost
from rompy_tasks.backends import guard
from rompy_tasks.backends.process import allow_starting, child_environment, run_process, terminate_running
from rompy_tasks.core.errors import EngineUnreachable, StageError, WorkerLostError
from rompy_tasks.core.records import append_history, missing_history, read_record
from rompy_tasks.core.run_files import exclusive
from rompy_tasks.ensemble import (
    LOCAL_PARALLEL,
    EnsembleConfig,
    Member,
    apply_ensemble_overrides,
    ensemble_dir,
    is_complete,
    member_history_line,
    record_path,
    records_dir,
    resolve_members,
    write_member_record,
)
from rompy_tasks.pipeline import (
    STAGES,
    StageCalls,
    completed_result,
    execute,
    execute_stages,
    generate,
    new_result,
    write_manifest,
)
from rompy_tasks.tasks import flush_api_logs


class MemberOutcome(BaseModel):
    index: int
    run_id: str
    overrides: dict[str, Any]
    status: str  # completed | failed | skipped (completed in an earlier run) | not started
    attempts: int = 0
    duration_seconds: float | None = Field(None, description="The last attempt's")
    exit_code: int | None = None
    run_dir: str
    error: str | None = None
    engine_unreachable: bool = Field(False, description="It failed because its backend's engine stopped answering")


class EnsembleResult(BaseModel):
    name: str
    ensemble_dir: str
    members: list[MemberOutcome] = Field(default_factory=list)
    postprocess: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(m.status == status for m in self.members)


class MemberFailed(RuntimeError):
    """A member's attempt failed; carries its outcome for the summary."""

    def __init__(self, outcome: MemberOutcome):
        self.outcome = outcome
        super().__init__(f"member {outcome.run_id} failed (attempt {outcome.attempts}): {outcome.error}")

    def __reduce__(self):
        return (type(self), (self.outcome,))


def _outcome(member: Member, status: str, **fields: Any) -> MemberOutcome:
    return MemberOutcome(
        index=member.index,
        run_id=member.run_id,
        overrides=member.overrides,
        status=status,
        run_dir=str(member.pipeline.config.staging_dir),
        **fields,
    )


TERMINAL_ONLY = {"send_to_api": False}  # a log record's extra: Prefect's API log handler skips it


@task(name="ensemble-member", task_run_name="{member.run_id}", cache_policy=NO_CACHE)
def run_member(member: Member, where: Path, flow_pid: int) -> MemberOutcome:
    """One member: its whole pipeline (generate, run, postprocess) in this task run; then its record.

    `flow_pid` tells whether this runs in the flow's process or remotely (a SLURM worker job).
    """
    logger = get_run_logger()
    attempt = task_run.get_run_count()
    started = time.monotonic()
    result = new_result(member.pipeline, list(STAGES))
    # Stage lines (files generated, model started and finished, manifest written) are in the
    # member's own files; at thousands of members every API log row counts, so the model's start
    # and end reach only the terminal (and its progress bar), and the member's task run gets one
    # line when it succeeds (a failure is logged by Prefect and by the flow).
    calls = StageCalls(
        generate=lambda run, forcing, inputs, cache: generate(run, forcing, logger.debug, inputs, cache),
        run=lambda run, backend: execute(run, backend, lambda line: logger.info(line, extra=TERMINAL_ONLY)),
        postprocess=process_within_timeout,
    )
    try:
        execute_stages(member.pipeline, result, calls, log=logger.debug)
    except Exception as err:
        error = str(err).split("\n")[0]
        raise MemberFailed(
            _outcome(
                member,
                "failed",
                attempts=attempt,
                error=error,
                exit_code=getattr(err, "exit_code", None),
                duration_seconds=time.monotonic() - started,
                engine_unreachable=isinstance(err, EngineUnreachable),
            )
        ) from err
    finally:
        if os.getpid() != flow_pid:
            flush_api_logs()  # a remote worker may be retired right after this task
    outcome = _outcome(
        member,
        "completed",
        attempts=attempt,
        exit_code=result.run.exit_code if result.run else None,
        duration_seconds=time.monotonic() - started,
    )
    logger.info(
        "completed in %.1f s, model exit code %s, in %s", outcome.duration_seconds, outcome.exit_code, outcome.run_dir
    )
    if result.manifest_error:
        logger.warning(
            "member %s completed, but its manifest could not be written (%s); the next run of the ensemble "
            "writes it without running the model again",
            member.run_id,
            result.manifest_error,
        )
    write_member_record(
        where,
        member,
        status="completed",
        attempts=attempt,
        duration_seconds=outcome.duration_seconds,
        exit_code=outcome.exit_code,
        manifest_missing=bool(result.manifest_error),
    )
    return outcome


def repair_done_members(done: list[Member], where: Path) -> None:
    """Completed members a kill left without their history line, or a full disk without their
    manifest: write those now from the completion records, run nothing (one read of each record)."""
    logger = get_run_logger()
    history: dict[str, str] = {}  # each completion's history line -> its member
    without_manifest: list[tuple[Member, dict[str, Any]]] = []
    for member in done:
        record = read_record(record_path(where, member.run_id)) or {}
        if record:
            history[member_history_line(record)] = member.run_id
        if record.get("manifest_missing"):
            without_manifest.append((member, record))
    for line in sorted(missing_history(records_dir(where), set(history))):
        append_history(records_dir(where), line)
        logger.warning(
            "member %s: its completion was missing from history.log (killed as it was recorded)", history[line]
        )
    for member, record in without_manifest:
        try:
            manifest = write_manifest(completed_result(member.pipeline), member.pipeline)
        except OSError as err:
            logger.warning("member %s: its manifest still cannot be written: %s", member.run_id, err.strerror or err)
            continue
        write_member_record(where, member, **{**_record_fields(record), "manifest_missing": False})
        logger.warning("member %s: wrote its missing manifest %s (from its completion record)", member.run_id, manifest)


def _record_fields(record: dict[str, Any]) -> dict[str, Any]:
    """A record's own fields, without those write_member_record sets itself."""
    return {k: v for k, v in record.items() if k not in {"run_id", "index", "config_hash", "overrides", "written"}}


def run_batch_commands(commands: list[str], where: Path, stage: str) -> None:
    """pre_batch / post_batch: each command in the ensemble directory; a failure stops the batch."""
    for command in commands:
        log = where / "logs" / f"{stage}.log"
        outcome = run_process(shlex.split(command), cwd=where, log_path=log, env=child_environment({}), timeout=3600)
        if outcome.exit_code != 0:
            raise StageError(f"{stage} command {command!r} failed with exit code {outcome.exit_code}; see {log}")


def _member_outcome(member: Member, future: PrefectFuture) -> MemberOutcome:
    pipeline = member.pipeline
    try:
        value = result_or_lost(future, pipeline.backend, pipeline.config, raise_on_failure=False)
    except WorkerLostError as err:  # not retried: a re-run of the ensemble resumes it
        return _outcome(member, "failed", attempts=1, error=str(err).split("\n")[0])
    if isinstance(value, MemberOutcome):
        return value
    if isinstance(value, MemberFailed):
        return value.outcome
    return _outcome(member, "failed", error=str(value).split("\n")[0])  # crashed or cancelled


def run_members(
    runner: TaskRunner, ensemble: EnsembleConfig, todo: list[Member], where: Path, parallel: int
) -> list[MemberOutcome]:
    """Submit members as slots free up (at most `parallel` in flight, starts staggered); collect outcomes.

    Done-callbacks only hand the future over; results are read here, in the flow's thread
    (a Dask callback runs on the client's event loop, where waiting on a result would deadlock).
    """
    logger = get_run_logger()
    member_task = run_member.with_options(retries=ensemble.retries, retry_delay_seconds=ensemble.retry_delay_seconds)
    finished: queue.Queue = queue.Queue()
    pending: dict[int, Member] = {}
    outcomes: list[MemberOutcome] = []
    unreachable: list[MemberOutcome] = []  # the first member whose engine stopped answering
    notes = QueueNotes(runner, ensemble.pipeline.backend)

    def collect_one(wait: float) -> None:
        try:
            index, future = finished.get(timeout=wait)
        except queue.Empty:
            notes.note_if_waiting()
            return
        notes.progressed()
        outcome = _member_outcome(pending.pop(index), future)
        outcomes.append(outcome)
        if outcome.engine_unreachable and not unreachable:
            unreachable.append(outcome)
        if outcome.status == "failed":  # on the terminal too: why, in one line
            logger.warning("member %s failed after %d attempt(s): %s", outcome.run_id, outcome.attempts, outcome.error)
        else:  # its task run says so in the UI; the terminal's progress bar counts this line
            logger.info(
                "member %s %s after %d attempt(s)",
                outcome.run_id,
                outcome.status,
                outcome.attempts,
                extra=TERMINAL_ONLY,
            )

    for position, member in enumerate(todo):
        while not finished.empty():
            collect_one(0)
        while len(pending) >= parallel and not unreachable:
            collect_one(0.5)
        if unreachable:
            outcomes += _not_started(todo[position:], unreachable[0])
            break
        if position and ensemble.stagger_seconds:
            time.sleep(ensemble.stagger_seconds)
        future = runner.submit(member_task, {"member": member, "where": where, "flow_pid": os.getpid()})
        guard.watch_record(future.task_run_id, record_path(where, member.run_id))
        pending[member.index] = member
        future.add_done_callback(lambda f, index=member.index: finished.put((index, f)))
    while pending:
        collect_one(0.5)
    return outcomes


def _not_started(members: list[Member], cause: MemberOutcome) -> list[MemberOutcome]:
    """The members left queued when the engine stopped answering: one warning for all, none started."""
    reason = f"not started: {cause.error}"
    get_run_logger().warning(
        "%d member(s) not started: member %s found the engine unreachable (%s); "
        "once it answers again, run the ensemble again to run them",
        len(members),
        cause.run_id,
        cause.error,
    )
    return [_outcome(member, "not started", error=reason) for member in members]


def _ensemble_run_name() -> str:
    """The ensemble's name after the run's overrides."""
    return str(overridden_value(flow_run.parameters or {}, "ensemble", "name") or "model-ensemble")


@flow(name="model-ensemble", flow_run_name=_ensemble_run_name, **GUARD_HOOKS)
def model_ensemble(
    ensemble: EnsembleConfig,
    indexes: list[int] | None = None,
    max_parallel: int | None = None,
    overrides: dict[str, Any] | None = None,
    allowed_overrides: list[str] | None = None,
) -> EnsembleResult:
    """Run the members of an ensemble (all, or `indexes`), resuming from earlier runs.

    `overrides` ({"pipeline.config.period.duration": "2d", ...}) changes single fields of `ensemble`.

    Args:
        ensemble: The members and the pipeline they vary.
        indexes: Run only these members (by index); the others are left as they are.
        max_parallel: Members in flight at once (default: the ensemble's own; see EnsembleConfig).
        overrides: Single fields to change, by dotted path.
        allowed_overrides: The paths a run of a locked deployment may override (globs).
    """
    crash_if_this_process_dies()
    try:
        ensemble = overridden(ensemble, overrides, apply_ensemble_overrides, allowed_overrides)
    except RunRefused as refused:
        return refused.state()
    members = resolve_members(ensemble)
    wanted = indexes if indexes is not None else ensemble.indexes
    if wanted is not None:
        members = [m for m in members if m.index in set(wanted)]
    parallel = max_parallel or ensemble.max_parallel
    where = ensemble_dir(ensemble)
    with exclusive(where / ".ensemble.lock", f"ensemble {ensemble.name} ({where})"):
        result = run_ensemble(ensemble, members, where, parallel)
    failed, not_started = result.count("failed"), result.count("not started")
    if not_started:
        raise RuntimeError(
            f"{failed} member(s) failed and {not_started} not started: the engine stopped answering "
            "(see the first failed member); run the ensemble again once it is back"
        )
    if failed > ensemble.allow_failures:
        raise RuntimeError(f"{failed} member(s) failed, more than allow_failures={ensemble.allow_failures}")
    return result


def run_ensemble(ensemble: EnsembleConfig, members: list[Member], where: Path, parallel: int | None) -> EnsembleResult:
    """Pre-batch, the members not yet complete, ensemble postprocessors, post-batch, summary artifact."""
    logger = get_run_logger()
    result = EnsembleResult(name=ensemble.name, ensemble_dir=str(where))
    run_batch_commands(ensemble.pre_batch, where, "pre_batch")

    todo = [m for m in members if not is_complete(where, m)]
    done_before = {m.index for m in members} - {m.index for m in todo}
    result.members += [_outcome(m, "skipped") for m in members if m.index in done_before]
    repair_done_members([m for m in members if m.index in done_before], where)
    if not todo:
        logger.info("0 member(s) to run, %d already complete", len(done_before))
    else:
        backend = ensemble.pipeline.backend
        backend.preflight()
        allow_starting()
        with members_runner(backend, parallel or LOCAL_PARALLEL, where) as runner:
            # on a cluster, unless max_parallel says, every member waits at its scheduler for a worker job
            at_cluster = parallel is None and not isinstance(runner, ThreadPoolTaskRunner)
            in_flight = len(todo) if at_cluster else parallel or LOCAL_PARALLEL
            limit = "as the worker jobs free up" if at_cluster else f"at most {in_flight} at once"
            logger.info("%d member(s) to run, %d already complete, %s", len(todo), len(done_before), limit)
            try:
                result.members += run_members(runner, ensemble, todo, where, in_flight)
                deliver_worker_events(runner)
            except BaseException:
                # Ctrl-C, SIGTERM, cancellation: stop the members' models before the runner waits for them
                stopped = terminate_running()
                logger.warning("ensemble interrupted; stopped %d running model(s)", stopped)
                raise
    result.members.sort(key=lambda m: m.index)

    done = {m.run_id: Path(m.run_dir) for m in result.members if m.status in ("completed", "skipped")}
    for processor in ensemble.postprocessor:
        with subflow_context():
            result.postprocess[processor.processor] = ensemble_postprocess(
                processor, done, where / "stats", ensemble.pipeline.backend
            )
    run_batch_commands(ensemble.post_batch, where, "post_batch")

    create_markdown_artifact(
        summary_markdown(result),
        key=artifact_key("ensemble", ensemble.name),
        description=f"Ensemble {ensemble.name}",
    )
    return result


@flow(name="ensemble-stats", flow_run_name="stats-{processor.processor}", validate_parameters=False)
def ensemble_postprocess(
    processor: Any, member_dirs: dict[str, Path], out_dir: Path, backend: Any = None
) -> dict[str, Any]:
    """An ensemble-level postprocessor over the successful members, as its own subflow; on batch
    jobs of the ensemble's backend when it asks for `workers`."""
    workers = getattr(processor, "workers", None)
    with reduction_client(backend, workers, out_dir.parent) as client:
        if client is not None:
            get_run_logger().info("statistics computed on %d SLURM worker job(s)", workers.jobs)
        outcome = processor.process(member_dirs, out_dir, client)
    if outcome.get("markdown"):
        create_markdown_artifact(outcome["markdown"], key=artifact_key("ensemble-stats", out_dir.parent.name))
    return {k: v for k, v in outcome.items() if k != "markdown"}


def summary_markdown(result: EnsembleResult) -> str:
    lines = [
        f"# Ensemble `{result.name}`: {result.count('completed')} completed, {result.count('failed')} failed, "
        f"{result.count('skipped')} skipped (done before)"
        + (f", {result.count('not started')} not started" if result.count("not started") else ""),
        "",
        "| member | run id | overrides | status | attempts | duration (s) | exit code | run dir |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in result.members:
        overrides = ", ".join(f"`{k}={v}`" for k, v in m.overrides.items())
        duration = f"{m.duration_seconds:.1f}" if m.duration_seconds is not None else ""
        lines.append(
            f"| {m.index} | {m.run_id} | {overrides} | {m.status} | {m.attempts} | {duration} | "
            f"{'' if m.exit_code is None else m.exit_code} | `{m.run_dir}` |"
        )
    return "\n".join(lines)
