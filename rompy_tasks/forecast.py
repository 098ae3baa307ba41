"""Operational forecast cycles (Prefect-free): cycle times, hot-start lookup, records, retention.

A forecast is a base pipeline run once per cycle (e.g. 00Z and 12Z). Everything about a cycle
derives from its cycle time, never from the wall clock: the run id `YYYYMMDDTHH`, the run
directory `<output_dir>/<name>/<run id>`, and the model period (the cycle time plus the
forecast length; a cold start begins `spinup` earlier). Each cycle writes restarts every
`cycle_interval`, so the next cycle (or, after a gap, a later one) finds a restart valid at
its own cycle time. Records in `<name>/cycles/<run id>.json` say what each cycle did.
"""

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rompy_tasks.core.errors import ConfigError, Problem, StageError
from rompy_tasks.core.loader import apply_field_overrides, given_fields, load_with_assignments, substitute_variables
from rompy_tasks.core.model_run import RunId, files_matching, output_files
from rompy_tasks.core.records import read_record, write_record
from rompy_tasks.core.run_files import exchange_directories
from rompy_tasks.core.time import Duration, as_utc
from rompy_tasks.pipeline import nested_pipeline_type, validate_data
from rompy_tasks.pipeline_config import PipelineBase
from rompy_tasks.postprocess.publish import PublishConfig
from rompy_tasks.postprocess.visualize import PLOT_DIR

CYCLE_FORMAT = "%Y%m%dT%H"
ATTEMPTS_DIR = "attempts"  # forced re-runs of completed cycles run here (outside retention's pattern)
CYCLE_PATTERN = r"^\d{8}T\d{2}$"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RestartRules(BaseModel):
    """Where a cycle's restart comes from and how far back to look for one."""

    model_config = ConfigDict(extra="forbid")

    lookback_cycles: int = Field(
        4,
        ge=1,
        le=1000,
        description="Earlier cycles searched (newest first) for a restart valid at the cycle time; with a "
        "forecast longer than the cycle interval, a cycle after a gap still hot-starts",
    )


class ForecastConfig(BaseModel):
    """A forecast cycle: the base pipeline and the cycling rules."""

    model_config = ConfigDict(extra="forbid")

    name: RunId = Field(description="Forecast directory name (as a run id)")
    pipeline: nested_pipeline_type() = Field(  # type: ignore[valid-type]
        description="The base pipeline; each cycle replaces its run id, period and restart input"
    )
    cycle_interval: Duration = Field(timedelta(hours=12), description="Time between cycles (whole hours)")
    forecast_length: Duration = Field(timedelta(hours=48), description="Model period of each cycle")
    forecast_length_by_hour: dict[Annotated[int, Field(ge=0, le=23)], Duration] = Field(
        default_factory=dict,
        description="A different forecast_length for cycles at these UTC hours (e.g. {0: 72h}); "
        "applies however the cycle was started (schedule, UI, API, CLI)",
    )
    spinup: Duration = Field(timedelta(0), description="A cold start begins this long before the cycle time")
    restart: RestartRules = Field(default_factory=RestartRules)
    cold_start_ok: bool = Field(
        False, description="Cold-start when no previous restart exists (else the cycle fails with an error)"
    )
    keep_cycles: int | None = Field(
        None, ge=1, description="Cycle directories kept after a successful cycle (default: all)"
    )
    keep_published_cycles: int | None = Field(
        None,
        ge=1,
        description="Cycles whose products stay at their `publish` destinations: after a cycle publishes, "
        "older cycles' published files (those their manifest lists) are removed there (default: all stay)",
    )
    max_lateness: Duration | None = Field(
        None,
        description="A run the scheduler created is skipped, not run, when its cycle is older than this "
        "(against the wall clock); a cycle asked for by name (cycle parameter, --cycle, backfill) always runs",
    )

    @field_validator("cycle_interval")
    @classmethod
    def _whole_hours(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1) or value % timedelta(hours=1):
            raise ValueError("must be a whole number of hours (cycle run ids are YYYYMMDDTHH)")
        return value

    @model_validator(mode="after")
    def _can_cycle(self) -> "ForecastConfig":
        if min([self.forecast_length, *self.forecast_length_by_hour.values()]) < self.cycle_interval:
            raise ValueError("'forecast_length' must reach the next cycle ('cycle_interval') to hot-start it")
        never = [h for h in self.forecast_length_by_hour if timedelta(hours=h) % self.cycle_interval]
        if never and timedelta(days=1) % self.cycle_interval == timedelta(0):
            raise ValueError(f"'forecast_length_by_hour': no cycle starts at hour(s) {never}")
        if self.spinup < timedelta(0):
            raise ValueError("'spinup' must not be negative")
        try:
            self.pipeline.config.config.restart_fields(None, self.cycle_interval.total_seconds())
        except NotImplementedError as err:
            raise ValueError(str(err)) from None
        return self

    @property
    def directory(self) -> Path:
        return self.pipeline.config.output_dir.expanduser().absolute() / self.name

    def length_at(self, cycle: datetime) -> timedelta:
        """The forecast length of the cycle at `cycle` (its UTC hour may have its own)."""
        return self.forecast_length_by_hour.get(as_utc(cycle).hour, self.forecast_length)


CYCLE_VARIABLE = "CYCLE"  # rompy's `${CYCLE|strftime:%Y%m%d}`: the cycle time, set when each cycle runs


def load_forecast(path: str | Path, overrides: list[str] | None = None) -> ForecastConfig:
    """Read, override (`a.b=c`) and validate a forecast file; one ConfigError lists every problem.

    `${CYCLE...}` stays as written until a cycle runs (`cycle_pipeline`), whatever the environment says.
    """
    data = load_with_assignments(path, overrides, kept=(CYCLE_VARIABLE,))
    return validate_forecast(data, source=str(path))


def validate_forecast(data: dict[str, Any], source: str | None = None) -> ForecastConfig:
    try:
        forecast = ForecastConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError.from_validation(err, data=data, source=source) from None
    try:
        forecast.pipeline.config.config.check(forecast.pipeline.config)
    except ConfigError as err:
        raise ConfigError([Problem(f"pipeline.config.{p.loc}", p.msg) for p in err.problems], source) from None
    return forecast


def apply_forecast_overrides(forecast: ForecastConfig, overrides: dict[str, Any]) -> ForecastConfig:
    """`forecast` with `dotted.path: value` overrides (the flow's `overrides` parameter)."""
    return apply_field_overrides(forecast, overrides, validate_forecast)


# --- cycle times ---------------------------------------------------------------------------------


def floor_cycle(when: datetime, interval: timedelta) -> datetime:
    """The latest cycle time at or before `when` (cycles are whole multiples of the interval since 1970)."""
    when = as_utc(when)
    # a plain datetime: Prefect hands out pendulum DateTimes, whose arithmetic differs
    when = datetime(*when.timetuple()[:6], when.microsecond, tzinfo=UTC)
    return when - (when - EPOCH) % interval


def cycle_id(cycle: datetime) -> str:
    return as_utc(cycle).strftime(CYCLE_FORMAT)


def cycle_times(start: datetime, end: datetime, interval: timedelta) -> list[datetime]:
    """Every cycle from `start` to `end` inclusive; `start` is rounded up to a cycle time."""
    first = floor_cycle(start, interval)
    if first < as_utc(start):
        first += interval
    times, current = [], first
    while current <= as_utc(end):
        times.append(current)
        current += interval
    return times


def is_late(forecast: ForecastConfig, cycle: datetime, now: datetime | None = None) -> bool:
    """True if the cycle is older than `max_lateness` (such cycles are skipped, not run)."""
    if forecast.max_lateness is None:
        return False
    return (now or datetime.now(UTC)) - as_utc(cycle) > forecast.max_lateness


# --- records -------------------------------------------------------------------------------------

CycleStatus = Literal["running", "completed", "failed", "skipped"]


class FailedAttempt(BaseModel):
    """A forced re-run of a completed cycle that failed: the completed forecast was kept."""

    when: datetime
    reason: str
    run_dir: Path = Field(description="The failed attempt's directory, kept with its inputs and logs")

    def note(self) -> str:
        return f"forced re-run failed {self.when:%Y-%m-%d %H:%M}Z (kept in {ATTEMPTS_DIR}/{self.run_dir.parent.name})"


class CycleRecord(BaseModel):
    """What one cycle did; stored in `<forecast dir>/cycles/<run id>.json`."""

    cycle: datetime
    run_id: str
    status: CycleStatus
    run_dir: Path
    start: Literal["hot", "cold"] | None = None
    restart_from: str | None = Field(None, description="The restart file this cycle started from")
    restart_cycle: str | None = Field(None, description="The cycle that wrote it")
    period_start: datetime | None = None
    period_end: datetime | None = None
    forcing: list[str] = Field(default_factory=list)
    restarts: dict[str, str] = Field(default_factory=dict, description="Restart files by valid time (ISO)")
    timings: dict[str, float] = Field(default_factory=dict)
    outputs: list[str] = Field(default_factory=list)
    plots: list[str] = Field(default_factory=list)
    removed_cycles: list[str] = Field(default_factory=list)
    published: dict[int, str] = Field(
        default_factory=dict, description="Where each `publish` postprocessor (by index) put this cycle's products"
    )
    unpublished_cycles: list[str] = Field(default_factory=list, description="Cycles whose products this one removed")
    reason: str | None = None
    failed_attempts: list[FailedAttempt] = Field(
        default_factory=list, description="Forced re-runs that failed; this record's run is what stands"
    )
    started: datetime | None = Field(None, description="When the cycle was taken up (its lateness: started - cycle)")
    written: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def begin(cls, forecast: "ForecastConfig", cycle: datetime) -> "CycleRecord":
        """The record of a cycle about to be decided on (run, skipped)."""
        return cls(
            cycle=cycle,
            run_id=cycle_id(cycle),
            status="running",
            run_dir=cycle_run_dir(forecast, cycle),
            started=datetime.now(UTC),
        )

    def note_start(self, pipeline: PipelineBase, hot: "HotStart | None") -> None:
        """How the cycle starts: hot (from which restart and cycle) or cold, its period and forcing."""
        run = pipeline.config
        self.start = "hot" if hot else "cold"
        self.restart_from, self.restart_cycle = (str(hot.restart), hot.cycle) if hot else (None, None)
        self.period_start, self.period_end = run.period.start, run.period.end
        self.forcing = [source.output for source in [*pipeline.forcing, *pipeline.data]]
        if not hot:
            self.reason = "cold start: no restart from an earlier cycle (cold_start_ok)"

    def note_results(self, pipeline: PipelineBase, timings: dict[str, float]) -> None:
        """What the cycle's run left: stage durations, restarts by valid time, outputs, plots."""
        run = pipeline.config
        staging = run.staging_dir
        self.timings = {stage: round(seconds, 3) for stage, seconds in timings.items()}
        self.restarts = restarts_by_valid_time(pipeline)
        self.outputs = [str(p.relative_to(staging)) for p in output_files(run)]
        self.plots = [str(p.relative_to(staging)) for p in files_matching(staging, [f"{PLOT_DIR}/*.png"])]

    def summary_markdown(self, name: str) -> str:
        """The per-cycle artifact: cycle time, start, restart, forcing, durations, outputs, plots."""
        start = {"hot": "hot start", "cold": "cold start", None: "-"}[self.start]
        lines = [
            f"# Forecast `{name}` cycle {self.cycle:%Y-%m-%d %HZ}: {self.status}",
            "",
            "| | |",
            "|---|---|",
            f"| Cycle time | {self.cycle.isoformat()} |",
            f"| Start | {start} |",
            f"| Restart | {f'`{self.restart_from}` (cycle {self.restart_cycle})' if self.restart_from else '-'} |",
            f"| Model period | {self.period_start.isoformat() if self.period_start else '-'} to "
            f"{self.period_end.isoformat() if self.period_end else '-'} |",
            f"| Run directory | `{self.run_dir}` |",
            f"| Forcing | {', '.join(f'`{f}`' for f in self.forcing) or '-'} |",
        ]
        if self.reason:
            lines.append(f"| Note | {self.reason} |")
        for attempt in self.failed_attempts:
            lines.append(f"| Failed re-run | {attempt.when.isoformat()}: {attempt.reason} (`{attempt.run_dir}`) |")
        if self.removed_cycles:
            lines.append(f"| Removed (keep_cycles) | {', '.join(self.removed_cycles)} |")
        if self.timings:
            lines += ["", "## Durations", "", "| Stage | Seconds |", "|---|---|"]
            lines += [f"| {stage} | {seconds:.2f} |" for stage, seconds in self.timings.items()]
        lines += ["", "## Outputs", ""] + [f"- `{o}`" for o in self.outputs or ["(none)"]]
        if self.restarts:
            lines += ["", "## Restarts written", ""] + [f"- {t}: `{f}`" for t, f in self.restarts.items()]
        if self.plots:
            lines += ["", "## Plots", ""] + [f"- `{p}`" for p in self.plots]
        return "\n".join(lines)


def cycles_dir(forecast: ForecastConfig) -> Path:
    return forecast.directory / "cycles"


def cycle_run_dir(forecast: ForecastConfig, cycle: datetime) -> Path:
    return forecast.directory / cycle_id(cycle)


def read_cycle(forecast: ForecastConfig, cycle: datetime) -> CycleRecord | None:
    return _record_at(cycles_dir(forecast) / f"{cycle_id(cycle)}.json")


def recent_cycles(
    forecast: ForecastConfig, count: int, now: datetime | None = None, grace: timedelta = timedelta(0)
) -> list[tuple[datetime, CycleRecord | None]]:
    """The `count` newest cycles due by `now - grace`, newest first, with their records (None: missing)."""
    newest = floor_cycle((now or datetime.now(UTC)) - grace, forecast.cycle_interval)
    times = [newest - k * forecast.cycle_interval for k in range(count)]
    return [(cycle, read_cycle(forecast, cycle)) for cycle in times]


def save_cycle(forecast: ForecastConfig, record: CycleRecord, event: str | None = None) -> Path:
    """Write the cycle's record; history.log gets its status, or `event` (e.g. a failed forced re-run)."""
    record.written = datetime.now(UTC)
    event = event or f"{record.status} {record.start or '-'}"
    history = f"{record.written.isoformat()} {record.run_id} {event}"
    return write_record(cycles_dir(forecast) / f"{record.run_id}.json", json.loads(record.model_dump_json()), history)


# --- hot starts ----------------------------------------------------------------------------------


class HotStart(BaseModel):
    restart: Path
    cycle: str


def find_restart(forecast: ForecastConfig, cycle: datetime) -> HotStart | None:
    """The newest earlier cycle's restart valid at `cycle`, searching `restart.lookback_cycles` back."""
    valid_at = as_utc(cycle).isoformat()
    for back in range(1, forecast.restart.lookback_cycles + 1):
        earlier = as_utc(cycle) - back * forecast.cycle_interval
        record = read_cycle(forecast, earlier)
        if record is None or record.status != "completed" or valid_at not in record.restarts:
            continue
        path = record.run_dir / record.restarts[valid_at]
        if path.is_file():
            return HotStart(restart=path, cycle=record.run_id)
    return None


def cycle_pipeline(
    forecast: ForecastConfig, cycle: datetime, hot_start: HotStart | None, output_dir: Path | None = None
) -> PipelineBase:
    """The cycle's validated pipeline: run id, directory, period and restart derived from the cycle.

    `output_dir` (default: the forecast's directory) is where its run directory `<run id>` is made.
    """
    cycle = as_utc(cycle)
    spinup = timedelta(0) if hot_start else forecast.spinup
    data = given_fields(forecast.pipeline)
    model = forecast.pipeline.config.config
    restart_fields = model.restart_fields(
        hot_start.restart if hot_start else None, forecast.cycle_interval.total_seconds()
    )
    run = data["config"]
    run.update(
        run_id=cycle_id(cycle),
        output_dir=str(output_dir or forecast.directory),
        delete_existing=True,
        run_id_subdir=True,
    )
    run["period"] = {
        "start": (cycle - spinup).isoformat(),
        "duration": (forecast.length_at(cycle) + spinup).total_seconds(),
        "interval": forecast.pipeline.config.period.interval.total_seconds(),
        "include_end": forecast.pipeline.config.period.include_end,
    }
    run["config"].update(restart_fields)
    problems: list[Problem] = []
    data = substitute_variables(data, {CYCLE_VARIABLE: cycle_id(cycle)}, problems, only=(CYCLE_VARIABLE,))
    if problems:
        raise ConfigError(problems, f"cycle {cycle_id(cycle)}")
    return validate_data(data, source=f"cycle {cycle_id(cycle)}")


def publishers(pipeline: PipelineBase) -> dict[int, PublishConfig]:
    """The pipeline's `publish` postprocessors by their index in `postprocessor`."""
    return {i: p for i, p in enumerate(pipeline.postprocessor) if isinstance(p, PublishConfig)}


def without_publishers(pipeline: PipelineBase) -> PipelineBase:
    """The pipeline with its `publish` postprocessors left out: a forced re-run publishes only once
    its attempt has replaced the cycle."""
    kept = [p for p in pipeline.postprocessor if not isinstance(p, PublishConfig)]
    return pipeline.model_copy(update={"postprocessor": kept})


def published_destinations(pipeline: PipelineBase) -> dict[int, str]:
    return {i: p.rendered_destination(pipeline.config) for i, p in publishers(pipeline).items()}


def unpublish_old_cycles(forecast: ForecastConfig, current: "CycleRecord") -> list[str]:
    """Remove from their destinations the products of completed cycles beyond the newest
    `keep_published_cycles` (by cycle time). A destination that a kept cycle also uses, or lies
    under, is left alone (a destination not templated on the cycle is every cycle's)."""
    if forecast.keep_published_cycles is None:
        return []
    records = [current] + [
        r
        for path in sorted(cycles_dir(forecast).glob("*.json"), reverse=True)
        if (r := _record_at(path)) and r.run_id != current.run_id and r.status == "completed" and r.published
    ]
    records.sort(key=lambda r: r.cycle, reverse=True)
    kept = {
        dest.rstrip("/") for r in records[: forecast.keep_published_cycles] + [current] for dest in r.published.values()
    }
    processors = publishers(forecast.pipeline)
    removed = []
    for record in records[forecast.keep_published_cycles :]:
        if record.run_id == current.run_id:
            continue
        for index, destination in record.published.items():
            dest = destination.rstrip("/")
            if index in processors and not any(k == dest or k.startswith(dest + "/") for k in kept):
                processors[index].unpublish(destination)
        record.published = {}
        save_cycle(forecast, record, event=f"products removed from their destinations by cycle {current.run_id}")
        removed.append(record.run_id)
    return sorted(removed)


def _record_at(path: Path) -> "CycleRecord | None":
    data = read_record(path)
    return CycleRecord.model_validate(data) if data else None


def restarts_by_valid_time(pipeline: PipelineBase) -> dict[str, str]:
    """The restarts a finished cycle wrote, keyed by the (ISO) time they are valid at."""
    run = pipeline.config
    return {
        (run.period.start + timedelta(seconds=offset)).isoformat(): path.name
        for offset, path in sorted(run.config.restart_offsets(run).items())
    }


def prune_cycles(forecast: ForecastConfig, keep: set[str]) -> list[str]:
    """Remove cycle directories beyond `keep_cycles` (newest kept), never those named in `keep`."""
    if forecast.keep_cycles is None or not forecast.directory.is_dir():
        return []
    names = sorted(
        (p.name for p in forecast.directory.iterdir() if p.is_dir() and re.match(CYCLE_PATTERN, p.name)),
        reverse=True,
    )
    removed = []
    for name in names[forecast.keep_cycles :]:
        if name in keep:
            continue
        shutil.rmtree(forecast.directory / name)
        for attempt in (forecast.directory / ATTEMPTS_DIR).glob(f"{name}-*"):
            shutil.rmtree(attempt)
        removed.append(name)
    return sorted(removed)


def retention_fate(forecast: ForecastConfig, run_ids: list[str]) -> dict[str, str]:
    """What retention does to these cycles' directories: kept, removed already, or removed by the
    next successful cycle (retention keeps the newest `keep_cycles` by cycle time, so a backfilled
    old cycle does not stay)."""
    if forecast.keep_cycles is None:
        return {run_id: "kept" for run_id in run_ids}
    existing = (
        sorted(
            (p.name for p in forecast.directory.iterdir() if p.is_dir() and re.match(CYCLE_PATTERN, p.name)),
            reverse=True,
        )
        if forecast.directory.is_dir()
        else []
    )
    newest = set(existing[: forecast.keep_cycles])
    fate = {}
    for run_id in run_ids:
        if run_id not in existing:
            fate[run_id] = "removed (keep_cycles)"
        else:
            fate[run_id] = "kept" if run_id in newest else "removed by the next cycle (keep_cycles)"
    return fate


def cold_cycles_to_rechain(forecast: ForecastConfig, after: datetime) -> list[datetime]:
    """The completed cycles after `after` to re-run so they hot-start again: from the first one that
    cold-started but now finds a restart (a backfill filled the gap before it), to the newest record."""
    times: list[datetime] = []
    cycle = as_utc(after) + forecast.cycle_interval
    first = None
    while (record := read_cycle(forecast, cycle)) is not None:
        if first is None and record.status == "completed" and record.start == "cold":
            if find_restart(forecast, cycle) is not None:
                first = cycle
        if first is not None and record.status == "completed":
            times.append(cycle)
        cycle += forecast.cycle_interval
    return times


# --- forced re-runs of completed cycles ----------------------------------------------------------


def attempt_output_dir(forecast: ForecastConfig, cycle: datetime) -> Path:
    """Where a forced re-run of a completed cycle makes its run directory: a fresh one per attempt."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
    return forecast.directory / ATTEMPTS_DIR / f"{cycle_id(cycle)}-{stamp}"


def install_attempt(forecast: ForecastConfig, cycle: datetime, attempt_run_dir: Path) -> Path:
    """Put a successful re-run's directory in the cycle's place (one atomic exchange); remove the old one."""
    target = cycle_run_dir(forecast, cycle)
    if target.exists():
        exchange_directories(attempt_run_dir, target)
        shutil.rmtree(attempt_run_dir)
    else:
        attempt_run_dir.rename(target)
    shutil.rmtree(attempt_run_dir.parent, ignore_errors=True)  # its lock file
    return target


def require_restart(forecast: ForecastConfig, cycle: datetime) -> HotStart | None:
    """The hot start for `cycle`, None for an allowed cold start, or a clear error."""
    hot = find_restart(forecast, cycle)
    if hot is None and not forecast.cold_start_ok:
        back = range(1, forecast.restart.lookback_cycles + 1)
        searched = [cycle_id(as_utc(cycle) - k * forecast.cycle_interval) for k in back]
        raise StageError(
            f"cycle {cycle_id(cycle)}: no restart valid at {as_utc(cycle).isoformat()} in the completed cycles "
            f"{', '.join(searched)}; run the earlier cycles first or set cold_start_ok"
        )
    return hot
