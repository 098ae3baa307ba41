"""Model time: durations in the forms modellers write, and the run period.

Durations accept ISO 8601 (`PT1H`, `P2D`), rompy-style shorthands (`1h`, `15m`, `2d`, `30s`,
`1w`), SLURM's clock forms (`HH:MM:SS`, `D-HH:MM:SS`), plain seconds, or a `timedelta` — the
same forms in every duration field (`timeout`, `time_limit`, `*_seconds`, forecast durations);
a field keeps its unit (seconds for `timeout`) and each backend renders its own format.
`TimeRange` follows rompy: two of `start`, `end` and `duration`, an output `interval` and
`include_end`. Times are ISO 8601 or rompy's compact forms (`20230101`, `20230101T00`,
`20230101.000000`, `2023-01-01T00`); a number is never a Unix time. Times without a zone are
UTC (as model times usually are, and as rompy treats them) and are stored timezone-aware, so
they compare with Prefect's schedule times and serialise as RFC 3339.
"""

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    model_serializer,
    model_validator,
)

_SHORTHAND = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|d|h|m|min|s|ms)?\s*$", re.IGNORECASE)  # no unit: seconds
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "min": 60, "s": 1, "ms": 0.001}
_ISO = TypeAdapter(timedelta)
CLOCK = re.compile(r"^\s*(?:(\d+)-)?(\d+):(\d{2}):(\d{2})\s*$")  # HH:MM:SS or D-HH:MM:SS (SLURM)


def parse_duration(value: Any) -> timedelta:
    """Parse a duration; raise ValueError with the accepted forms when it is not one."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration must not be a boolean")
    if isinstance(value, int | float):
        return _seconds(value, value)
    if isinstance(value, str):
        match = _SHORTHAND.match(value)
        if match:
            number, unit = match.groups()
            return _seconds(float(number) * _UNIT_SECONDS[(unit or "s").lower()], value)
        if clock := CLOCK.match(value):
            days, hours, minutes, seconds = (int(g or 0) for g in clock.groups())
            if minutes > 59 or seconds > 59:
                raise ValueError(f"invalid duration {value!r}: minutes and seconds must be below 60")
            return _seconds(((days * 24 + hours) * 60 + minutes) * 60 + seconds, value)
        if value.strip().upper().startswith("P"):
            try:
                return _ISO.validate_python(value.strip())
            except Exception:
                pass
    raise ValueError(
        f"invalid duration {value!r}: use ISO 8601 (PT1H, P2D), a shorthand (15m, 1h, 2d, 1w), HH:MM:SS or seconds"
    )


def _seconds(seconds: float, original: Any) -> timedelta:
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {original!r} is out of range") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _as_seconds(value: Any) -> Any:
    return parse_duration(value).total_seconds() if isinstance(value, str | timedelta) else value


def _as_whole_seconds(value: Any) -> Any:
    seconds = _as_seconds(value)
    return int(seconds) if isinstance(seconds, float) and seconds.is_integer() else seconds


def seconds_type(ge: float, le: float, whole: bool = False) -> Any:
    """A field counting seconds in [ge, le] that also takes every duration form ("2h", "PT30M", "01:00:00").

    The bounds are in the JSON schema's number branch too, so API forms show them.
    """
    number = int if whole else float
    bounds = Field(ge=ge, le=le)
    parse = _as_whole_seconds if whole else _as_seconds
    return Annotated[number, BeforeValidator(parse, json_schema_input_type=Annotated[number, bounds] | str), bounds]


def clock_text(seconds: float) -> str:
    """`HH:MM:SS`, or `D-HH:MM:SS` from a day on (SLURM's walltime form)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}-" if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def duration_text(seconds: float) -> str:
    """`20 s`, `15 min`, `18 h`, `1.5 d`: a window as a person says it."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{round(seconds / size, 2):g} {unit}"
    return f"{seconds:g} s"


def as_utc(value: datetime) -> datetime:
    """A naive time is taken as UTC; an aware one is converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# rompy's compact forms (rompy.core.time.TimeRange), tried before ISO 8601.
ROMPY_TIME_FORMATS = (
    "%Y%m%d",
    "%Y%m%dT%H",
    "%Y%m%dT%H%M",
    "%Y%m%dT%H%M%S",
    "%Y%m%d.%H",
    "%Y%m%d.%H%M",
    "%Y%m%d.%H%M%S",
    "%Y-%m-%d",
    "%Y-%m-%dT%H",
    "%Y-%m-%dT%H%M",
)
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")


def parse_time(value: Any) -> Any:
    """A time as rompy users write it: rompy's compact forms or ISO 8601.

    A number is never read as a Unix time (pydantic would read `"20230101"` as 1970-08-23):
    YAML turns `20230101` into an int and `20230101.000000` into a float, so those are read
    as rompy's compact forms, and any other number is an error.
    """
    if isinstance(value, bool):
        raise ValueError("a time must not be a boolean")
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, float):
        value = f"{value:.6f}"
    if not isinstance(value, str):
        return value
    return _parse_text(value)


@lru_cache(maxsize=4096)  # an ensemble's members repeat the same few times: parse each once
def _parse_text(value: str) -> Any:
    text = value.strip()
    for fmt in ROMPY_TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    if _NUMBER.fullmatch(text):
        raise ValueError(
            f"{value!r} is not a time (a number is never read as a Unix time): "
            "write it as 20230101, 20230101T06, 20230101.060000 or 2023-01-01T06:00"
        )
    return text


UTCDateTime = Annotated[datetime, BeforeValidator(parse_time), AfterValidator(as_utc)]


class TimeRange(BaseModel):
    """The model period: two of `start`, `end` and `duration` (rompy's rule; all three if they agree)."""

    model_config = ConfigDict(extra="forbid")

    start: UTCDateTime | None = None
    end: UTCDateTime | None = None
    duration: Duration | None = None
    interval: Duration = timedelta(hours=1)
    include_end: bool = True
    _derived: str | None = PrivateAttr(None)  # "start", "end" or "duration": computed, not given

    @model_validator(mode="after")
    def _resolve_end(self) -> "TimeRange":
        if self.start is None:
            if self.end is None or self.duration is None:
                raise ValueError("give two of 'start', 'end' and 'duration'")
            self._derived = "start"
            self.start = self.end - self.duration
        if self.end is None and self.duration is None:
            raise ValueError("give either 'end' or 'duration'")
        if self.end is not None and self.duration is not None and self.end - self.start != self.duration:
            raise ValueError("'end' and 'duration' disagree: give one of them")
        if self.end is None:
            self._derived = "end"
            try:
                self.end = self.start + self.duration
            except OverflowError:
                raise ValueError("'start' + 'duration' is beyond the representable dates") from None
        if self.duration is None:
            self._derived = "duration"
            self.duration = self.end - self.start
        if self.duration <= timedelta(0):
            raise ValueError("'end' must be after 'start'")
        if self.interval <= timedelta(0):
            raise ValueError("'interval' must be positive")
        return self

    @model_serializer(mode="wrap")
    def _without_derived(self, handler):
        """Dump what was given, so overriding `duration` (or `end`) later cannot contradict the other."""
        data = handler(self)
        if self._derived and isinstance(data, dict):
            data.pop(self._derived, None)
        return data

    @property
    def seconds(self) -> float:
        """Length of the period in seconds (what models call runlen)."""
        return self.duration.total_seconds()

    @property
    def dates(self) -> list[datetime]:
        """Output times from start every interval, up to end (inclusive if include_end)."""
        times, t = [], self.start
        while t < self.end or (self.include_end and t == self.end):
            times.append(t)
            t += self.interval
        return times
