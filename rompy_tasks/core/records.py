"""Status records: small JSON files written atomically, plus an append-only history.

Ensembles and forecast cycles decide what to (re-)run from these, so a kill mid-write must
leave the old record or the new one, never half of one.
"""

import json
import os
import threading
from pathlib import Path
from typing import Any


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at `path`, or None if there is none (or it is unreadable)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json_atomically(path: Path, payload: dict[str, Any], durable: bool = True) -> Path:
    """Replace `path` with `payload` as JSON: a kill or a full disk leaves the old file or the new one.

    `durable` also survives a machine crash (fsync): for records that decide what runs again.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "w") as handle:
            handle.write(json.dumps(payload, indent=2, default=str))
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_record(path: Path, payload: dict[str, Any], history: str, durable: bool = True) -> Path:
    """Replace the record at `path` atomically and append `history` to history.log beside it."""
    write_json_atomically(path, payload, durable)
    with open(path.parent / "history.log", "a") as log:
        log.write(history.rstrip("\n") + "\n")
    return path
