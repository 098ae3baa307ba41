"""`rompy-tasks forecast`: run and backfill cycles, the morning status check, validate, the demo forcing."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.common import (
    SetOption,
    connect_api,
    err,
    invalid,
    load_forecast_file,
    out,
    parse_duration_option,
    parse_time,
    run_flow,
)
from rompy_tasks.core.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Operational forecast cycles: run, backfill, status, validate")


def _print_cycles(records: list[Any], config: Any = None) -> None:
    from rompy_tasks.forecast import retention_fate

    fate = retention_fate(config, [r.run_id for r in records]) if config is not None else {}
    table = Table(title="Forecast cycles")
    table.add_column("cycle", no_wrap=True, min_width=11)
    for column in ("status", "start", "restart from", "seconds", "directory", "note"):
        table.add_column(column)
    for r in records:
        seconds = f"{r.timings['total']:.1f}" if "total" in r.timings else ""
        directory, note = fate.get(r.run_id, "kept"), (r.reason or "")[:60]
        table.add_row(r.run_id, r.status, r.start or "-", r.restart_cycle or "-", seconds, directory, note)
    out.print(table)


@app.command("run")
def forecast_run(
    file: Annotated[Path, typer.Argument(help="Forecast YAML/JSON file")],
    cycle: Annotated[str | None, typer.Option(help="Cycle time (default: now, floored to the cycle interval)")] = None,
    force: Annotated[bool, typer.Option(help="Re-run a completed cycle")] = False,
    set_: SetOption = None,
) -> None:
    """Run one forecast cycle, hot-started from the previous one."""
    from datetime import UTC, datetime

    config = load_forecast_file(file, set_)
    when = parse_time("--cycle", cycle) if cycle else datetime.now(UTC)
    connect_api()
    from flows.forecast import forecast_cycle

    title = f"rompy-tasks forecast: {config.name}"
    record = run_flow(lambda **kw: forecast_cycle(forecast=config, cycle=when, force=force, **kw), title, title)
    _print_cycles([record], config)
    out.print(f"Cycle directory: {record.run_dir}")


@app.command("backfill")
def forecast_backfill(
    file: Annotated[Path, typer.Argument(help="Forecast YAML/JSON file")],
    start: Annotated[str, typer.Option("--from", help="First cycle time (ISO 8601)")],
    end: Annotated[str, typer.Option("--to", help="Last cycle time (ISO 8601)")],
    force: Annotated[bool, typer.Option(help="Re-run completed cycles too")] = False,
    rechain: Annotated[
        bool, typer.Option(help="Then re-run later cycles that cold-started, so they hot-start from the backfill")
    ] = False,
    set_: SetOption = None,
) -> None:
    """Run what is missing from --from to --to (missing, failed, skipped cycles), oldest first.

    Retention keeps the newest `keep_cycles` by cycle time, so backfilled old cycles may be removed
    at once; the table says which. `--rechain` re-runs the cold-started cycles after the range
    (and those after them) from the backfilled restarts, each in a fresh directory.
    """
    config = load_forecast_file(file, set_)
    first, last = parse_time("--from", start), parse_time("--to", end)
    if first > last:
        raise invalid(ConfigError.single("--from", f"{start} is after --to {end}"))
    connect_api()
    from flows.forecast import forecast_backfill as backfill_flow

    title = f"rompy-tasks forecast backfill: {config.name}"
    records = run_flow(
        lambda **kw: backfill_flow(forecast=config, start=first, end=last, force=force, rechain=rechain, **kw),
        title,
        title,
    )
    _print_cycles(records, config)


@app.command("status")
def forecast_status(
    file: Annotated[Path, typer.Argument(help="Forecast YAML/JSON file")],
    last: Annotated[int, typer.Option(min=1, max=1000, help="How many cycles to show, newest first")] = 8,
    grace: Annotated[str, typer.Option(help="Cycles due less than this long ago are not checked yet")] = "0h",
    set_: SetOption = None,
) -> None:
    """The morning check: the newest cycles, read from their records (no server needed).

    Exits 1 if the newest due cycle is missing, failed or skipped, so cron or a monitor can alert.
    """
    from rompy_tasks.core.time import clock_text
    from rompy_tasks.forecast import cycle_id, recent_cycles

    config = load_forecast_file(file, set_)
    rows = recent_cycles(config, last, grace=parse_duration_option("--grace", grace))
    table = Table(title=f"Forecast {config.name}")
    table.add_column("cycle", no_wrap=True, min_width=11)
    for column in ("status", "start", "late by", "seconds", "outputs", "note"):
        table.add_column(column)
    for cycle, record in rows:
        if record is None:
            table.add_row(cycle_id(cycle), "[red]missing[/]", "", "", "", "", "")
            continue
        colour = {"completed": "green", "running": "cyan"}.get(record.status, "red")
        start = {"hot": f"hot from {record.restart_cycle}", "cold": "cold"}.get(record.start or "", "-")
        late = clock_text((record.started - cycle).total_seconds()) if record.started else "-"
        seconds = f"{record.timings['total']:.1f}" if "total" in record.timings else ""
        outputs = str(len(record.outputs)) if record.status == "completed" else ""
        note = escape(record.failed_attempts[-1].note() if record.failed_attempts else (record.reason or "")[:60])
        table.add_row(record.run_id, f"[{colour}]{record.status}[/]", start, late, seconds, outputs, note)
    out.print(table)
    out.print(f"Forecast directory: {config.directory}", soft_wrap=True)
    newest, record = rows[0]
    problem = "missing" if record is None else record.status if record.status in {"failed", "skipped"} else None
    if problem:
        err.print(f"[bold red]The newest cycle {cycle_id(newest)} is {problem}[/]", highlight=False)
        raise typer.Exit(1)


@app.command("name-runs")
def forecast_name_runs(
    every: Annotated[
        float | None,
        typer.Option(min=1, help="Keep naming every this many seconds until stopped (scripts/operate runs it so)"),
    ] = None,
) -> None:
    """Give waiting forecast runs (scheduled, late, pending) their cycle's name.

    Prefect names a run only when it starts; the scheduler's runs wait under random names.
    """
    connect_api()
    from prefect import get_client

    from flows.run_names import keep_naming, name_waiting_runs

    if every is None:
        with get_client(sync_client=True) as client:
            out.print(f"named {name_waiting_runs(client)} waiting forecast run(s)")
        return
    keep_naming(lambda: get_client(sync_client=True), every, lambda error: err.print(f"naming runs: {error}"))


@app.command("validate")
def forecast_validate(
    file: Annotated[Path, typer.Argument(help="Forecast YAML/JSON file")],
    set_: SetOption = None,
) -> None:
    """Validate a forecast file; list every problem with its field path."""
    config = load_forecast_file(file, set_)
    out.print(
        f"[green]valid[/]: forecast {config.name}, every {config.cycle_interval}, {config.forecast_length} long, "
        f"model {config.pipeline.config.config.model_type} on {config.pipeline.backend.type}"
    )


@app.command("forcing")
def forecast_forcing(
    output: Annotated[Path, typer.Argument(help="NetCDF file to write")],
    start: Annotated[str, typer.Option(help="First time (ISO 8601)")],
    end: Annotated[str, typer.Option(help="Last time (ISO 8601)")],
    interval_hours: Annotated[int, typer.Option(min=1, help="Hours between records")] = 6,
) -> None:
    """Write the synthetic wind-stress forcing file the demo forecast and the tests use."""
    from datetime import timedelta

    from rompy_tasks.synthetic import write_synthetic_wind

    first, last = parse_time("--start", start), parse_time("--end", end)
    if first >= last:
        raise invalid(ConfigError.single("--start", f"{start} is not before --end {end}"))
    path = write_synthetic_wind(output, first, last, timedelta(hours=interval_hours))
    out.print(f"wrote {path} ({first.isoformat()} to {last.isoformat()}, every {interval_hours} h)")
