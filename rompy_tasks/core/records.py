"""Status records: small JSON files written atomically, plus an append-only history.

Ensembles and forecast cycles decide what to (re-)run from these, so a kill mid-write must
leave the old record or the new one, never half of one.
"""

import json
from pathlib import Path
from typing import Any

from rompy_tasks.core.run_files import open_for_append, replacing


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at `path`, or None if there is none (or it is unreadable)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json_atomically(path: Path, payload: dict[str, Any], durable: bool = True) -> Path:
    """Replace `path` with `payload` as JSON: a kill or a full disk leaves the old file or the new one.

    `durable` also survives a machine crash (fsync): for records that decide what runs again.
    A link at `path` is replaced, never followed.
    """
    with replacing(path, durable=durable) as handle:
        handle.write(json.dumps(payload, indent=2, default=str))
    return path


def write_record(path: Path, payload: dict[str, Any], history: str, durable: bool = True) -> Path:
    """Replace the record at `path` atomically and append `history` to history.log beside it.

    A kill between the two leaves the record without its history line: missing_history finds it.
    """
    write_json_atomically(path, payload, durable)
    append_history(path.parent, history)
    return path


def append_history(directory: Path, line: str) -> None:
    """Append one line to `directory`'s history.log."""
    with open_for_append(directory / "history.log") as log:
        log.write(line.rstrip("\n") + "\n")


def missing_history(directory: Path, lines: set[str]) -> set[str]:
    """Those of `lines` that `directory`'s history.log lacks (read a line at a time)."""
    missing = set(lines)
    try:
        with open(directory / "history.log") as log:
            for line in log:
                missing.discard(line.rstrip("\n"))
    except FileNotFoundError:
        pass
    return missing
