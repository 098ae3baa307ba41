"""rompy's filters on `${VAR|...}` file variables: `as_datetime[:format]`, `strftime:format`, `shift:±N(d|h|m|s)`.

`${CYCLE|strftime:%Y%m%d}`, `${CYCLE|as_datetime|shift:-1d}`: as in rompy (rompy.templating),
a chain applies left to right; a time is read with rompy's compact forms or ISO 8601.
An unknown filter or a value a filter cannot read is a ValueError naming it.
"""

import re
from datetime import datetime, timedelta
from typing import Any

from rompy_tasks.core.time import parse_time

FILTERS = ("as_datetime", "strftime", "shift")
_SHIFT = re.compile(r"^([+-]?)(\d+)([dhms])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def unknown_filters(chain: str) -> list[str]:
    """The names in a `|`-separated filter chain that are not filters."""
    names = [part.partition(":")[0].strip() for part in chain.split("|") if part.strip()]
    return [name for name in names if name not in FILTERS]


def apply_filters(value: Any, chain: str) -> Any:
    """`value` through each `|`-separated filter of `chain`."""
    for spec in (part.strip() for part in chain.split("|")):
        if spec:
            value = _apply(value, spec)
    return value


def _apply(value: Any, spec: str) -> Any:
    name, _, argument = spec.partition(":")
    name = name.strip()
    if name == "as_datetime":
        return _as_datetime(value, argument or None)
    if name == "strftime":
        if not argument:
            raise ValueError("filter strftime needs a format, e.g. strftime:%Y%m%d")
        return _as_datetime(value, None).strftime(argument)
    if name == "shift":
        match = _SHIFT.match(argument.strip())
        if not match:
            raise ValueError(f"filter shift needs [+|-]<number><d|h|m|s>, e.g. shift:-1d, not {argument!r}")
        sign, amount, unit = match.groups()
        try:
            delta = timedelta(**{_UNITS[unit]: int(amount)})
            return _as_datetime(value, None) + (-delta if sign == "-" else delta)
        except OverflowError:
            raise ValueError(f"filter shift:{argument.strip()} goes beyond the representable dates") from None
    raise ValueError(f"unknown filter {name!r} (rompy's filters: {', '.join(FILTERS)})")


def _as_datetime(value: Any, fmt: str | None) -> datetime:
    if isinstance(value, datetime):
        return value
    if fmt is not None:
        return datetime.strptime(str(value), fmt)
    parsed = parse_time(value)
    if isinstance(parsed, datetime):
        return parsed
    try:
        return datetime.fromisoformat(str(parsed).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a time") from None
