"""Limits the OS puts on starting a process, checked at validation rather than at start.

Linux refuses one argument or environment string longer than MAX_ARG_STRLEN (32 pages:
128 KiB) with E2BIG when the model starts, long after the file was accepted.
"""

from collections.abc import Iterable

MAX_ARG_BYTES = 32 * 4096


def too_long_arguments(strings: Iterable[str]) -> list[str]:
    """The strings (shortened for messages) a process could not be started with."""
    return [f"{s[:40]}... ({len(s.encode()):,} bytes)" for s in strings if len(s.encode()) >= MAX_ARG_BYTES]


def argument_limit_message(what: str, strings: Iterable[str]) -> str | None:
    """Why `what` cannot be passed to a process, or None when every string fits."""
    long = too_long_arguments(strings)
    if not long:
        return None
    return f"{what} longer than the {MAX_ARG_BYTES // 1024} KiB the OS allows per string: {', '.join(long)}"
