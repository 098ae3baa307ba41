"""The `model-ensemble` flow: many members of one pipeline, concurrent and resumable.

Each member is a `model_pipeline` subflow named by its run id (visible in the UI), started
by a `member-<run id>` task. At most `max_parallel` members run at once and starts are
`stagger_seconds` apart; a failed member is retried, then reported; `allow_failures`
decides the flow's state. Completed members leave a record holding the hash of their
resolved config, so a re-run skips them and runs only what failed, was interrupted or
changed. The member's run stage uses its backend as in a single pipeline (local, Docker,
or SLURM jobs, where `max_parallel` also bounds the running jobs).
"""

import concurrent.futures
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from flows.heartbeats import subflow_context
from flows.pipeline import model_pipeline, overridden
from flows.postprocess import artifact_key
from rompy_tasks.backends.process import child_environment, run_process
from rompy_tasks.core.errors import StageError
from rompy_tasks.ensemble import (
    EnsembleConfig,
    Member,
    apply_ensemble_overrides,
    ensemble_dir,
    is_complete,
    resolve_members,
    write_record,
)


class MemberOutcome(BaseModel):
    index: int
    run_id: str
    overrides: dict[str, Any]
    status: str  # completed | failed | skipped (completed in an earlier run)
    attempts: int = 0
    duration_seconds: float | None = None
    exit_code: int | None = None
    output_dir: str
    error: str | None = None


class EnsembleResult(BaseModel):
    name: str
    ensemble_dir: str
    members: list[MemberOutcome] = Field(default_factory=list)
    postprocess: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(m.status == status for m in self.members)


class MemberFailed(RuntimeError):
    """A member failed after all its attempts; carries its outcome for the summary."""

    def __init__(self, outcome: MemberOutcome):
        self.outcome = outcome
        super().__init__(f"member {outcome.run_id} failed after {outcome.attempts} attempt(s): {outcome.error}")

    def __reduce__(self):
        return (type(self), (self.outcome,))


@task(name="ensemble-member", task_run_name="member-{member.run_id}", cache_policy=NO_CACHE)
def run_member(member: Member, ensemble: EnsembleConfig) -> MemberOutcome:
    """Run one member's pipeline, retrying it; record it when it completes."""
    logger = get_run_logger()
    outcome = MemberOutcome(
        index=member.index,
        run_id=member.run_id,
        overrides=member.overrides,
        status="failed",
        output_dir=str(member.pipeline.config.staging_dir),
    )
    started = time.monotonic()
    for attempt in range(1, ensemble.retries + 2):
        outcome.attempts = attempt
        try:
            with subflow_context():
                result = model_pipeline(pipeline=member.pipeline)
        except Exception as err:  # the member's own flow run shows the failure in full
            outcome.error = str(err).split("\n")[0]
            outcome.exit_code = getattr(err, "exit_code", None)
            logger.warning("member %s attempt %d failed: %s", member.run_id, attempt, outcome.error)
            if attempt <= ensemble.retries:
                time.sleep(ensemble.retry_delay_seconds)
            continue
        outcome.status, outcome.error = "completed", None
        outcome.exit_code = result.run.exit_code if result.run else None
        outcome.duration_seconds = time.monotonic() - started
        write_record(
            ensemble,
            member,
            status="completed",
            attempts=attempt,
            duration_seconds=outcome.duration_seconds,
            exit_code=outcome.exit_code,
        )
        return outcome
    outcome.duration_seconds = time.monotonic() - started
    raise MemberFailed(outcome)


def run_batch_commands(commands: list[str], where: Path, stage: str) -> None:
    """pre_batch / post_batch: each command in the ensemble directory; a failure stops the batch."""
    import shlex

    for command in commands:
        log = where / "logs" / f"{stage}.log"
        outcome = run_process(shlex.split(command), cwd=where, log_path=log, env=child_environment({}), timeout=3600)
        if outcome.exit_code != 0:
            raise StageError(f"{stage} command {command!r} failed with exit code {outcome.exit_code}; see {log}")


def _wait_for_slot(running: list, limit: int) -> None:
    while len(running) >= limit:
        concurrent.futures.wait([f.wrapped_future for f in running], return_when=concurrent.futures.FIRST_COMPLETED)
        running[:] = [f for f in running if not f.wrapped_future.done()]


@flow(name="model-ensemble", flow_run_name="{ensemble.name}")
def model_ensemble(
    ensemble: EnsembleConfig,
    indexes: list[int] | None = None,
    max_parallel: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> EnsembleResult:
    """Run the members of an ensemble (all, or `indexes`), resuming from earlier runs.

    `overrides` ({"pipeline.config.period.duration": "2d", ...}) changes single fields of `ensemble`.
    """
    logger = get_run_logger()
    ensemble = overridden(ensemble, overrides, apply_ensemble_overrides)
    members = resolve_members(ensemble)
    wanted = indexes if indexes is not None else ensemble.indexes
    if wanted is not None:
        members = [m for m in members if m.index in set(wanted)]
    parallel = max_parallel or ensemble.max_parallel
    where = ensemble_dir(ensemble)
    where.mkdir(parents=True, exist_ok=True)
    result = EnsembleResult(name=ensemble.name, ensemble_dir=str(where))
    run_batch_commands(ensemble.pre_batch, where, "pre_batch")

    todo = []
    for member in members:
        if is_complete(ensemble, member):
            result.members.append(
                MemberOutcome(
                    index=member.index,
                    run_id=member.run_id,
                    overrides=member.overrides,
                    status="skipped",
                    output_dir=str(member.pipeline.config.staging_dir),
                )
            )
        else:
            todo.append(member)
    logger.info(
        "%d member(s) to run, %d already complete, at most %d at once",
        len(todo),
        len(members) - len(todo),
        parallel,
    )

    futures, running = [], []
    with ThreadPoolTaskRunner(max_workers=parallel) as runner:
        for i, member in enumerate(todo):
            _wait_for_slot(running, parallel)
            if i and ensemble.stagger_seconds:
                time.sleep(ensemble.stagger_seconds)
            future = runner.submit(run_member, {"member": member, "ensemble": ensemble})
            futures.append(future)
            running.append(future)
        for future in futures:
            outcome = future.result(raise_on_failure=False)
            result.members.append(outcome.outcome if isinstance(outcome, MemberFailed) else outcome)
    result.members.sort(key=lambda m: m.index)

    done = {m.run_id: Path(m.output_dir) for m in result.members if m.status in ("completed", "skipped")}
    for processor in ensemble.postprocessor:
        with subflow_context():
            result.postprocess[processor.processor] = ensemble_postprocess(processor, done, where / "stats")
    run_batch_commands(ensemble.post_batch, where, "post_batch")

    create_markdown_artifact(
        summary_markdown(result),
        key=artifact_key("ensemble", ensemble.name),
        description=f"Ensemble {ensemble.name}",
    )
    failed = result.count("failed")
    if failed > ensemble.allow_failures:
        raise RuntimeError(f"{failed} member(s) failed, more than allow_failures={ensemble.allow_failures}")
    return result


@flow(name="ensemble-stats", flow_run_name="stats-{processor.processor}", validate_parameters=False)
def ensemble_postprocess(processor: Any, member_dirs: dict[str, Path], out_dir: Path) -> dict[str, Any]:
    """An ensemble-level postprocessor over the successful members, as its own subflow."""
    outcome = processor.process(member_dirs, out_dir)
    if outcome.get("markdown"):
        create_markdown_artifact(outcome["markdown"], key=artifact_key("ensemble-stats", out_dir.parent.name))
    return {k: v for k, v in outcome.items() if k != "markdown"}


def summary_markdown(result: EnsembleResult) -> str:
    lines = [
        f"# Ensemble `{result.name}`: {result.count('completed')} completed, {result.count('failed')} failed, "
        f"{result.count('skipped')} skipped (done before)",
        "",
        "| member | run id | overrides | status | attempts | duration (s) | exit code | output dir |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in result.members:
        overrides = ", ".join(f"`{k}={v}`" for k, v in m.overrides.items())
        duration = f"{m.duration_seconds:.1f}" if m.duration_seconds is not None else ""
        lines.append(
            f"| {m.index} | {m.run_id} | {overrides} | {m.status} | {m.attempts} | {duration} | "
            f"{'' if m.exit_code is None else m.exit_code} | `{m.output_dir}` |"
        )
    return "\n".join(lines)
