"""Status records: small JSON files written atomically, plus an append-only history.

Ensembles and forecast cycles decide what to (re-)run from these, so a kill mid-write must
leave the old record or the new one, never half of one.
"""

import json
import os
from pathlib import Path
from typing import Any


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at `path`, or None if there is none (or it is unreadable)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_record(path: Path, payload: dict[str, Any], history: str) -> Path:
    """Replace the record at `path` atomically and append `history` to history.log beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    with open(path.parent / "history.log", "a") as log:
        log.write(history.rstrip("\n") + "\n")
    return path
