from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from rompy_tasks.core.time import TimeRange, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h", 3600),
        ("15m", 900),
        ("2d", 172800),
        ("30s", 30),
        ("1w", 604800),
        ("1.5h", 5400),
        ("PT1H", 3600),
        ("P2D", 172800),
        ("PT15M", 900),
        (600, 600),
        ("3600", 3600),  # what `${JOB_TIMEOUT:-3600}` yields: seconds, as the message says
        (" 90.5 ", 90.5),
        (timedelta(hours=3), 10800),
    ],
)
def test_parse_duration_accepts_iso_and_shorthands(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["soon", "1 fortnight", "", "h1", True, None, "P"])
def test_parse_duration_rejects_nonsense(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_time_range_from_duration_and_from_end_agree():
    a = TimeRange(start="2026-01-01T00:00", duration="2d", interval="12h")
    b = TimeRange(start="2026-01-01T00:00", end="2026-01-03T00:00", interval="PT12H")
    assert a.end == b.end == datetime(2026, 1, 3, tzinfo=UTC)
    assert a.duration == b.duration == timedelta(days=2)
    assert a.seconds == 172800
    assert len(a.dates) == 5 and a.dates[-1] == a.end


def test_time_range_include_end_false_drops_last():
    period = TimeRange(start="2026-01-01", duration="1d", interval="6h", include_end=False)
    assert [d.hour for d in period.dates] == [0, 6, 12, 18]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "either 'end' or 'duration'"),
        ({"duration": "0s"}, "after 'start'"),
        ({"end": "2025-12-31"}, "after 'start'"),
        ({"duration": "1d", "end": "2026-01-05"}, "disagree"),
        ({"duration": "1d", "interval": "-1h"}, "interval"),
    ],
)
def test_time_range_rejects_inconsistent_periods(fields, message):
    with pytest.raises(ValidationError, match=message):
        TimeRange(start="2026-01-01", **fields)


def test_times_are_utc_aware():
    naive = TimeRange(start="2026-01-01T00:00", duration="1h")
    assert naive.start == datetime(2026, 1, 1, tzinfo=UTC)
    shifted = TimeRange(start="2026-01-01T12:00+10:00", duration="1h")
    assert shifted.start == datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert shifted.start.tzinfo is UTC
    assert naive.model_dump(mode="json")["start"] == "2026-01-01T00:00:00Z"
    assert UTC == UTC


def test_dump_keeps_what_was_given_so_overrides_stay_consistent():
    given_duration = TimeRange(start="2026-01-01", duration="2d")
    assert "end" not in given_duration.model_dump() and given_duration.end == datetime(2026, 1, 3, tzinfo=UTC)
    data = given_duration.model_dump(mode="json") | {"duration": "5d"}
    assert TimeRange.model_validate(data).end == datetime(2026, 1, 6, tzinfo=UTC)
    given_end = TimeRange(start="2026-01-01", end="2026-01-04")
    assert "duration" not in given_end.model_dump(mode="json")
    assert TimeRange.model_validate(given_end.model_dump(mode="json")).duration == timedelta(days=3)


@pytest.mark.parametrize(
    ("model", "field", "given", "expected"),
    [
        ("backend", "timeout", "2h", 7200),
        ("backend", "timeout", "01:30:00", 5400),
        ("backend", "timeout", 600, 600),
        ("backend", "timeout", "3600", 3600),
        ("ensemble", "stagger_seconds", "1m", 60.0),
        ("ensemble", "retry_delay_seconds", "PT30S", 30.0),
        ("pipeline", "run_retry_delay_seconds", "90s", 90.0),
    ],
)
def test_every_seconds_field_takes_every_duration_form(model, field, given, expected):
    """One notation for durations: today's numbers stay valid, duration strings are accepted too."""
    from rompy_tasks.backends.local import LocalConfig
    from rompy_tasks.ensemble import EnsembleConfig
    from rompy_tasks.pipeline import validate_data

    run = {"run_id": "r", "output_dir": "/tmp/unused", "period": {"start": "2026-01-01", "duration": "1h"}}
    pipeline = {"config": {**run, "config": {"model_type": "shell", "command": "true"}}}
    if model == "backend":
        value = getattr(LocalConfig(**{field: given}), field)
    elif model == "pipeline":
        value = getattr(validate_data({**pipeline, field: given}), field)
    else:
        doc = {"name": "e", "pipeline": pipeline, "members": {"n": 1}, field: given}
        value = getattr(EnsembleConfig.model_validate(doc), field)
    assert value == expected and type(value) is type(expected)
