"""Host-side writes into a run directory, never through a symbolic link.

A run directory is writable by the model (and by a container's user). The host writes there
too, often as a more privileged user: stage logs, the manifest, analysis, plots, archives. A
model that plants `logs/run.log -> ~/.ssh/authorized_keys` or `plots -> /etc` must not get
the next write redirected. So the host creates its own subdirectories as real directories,
opens files with O_NOFOLLOW, and refuses (with the path named) where it finds a link.

Files are opened before the model starts where the model could still interfere (the stage
log), so a model cannot swap a checked directory for a link in between.
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from rompy_tasks.core.errors import StageError


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise StageError(f"refusing to write through the symbolic link {path} (something in the run made it)")


def real_dir(path: Path) -> Path:
    """`path` as a directory of ours: created if missing, refused if it is (or its parent is) a link."""
    _refuse_link(path.parent)
    _refuse_link(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_for_append(path: Path) -> IO[str]:
    """Open a log file for appending, never following a link at it or at its directory."""
    real_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    except OSError:
        _refuse_link(path)
        raise
    return os.fdopen(fd, "a")


@contextmanager
def replacing(path: Path, binary: bool = False, durable: bool = False) -> Iterator[IO]:
    """Write a new file that atomically replaces `path` when the block ends.

    A link at `path` is replaced, never followed; a failure (or a kill) leaves the old file.
    `durable` also survives a machine crash (fsync).
    """
    real_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    """Replace the file at `path` with `text` (atomically, never through a link)."""
    with replacing(path) as handle:
        handle.write(text)
    return path
