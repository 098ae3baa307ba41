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


@contextmanager
def exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` for the block, or fail at once naming who holds it.

    Two runs of the same run directory (a cron run and a click, two shells) would otherwise
    delete and overwrite each other's files. The kernel drops the lock when its holder dies, so
    a killed run never leaves a stale lock; the file is removed on release (no clutter beside
    thousands of member directories), and a lock taken on a file that was meanwhile removed is
    taken again on the new one.
    """
    import fcntl

    real_dir(lock_path.parent)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 128, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StageError(f"{what} is in use by another run ({holder}); wait for it or stop it first") from None
        try:
            current = os.stat(lock_path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and current.st_ino == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder before us removed it: lock the file that is there now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)


RENAME_EXCHANGE = 2  # linux/fs.h


def exchange_directories(a: Path, b: Path) -> None:
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE): a kill leaves one or the other.

    Where the kernel or filesystem cannot exchange, two renames (a brief moment with neither).
    """
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if hasattr(libc, "renameat2"):
        if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code), str(a), None, str(b))
    parked = a.with_name(a.name + ".exchange")
    os.rename(a, parked)
    os.rename(b, a)
    os.rename(parked, b)
