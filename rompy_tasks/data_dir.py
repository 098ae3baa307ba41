"""The user's data directory for rompy-tasks (the local server, warm command processes).

`$ROMPY_TASKS_DATA_DIR`, else `$XDG_DATA_HOME`, else `~/.local/share`, then `rompy-tasks/`.
Stdlib only and tiny: the `rompy-tasks` entry point (flows/entry.py) imports it before anything else.
"""

import os
from pathlib import Path


def data_dir() -> Path:
    base = os.environ.get("ROMPY_TASKS_DATA_DIR") or os.environ.get("XDG_DATA_HOME")
    root = Path(base) if base else Path.home() / ".local" / "share"
    return root / "rompy-tasks"
