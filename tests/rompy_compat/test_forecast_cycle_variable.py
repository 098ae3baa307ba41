"""rompy's `${CYCLE|...}` in forecast files: the cycle time, set when each cycle runs (issue 12).

Before, `CYCLE` was read from the environment once, when the file loaded, so every cycle of a
forecast got the same value (or the file was invalid when CYCLE was unset).
"""

import shutil
from datetime import UTC, datetime

import pytest
import yaml
from conftest import run_cli
from test_forecast import forecast_doc

from rompy_tasks.forecast import cycle_pipeline, load_forecast

DAILY_FILE = "wind-${CYCLE|shift:-1d|strftime:%Y%m%d}.nc"  # yesterday's file: the analysis a cycle starts from


def _forecast_file(tmp_path, forcing_dir, name: str = DAILY_FILE):
    doc = forecast_doc(tmp_path, forcing_dir / name)
    path = tmp_path / "forecast.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_each_cycle_gets_its_own_cycle_time(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLE", "19990101T00")  # the environment does not decide a forecast's cycle
    forecast = load_forecast(_forecast_file(tmp_path, tmp_path))
    urls = [cycle_pipeline(forecast, datetime(2026, 1, day, tzinfo=UTC), None).forcing[0].url for day in (2, 3)]
    assert urls == [str(tmp_path / "wind-20260101.nc"), str(tmp_path / "wind-20260102.nc")]


def test_the_cli_validates_a_forecast_with_cycle_variables_and_rejects_unknown_filters(tmp_path):
    assert run_cli("forecast", "validate", str(_forecast_file(tmp_path, tmp_path))).returncode == 0
    bad = run_cli("forecast", "validate", str(_forecast_file(tmp_path, tmp_path, "wind-${CYCLE|ymd}.nc")))
    assert bad.returncode == 2
    assert "pipeline.forcing[0].url: ${CYCLE|ymd}: unknown filter(s) ['ymd']" in bad.stderr, bad.stderr


@pytest.mark.veros
def test_a_cycle_run_from_the_shell_reads_the_file_its_cycle_names(tmp_path, prefect_api, january_forcing):
    shutil.copy(january_forcing, tmp_path / "wind-20260101.nc")
    path = _forecast_file(tmp_path, tmp_path)
    ran = run_cli(
        "forecast", "run", str(path), "--cycle", "2026-01-02T00", env={"PREFECT_API_URL": prefect_api}, timeout=600
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    log = (tmp_path / "runs" / "acc-fc" / "20260102T00" / "logs" / "generate.log").read_text()
    assert "forcing/wind.nc" in log
    missing = run_cli(
        "forecast", "run", str(path), "--cycle", "2026-01-03T00", env={"PREFECT_API_URL": prefect_api}, timeout=600
    )
    assert missing.returncode == 1 and "wind-20260102.nc" in missing.stderr, missing.stderr[-2000:]
