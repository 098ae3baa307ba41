"""A forecast publishes each cycle's products, keeps the newest `keep_published_cycles` at the
destination, and a forced re-run publishes only once it has replaced the cycle (issue 25.2)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from conftest import run_cli
from test_forecast import forecast_doc

from rompy_tasks.forecast import cycle_id, floor_cycle, load_forecast, publishers, without_publishers
from rompy_tasks.synthetic import write_synthetic_wind

pytestmark = pytest.mark.veros


def publishing_forecast(tmp_path, forcing, **extra) -> dict:
    doc = forecast_doc(tmp_path, forcing, spinup="0h", **extra)
    products = tmp_path / "products"
    doc["pipeline"]["postprocessor"] = [
        {"processor": "publish", "destination": f"file://{products}/${{CYCLE}}", "files": ["*.nc"]}
    ]
    return doc


def test_cycles_publish_old_ones_are_removed_at_the_destination_and_a_failed_rerun_publishes_nothing(
    prefect_api, tmp_path
):
    c1 = floor_cycle(datetime.now(UTC), timedelta(hours=12)) - timedelta(hours=24)
    c2 = c1 + timedelta(hours=12)
    forcing = write_synthetic_wind(tmp_path / "wind.nc", c1 - timedelta(days=1), c1 + timedelta(days=3))
    path = tmp_path / "fc.yaml"
    path.write_text(yaml.safe_dump(publishing_forecast(tmp_path, forcing, keep_published_cycles=1)))
    env = {"PREFECT_API_URL": prefect_api}
    products, runs = tmp_path / "products", tmp_path / "runs" / "acc-fc"
    (products / "unrelated").mkdir(parents=True)
    (products / "unrelated" / "keep.txt").write_text("not ours")

    for cycle in (c1, c2):
        ran = run_cli("forecast", "run", str(path), "--cycle", cycle.isoformat(), env=env)
        assert ran.returncode == 0, ran.stderr[-3000:]
    one, two = products / cycle_id(c1), products / cycle_id(c2)
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["files"] and all((two / f["path"]).is_file() for f in manifest["files"])
    assert not (one / "manifest.json").exists() and not list(one.glob("*.nc")), "the older cycle's products went"
    assert (runs / cycle_id(c1)).is_dir(), "its run directory stays (keep_cycles is another setting)"
    assert (products / "unrelated" / "keep.txt").read_text() == "not ours"
    record = json.loads((runs / "cycles" / f"{cycle_id(c2)}.json").read_text())
    assert record["published"] == {"0": f"file://{two}"} and record["unpublished_cycles"] == [cycle_id(c1)]

    before = {p.name: p.stat().st_mtime_ns for p in two.iterdir()}
    forcing.rename(tmp_path / "wind.moved")
    failed = run_cli("forecast", "run", str(path), "--cycle", c2.isoformat(), "--force", env=env)
    assert failed.returncode == 1
    assert {p.name: p.stat().st_mtime_ns for p in two.iterdir()} == before, "a failed re-run publishes nothing"
    (tmp_path / "wind.moved").rename(forcing)
    good = run_cli("forecast", "run", str(path), "--cycle", c2.isoformat(), "--force", env=env)
    assert good.returncode == 0, good.stderr[-3000:]
    assert "published" in good.stderr and (two / "manifest.json").is_file()


def test_a_forced_rerun_attempt_runs_without_its_publishers(tmp_path):
    forcing = write_synthetic_wind(
        tmp_path / "wind.nc", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
    )
    path = tmp_path / "fc.yaml"
    path.write_text(yaml.safe_dump(publishing_forecast(tmp_path, forcing)))
    forecast = load_forecast(path)
    assert list(publishers(forecast.pipeline)) == [0]
    assert publishers(without_publishers(forecast.pipeline)) == {}


def test_a_locked_forecast_may_keep_more_published_cycles_never_fewer():
    from flows.policy import lowered_retention

    deployed = {"forecast": {"keep_cycles": 4, "keep_published_cycles": 3}}
    assert lowered_retention({"keep_published_cycles": 5}, deployed) == []
    problems = lowered_retention({"keep_published_cycles": 1}, deployed)
    assert [p.loc for p in problems] == ["overrides.keep_published_cycles"]
    unlimited = lowered_retention({"keep_published_cycles": 9}, {"forecast": {}})
    assert [p.msg for p in unlimited] == ["this deployment keeps every cycle; it cannot be limited"]
