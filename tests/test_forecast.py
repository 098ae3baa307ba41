"""Operational forecast cycles: real Veros cycles hot-started from each other, forcing cut from a
real NetCDF file (also over HTTP), backfill with max_lateness, idempotent re-runs, retention."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import REPO, run_cli
from helpers import BBOX, table_rows

from rompy_tasks.core.errors import ConfigError
from rompy_tasks.forecast import (
    CycleRecord,
    ForecastConfig,
    HotStart,
    cycle_id,
    cycle_pipeline,
    cycle_times,
    floor_cycle,
    is_late,
    load_forecast,
    prune_cycles,
    save_cycle,
    validate_forecast,
)
from rompy_tasks.synthetic import synthetic_wind, write_synthetic_wind


def forecast_doc(tmp_path: Path, forcing: Path, **extra) -> dict:
    doc = {
        "name": "acc-fc",
        "cycle_interval": "12h",
        "forecast_length": "24h",
        "spinup": "1d",
        "cold_start_ok": True,
        "pipeline": {
            "config": {
                "run_id": "cycle",
                "output_dir": str(tmp_path / "runs"),
                "period": {"start": "2026-01-01", "duration": "1d", "interval": "12h"},
                "config": {
                    "model_type": "veros",
                    "setup": "acc",
                    "wind_stress": {"file": "forcing/wind.nc"},
                    "diagnostics": {"snapshot": 43200},
                },
            },
            "forcing": [{"name": "wind", "url": str(forcing), "time_buffer": "6h", "bbox": BBOX}],
            "backend": {"type": "local", "timeout": 600},
        },
    }
    doc.update(extra)
    return doc


# --- cycle arithmetic and validation (no Prefect) ------------------------------------------------


def test_cycle_times_floor_to_the_interval_in_utc():
    twelve = timedelta(hours=12)
    assert floor_cycle(datetime(2026, 3, 1, 13, 37, tzinfo=UTC), twelve) == datetime(2026, 3, 1, 12, tzinfo=UTC)
    # a time in another zone is converted first: 01:30+02:00 is 23:30Z the day before
    cest = datetime.fromisoformat("2026-03-02T01:30:00+02:00")
    assert floor_cycle(cest, twelve) == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert floor_cycle(datetime(2026, 3, 1, 12), twelve) == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert cycle_id(datetime(2026, 3, 1, 6, tzinfo=UTC)) == "20260301T06"
    assert [cycle_id(t) for t in cycle_times(datetime(2026, 3, 1, 1), datetime(2026, 3, 2, 12), twelve)] == [
        "20260301T12",
        "20260302T00",
        "20260302T12",
    ]


def test_lateness_is_measured_against_the_wall_clock(tmp_path):
    config = ForecastConfig.model_validate(forecast_doc(tmp_path, tmp_path / "f.nc", max_lateness="2d"))
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert is_late(config, now - timedelta(days=2, hours=1), now)
    assert not is_late(config, now - timedelta(days=1, hours=23), now)
    unlimited = ForecastConfig.model_validate(forecast_doc(tmp_path, tmp_path / "f.nc"))
    assert not is_late(unlimited, now - timedelta(days=3650), now)


def test_a_cycle_hour_can_have_its_own_forecast_length_however_the_cycle_starts(tmp_path):
    """Issue 14.6: the 00Z cycle's 72 h is part of the forecast, not of one schedule's parameters."""
    config = validate_forecast(forecast_doc(tmp_path, tmp_path / "f.nc", forecast_length_by_hour={0: "72h"}))
    midnight = datetime(2026, 3, 1, tzinfo=UTC)
    for cycle, hours in ((midnight, 72), (midnight + timedelta(hours=12), 24)):
        period = cycle_pipeline(config, cycle, HotStart(cycle="20260228T12", restart="r.h5")).config.period
        assert period.end - period.start == timedelta(hours=hours)
    with pytest.raises(ConfigError, match=r"no cycle starts at hour\(s\) \[3\]"):
        validate_forecast(forecast_doc(tmp_path, tmp_path / "f.nc", forecast_length_by_hour={3: "72h"}))
    with pytest.raises(ConfigError, match="must reach the next cycle"):
        validate_forecast(forecast_doc(tmp_path, tmp_path / "f.nc", forecast_length_by_hour={0: "6h"}))


def test_invalid_forecasts_list_every_problem_with_its_path(tmp_path):
    doc = forecast_doc(tmp_path, tmp_path / "f.nc", cycle_interval="90m", keep_cycles=0, max_lateness="soon")
    doc["pipeline"]["forcing"][0]["bbox"] = {"west": 10, "east": 5, "south": 0, "north": 1}
    with pytest.raises(ConfigError) as caught:
        validate_forecast(doc)
    locs = {p.loc for p in caught.value.problems}
    assert {"cycle_interval", "keep_cycles", "max_lateness", "pipeline.forcing[0].bbox"} <= locs, locs
    too_short = forecast_doc(tmp_path, tmp_path / "f.nc", forecast_length="6h")
    with pytest.raises(ConfigError, match="must reach the next cycle"):
        validate_forecast(too_short)
    shell = forecast_doc(tmp_path, tmp_path / "f.nc")
    shell["pipeline"]["config"]["config"] = {"model_type": "shell", "command": "true"}
    with pytest.raises(ConfigError, match="does not support hot starts"):
        validate_forecast(shell)


def test_the_cli_rejects_a_bad_forecast_with_exit_2_and_writes_nothing(tmp_path):
    doc = forecast_doc(tmp_path, tmp_path / "f.nc", forecast_length="forever")
    path = tmp_path / "fc.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run_cli("forecast", "run", str(path), "--cycle", "2026-01-02T00")
    assert result.returncode == 2, result.stderr
    assert "forecast_length" in result.stderr
    bad_time = run_cli("forecast", "backfill", str(path), "--from", "yesterday", "--to", "2026-01-02")
    assert bad_time.returncode == 2
    assert not (tmp_path / "runs").exists()


# --- retention ---------------------------------------------------------------------------------------


def test_retention_keeps_the_newest_cycles_and_the_hot_start_source(tmp_path):
    config = ForecastConfig.model_validate(forecast_doc(tmp_path, tmp_path / "f.nc", keep_cycles=2))
    for name in ["20260101T00", "20260101T12", "20260102T00", "20260102T12", "cycles", "notes"]:
        (config.directory / name).mkdir(parents=True)
    removed = prune_cycles(config, keep={"20260102T12", "20260101T00"})
    assert removed == ["20260101T12"]
    assert sorted(p.name for p in config.directory.iterdir()) == [
        "20260101T00",
        "20260102T00",
        "20260102T12",
        "cycles",
        "notes",
    ]


# --- real cycles --------------------------------------------------------------------------------------


def _snapshot_days(run_dir: Path) -> list[float]:
    with xr.open_dataset(run_dir / "acc.snapshot.nc") as ds:
        return [float(t) for t in ds.Time.values]


@pytest.mark.veros
def test_three_consecutive_cycles_cold_then_hot_started_from_the_previous_restart(
    prefect_api, tmp_path, january_forcing
):
    from flows.forecast import forecast_cycle

    config = ForecastConfig.model_validate(forecast_doc(tmp_path, january_forcing))
    first = datetime(2026, 1, 2, tzinfo=UTC)
    records = [forecast_cycle(forecast=config, cycle=first + k * timedelta(hours=12)) for k in range(3)]
    assert [r.status for r in records] == ["completed"] * 3
    assert [r.start for r in records] == ["cold", "hot", "hot"]
    runs = tmp_path / "runs" / "acc-fc"
    assert [r.run_dir for r in records] == [runs / "20260102T00", runs / "20260102T12", runs / "20260103T00"]

    # the cold start spun up for a day before the cycle; the hot starts continue the model clock
    assert records[0].period_start == datetime(2026, 1, 1, tzinfo=UTC)
    assert records[1].period_start == datetime(2026, 1, 2, 12, tzinfo=UTC)
    assert _snapshot_days(records[0].run_dir) == [0.5, 1.0, 1.5, 2.0]
    assert _snapshot_days(records[1].run_dir) == [2.0, 2.5]  # model time 1.5 d at 2026-01-02T12
    assert _snapshot_days(records[2].run_dir) == [2.5, 3.0]

    for previous, record in zip(records, records[1:], strict=False):
        assert record.restart_cycle == previous.run_id
        assert Path(record.restart_from).parent == previous.run_dir
        assert previous.restarts[record.cycle.isoformat()] == Path(record.restart_from).name
        log = (record.run_dir / "logs" / "run.log").read_text()
        assert f"Reading restart data from restart/{Path(record.restart_from).name}" in log
    cold_log = (records[0].run_dir / "logs" / "run.log").read_text()
    assert "Reading restart data" not in cold_log and "restart_input_filename" not in cold_log

    # the model used the forcing file: its wind stress is the forcing interpolated in space and time
    with xr.open_dataset(records[1].run_dir / "acc.snapshot.nc") as snap:
        model_taux = float(snap.surface_taux.isel(Time=0).sel(yt=-29.0, xu=20.0))
    truth = synthetic_wind(datetime(2026, 1, 2), datetime(2026, 1, 4)).taux.interp(
        time=np.datetime64("2026-01-02T12:00"), lat=-29.0, lon=20.0
    )
    assert model_taux == pytest.approx(float(truth), rel=1e-5)
    assert "wind stress from wind.nc" in (records[1].run_dir / "logs" / "run.log").read_text()

    stored = json.loads((runs / "cycles" / "20260103T00.json").read_text())
    assert stored["status"] == "completed" and stored["start"] == "hot" and stored["forcing"] == ["forcing/wind.nc"]
    history = (runs / "cycles" / "history.log").read_text().splitlines()
    assert [line.split()[1:3] for line in history if "completed" in line] == [
        ["20260102T00", "completed"],
        ["20260102T12", "completed"],
        ["20260103T00", "completed"],
    ]


@pytest.mark.veros
def test_no_restart_and_no_cold_start_fails_clearly(prefect_api, tmp_path, january_forcing):
    path = tmp_path / "fc.yaml"
    path.write_text(yaml.safe_dump(forecast_doc(tmp_path, january_forcing, cold_start_ok=False)))
    result = run_cli("forecast", "run", str(path), "--cycle", "2026-01-05T12", env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 1
    assert "no restart valid at 2026-01-05T12:00:00+00:00" in result.stderr and "cold_start_ok" in result.stderr
    record = json.loads((tmp_path / "runs" / "acc-fc" / "cycles" / "20260105T12.json").read_text())
    assert record["status"] == "failed" and "no restart" in record["reason"]
    assert not (tmp_path / "runs" / "acc-fc" / "20260105T12").exists(), "nothing started"


@pytest.mark.veros
def test_backfill_runs_what_is_missing_oldest_first_and_named_cycles_run_however_late(prefect_api, tmp_path):
    now = datetime.now(UTC)
    c0 = floor_cycle(now, timedelta(hours=12)) - timedelta(hours=48)
    forcing = write_synthetic_wind(tmp_path / "wind.nc", c0 - timedelta(days=2), now + timedelta(days=3))
    doc = forecast_doc(tmp_path, forcing, max_lateness="36h", keep_cycles=2, spinup="0h")
    path = tmp_path / "fc.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = {"PREFECT_API_URL": prefect_api}
    c1, c2, c3 = (c0 + k * timedelta(hours=12) for k in (1, 2, 3))

    # c0 and c2 asked for by name run although older than max_lateness (36 h); c1 is missing
    for cycle in (c0, c2):
        ran = run_cli("forecast", "run", str(path), "--cycle", cycle.isoformat(), env=env)
        assert ran.returncode == 0, ran.stderr[-3000:]
    r2 = json.loads((tmp_path / "runs/acc-fc/cycles" / f"{cycle_id(c2)}.json").read_text())
    assert (r2["status"], r2["start"], r2["restart_cycle"]) == ("completed", "hot", cycle_id(c0)), "across the gap"
    c2_log = tmp_path / "runs/acc-fc" / cycle_id(c2) / "logs" / "run.log"
    c2_written = c2_log.stat().st_mtime_ns
    backfill = run_cli(
        "forecast", "backfill", str(path), "--from", c1.isoformat(), "--to", c3.isoformat(),
        env={**env, "COLUMNS": "200"},
    )  # fmt: skip
    assert backfill.returncode == 0, backfill.stderr[-3000:]
    # retention ranks by cycle time: the backfill says which of its cycles are gone (issue 26.5)
    directories = {row[0]: row[5] for row in table_rows(backfill.stdout)}
    assert directories == {cycle_id(c1): "removed (keep_cycles)", cycle_id(c2): "kept", cycle_id(c3): "kept"}

    records = {
        cid: json.loads((tmp_path / "runs/acc-fc/cycles" / f"{cid}.json").read_text())
        for cid in map(cycle_id, (c0, c1, c2, c3))
    }
    r0, r1, r2_after, r3 = records.values()
    assert (r1["status"], r1["start"], r1["restart_cycle"]) == ("completed", "hot", cycle_id(c0)), "the gap filled"
    assert r2_after == r2 and c2_log.stat().st_mtime_ns == c2_written, "a completed cycle is left as it is"
    assert (r3["status"], r3["start"], r3["restart_cycle"]) == ("completed", "hot", cycle_id(c2))
    # keep_cycles=2: c0 stayed while c1 hot-started from it; c3 keeps only c2 and itself
    assert r1["removed_cycles"] == [] and r3["removed_cycles"] == [cycle_id(c0), cycle_id(c1)]
    assert sorted(p.name for p in (tmp_path / "runs/acc-fc").iterdir()) == sorted(
        [cycle_id(c2), cycle_id(c3), "cycles"]
    )

    # re-running completed cycles does nothing (no model run, records untouched) ...
    log = tmp_path / "runs/acc-fc" / cycle_id(c3) / "logs" / "run.log"
    mtime = log.stat().st_mtime_ns
    again = run_cli("forecast", "run", str(path), "--cycle", c3.isoformat(), env=env)
    assert again.returncode == 0 and "already completed" in again.stderr
    assert log.stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / "runs/acc-fc/cycles" / f"{cycle_id(c3)}.json").read_text()) == r3
    # ... unless forced
    forced = run_cli("forecast", "run", str(path), "--cycle", c3.isoformat(), "--force", env=env)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert log.stat().st_mtime_ns != mtime


@pytest.mark.veros
def test_a_failed_forced_rerun_keeps_the_completed_cycle_and_a_good_one_replaces_it(prefect_api, tmp_path):
    """Issue 26.4: the re-run runs in a fresh directory that replaces the cycle's only when it succeeds."""
    c1 = floor_cycle(datetime.now(UTC), timedelta(hours=12)) - timedelta(hours=24)
    c2 = c1 + timedelta(hours=12)
    forcing = write_synthetic_wind(tmp_path / "wind.nc", c1 - timedelta(days=1), c1 + timedelta(days=3))
    path = tmp_path / "fc.yaml"
    path.write_text(yaml.safe_dump(forecast_doc(tmp_path, forcing, spinup="0h")))
    env = {"PREFECT_API_URL": prefect_api, "COLUMNS": "80"}
    runs = tmp_path / "runs" / "acc-fc"
    first = run_cli("forecast", "run", str(path), "--cycle", c1.isoformat(), env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    cycle_dir = runs / cycle_id(c1)
    completed = json.loads((runs / "cycles" / f"{cycle_id(c1)}.json").read_text())
    before = {p.relative_to(cycle_dir): p.stat().st_mtime_ns for p in cycle_dir.rglob("*") if p.is_file()}
    assert completed["restarts"] and all(Path(name) in before for name in completed["restarts"].values())

    forcing.rename(tmp_path / "wind.moved")
    failed = run_cli("forecast", "run", str(path), "--cycle", c1.isoformat(), "--force", env=env)
    assert failed.returncode == 1 and "the completed cycle's outputs and restarts are kept" in failed.stderr
    after = {p.relative_to(cycle_dir): p.stat().st_mtime_ns for p in cycle_dir.rglob("*") if p.is_file()}
    assert after == before, "the completed cycle's directory is untouched"
    record = json.loads((runs / "cycles" / f"{cycle_id(c1)}.json").read_text())
    attempts = record.pop("failed_attempts")
    assert {k: v for k, v in record.items() if k != "written"} == {
        k: v for k, v in completed.items() if k not in ("written", "failed_attempts")
    }
    assert len(attempts) == 1 and "wind.nc" in attempts[0]["reason"]
    kept = Path(attempts[0]["run_dir"])
    assert kept.parent.parent == runs / "attempts"
    assert json.loads((kept / "rompy_tasks_run.json").read_text())["result"]["status"] == "failed", "it is kept"
    history = (runs / "cycles" / "history.log").read_text()
    assert f"{cycle_id(c1)} forced re-run failed (the completed cycle stands)" in history
    status = run_cli("forecast", "status", str(path), "--last", "4", env=env)
    table = [line for line in status.stdout.splitlines() if not line.startswith("Forecast directory:")]
    assert status.stdout.endswith("\n") and max(map(len, table)) <= 80, "fits 80 columns (the path may not)"
    row = next(r for r in table_rows(status.stdout) if r[0] == cycle_id(c1))
    assert row[1] == "completed" and "forced" in " ".join(row[6:])

    # the next cycle still hot-starts from the completed cycle's restart
    forcing_back = (tmp_path / "wind.moved").rename(forcing)
    second = run_cli("forecast", "run", str(path), "--cycle", c2.isoformat(), env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    r2 = json.loads((runs / "cycles" / f"{cycle_id(c2)}.json").read_text())
    assert (r2["start"], r2["restart_cycle"]) == ("hot", cycle_id(c1))

    # a forced re-run that succeeds replaces the directory; the records' paths are true after the swap
    assert forcing_back.is_file()
    good = run_cli("forecast", "run", str(path), "--cycle", c1.isoformat(), "--force", env=env)
    assert good.returncode == 0, good.stderr[-3000:]
    rerun = json.loads((runs / "cycles" / f"{cycle_id(c1)}.json").read_text())
    assert rerun["status"] == "completed" and rerun["run_dir"] == str(cycle_dir) and not rerun["failed_attempts"]
    assert all((cycle_dir / name).is_file() for name in rerun["restarts"].values())
    assert all((cycle_dir / name).is_file() for name in rerun["outputs"])
    assert (cycle_dir / "acc.snapshot.nc").stat().st_mtime_ns != before[Path("acc.snapshot.nc")]
    manifest = json.loads((cycle_dir / "rompy_tasks_run.json").read_text())
    assert manifest["result"]["staging_dir"] == str(cycle_dir) and "attempts" not in json.dumps(manifest)
    assert manifest["pipeline"]["config"]["output_dir"] == str(runs)
    assert sorted(p.name for p in (runs / "attempts").iterdir()) == [kept.parent.name], "only the failed one kept"


@pytest.mark.veros
def test_backfill_rechain_hot_starts_the_cycles_that_cold_started_after_the_gap(prefect_api, tmp_path):
    """Issue 26.5: the cycle after an outage cold-started; once the gap is backfilled, --rechain
    re-runs it (and the cycles after it) hot from the backfilled restarts."""
    c0 = floor_cycle(datetime.now(UTC), timedelta(hours=12)) - timedelta(hours=72)
    c1, c2, c3, c4 = (c0 + k * timedelta(hours=12) for k in (1, 2, 3, 4))
    forcing = write_synthetic_wind(tmp_path / "wind.nc", c0 - timedelta(days=1), c4 + timedelta(days=2))
    path = tmp_path / "fc.yaml"
    path.write_text(yaml.safe_dump(forecast_doc(tmp_path, forcing, spinup="0h")))
    env = {"PREFECT_API_URL": prefect_api, "COLUMNS": "200"}
    for cycle in (c0, c3, c4):  # c1 and c2 missed: c3 finds no restart valid at its time
        ran = run_cli("forecast", "run", str(path), "--cycle", cycle.isoformat(), env=env)
        assert ran.returncode == 0, ran.stderr[-3000:]

    def record(cycle):
        return json.loads((tmp_path / "runs/acc-fc/cycles" / f"{cycle_id(cycle)}.json").read_text())

    assert (record(c3)["start"], record(c4)["restart_cycle"]) == ("cold", cycle_id(c3))
    backfill = run_cli(
        "forecast", "backfill", str(path), "--from", c1.isoformat(), "--to", c2.isoformat(), "--rechain", env=env
    )
    assert backfill.returncode == 0, backfill.stderr[-3000:]
    assert [row[0] for row in table_rows(backfill.stdout)] == [cycle_id(c) for c in (c1, c2, c3, c4)]
    chain = [(record(c)["start"], record(c)["restart_cycle"]) for c in (c1, c2, c3, c4)]
    assert chain == [("hot", cycle_id(c0)), ("hot", cycle_id(c1)), ("hot", cycle_id(c2)), ("hot", cycle_id(c3))]
    assert (tmp_path / "runs/acc-fc" / cycle_id(c4) / "acc.snapshot.nc").is_file()


def test_a_late_scheduled_cycle_ends_in_a_state_named_skipped_and_says_so(prefect_api, tmp_path):
    """Issue 14.3: not a green Completed; the record and history.log say skipped too.

    The run is created as the scheduler creates one (a scheduled time 3 days ago, no `cycle`)
    and executed as a worker's process executes it (`python -m prefect.engine <id>`, a fresh process).
    """
    from prefect import get_client
    from prefect.states import Scheduled

    from flows.forecast import forecast_cycle

    old = floor_cycle(datetime.now(UTC), timedelta(hours=12)) - timedelta(days=3)
    doc = forecast_doc(tmp_path, tmp_path / "unused.nc", max_lateness="1d")
    with get_client(sync_client=True) as client:
        created = client.create_flow_run(
            forecast_cycle, parameters={"forecast": doc}, state=Scheduled(scheduled_time=old)
        )
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT__FLOW_ENTRYPOINT": "flows/forecast.py:forecast_cycle"}
    executed = subprocess.run(
        [sys.executable, "-m", "prefect.engine", str(created.id)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert executed.returncode == 0, executed.stdout[-2000:] + executed.stderr[-2000:]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(created.id)
    assert run.state.name == "Skipped", run.state.message
    # Cancelled in type (grey, not counted as completed), Skipped by name
    assert (run.name, run.state.type.value, run.state.name) == (f"acc-fc-{cycle_id(old)}", "CANCELLED", "Skipped")
    assert "the scheduler's run came later than max_lateness (1 day, 0:00:00); not run" in run.state.message
    history = (tmp_path / "runs/acc-fc/cycles/history.log").read_text()
    assert f"{cycle_id(old)} skipped" in history


def test_forecast_status_lists_the_newest_cycles_and_fails_when_the_newest_is_missing_or_failed(tmp_path):
    """Issue 14.8: the morning check reads the records; exit 1 names the newest cycle's problem."""
    path = tmp_path / "fc.yaml"
    path.write_text(yaml.safe_dump(forecast_doc(tmp_path, tmp_path / "f.nc")))
    config = load_forecast(path)
    newest = floor_cycle(datetime.now(UTC), timedelta(hours=12))
    earlier = CycleRecord.begin(config, newest - timedelta(hours=12))
    earlier.status, earlier.start, earlier.restart_cycle = "completed", "hot", cycle_id(newest - timedelta(hours=24))
    earlier.timings, earlier.outputs = {"total": 12.5}, ["acc.snapshot.nc", "acc.energy.nc"]
    earlier.started = earlier.cycle + timedelta(seconds=90)  # taken up 90 s after its cycle time
    save_cycle(config, earlier)
    env = {"COLUMNS": "200"}

    missing = run_cli("forecast", "status", str(path), "--last", "3", env=env)
    assert missing.returncode == 1 and f"The newest cycle {cycle_id(newest)} is missing" in missing.stderr
    rows = table_rows(missing.stdout)
    assert [row[:2] for row in rows] == [
        [cycle_id(newest), "missing"],
        [earlier.run_id, "completed"],
        [cycle_id(newest - timedelta(hours=24)), "missing"],
    ]
    assert rows[1][2:6] == [f"hot from {cycle_id(newest - timedelta(hours=24))}", "00:01:30", "12.5", "2"]
    # the check can wait for a cycle still being run: --grace looks one cycle back
    assert run_cli("forecast", "status", str(path), "--grace", "12h", env=env).returncode == 0

    failed = CycleRecord.begin(config, newest)
    failed.status, failed.reason = "failed", "ModelRunError: the model exited with code 1"
    save_cycle(config, failed)
    result = run_cli("forecast", "status", str(path), env=env)
    assert result.returncode == 1 and f"The newest cycle {cycle_id(newest)} is failed" in result.stderr
    assert "ModelRunError: the model exited with code 1" in result.stdout


def test_the_example_forecast_file_is_valid():
    from conftest import REPO

    from rompy_tasks.forecast import load_forecast

    config = load_forecast(REPO / "examples" / "veros-forecast" / "forecast.yaml")
    assert config.cycle_interval == timedelta(hours=12) and config.pipeline.forcing[0].name == "wind"
    assert config.pipeline.config.config.wind_stress.file == "forcing/wind.nc"
