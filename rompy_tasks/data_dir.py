"""The user's data directory for rompy-tasks (the local server, warm command processes).

`$ROMPY_TASKS_DATA_DIR`, else `$XDG_DATA_HOME`, else `~/.local/share`, then `rompy-tasks/`.
Stdlib only and tiny: the `rompy-tasks` entry point (flows/entry.py) imports it before anything else.

Everything below `rompy-tasks/` is private to its user: the local server's database and auth
string, warm command sockets, pid and log files. On a shared host the data dir may sit where
another user could create it first (`XDG_DATA_HOME=/tmp/...`, a group project directory), so
each directory from `rompy-tasks/` down is checked without following links (ours, a directory,
0700) before anything in it is trusted, and files in it are opened without following links.
"""

import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class UnsafeDataDir(RuntimeError):
    """The data directory (or one below it) could be changed by another user: nothing in it is used."""


def data_dir() -> Path:
    base = os.environ.get("ROMPY_TASKS_DATA_DIR") or os.environ.get("XDG_DATA_HOME")
    root = Path(base) if base else Path.home() / ".local" / "share"
    return root / "rompy-tasks"


def private_dir(*parts: str) -> Path:
    """`<data dir>/<parts...>`, each level created 0700 or checked to be our own private directory.

    An existing level that is a link, not a directory or another user's is refused
    (UnsafeDataDir); one of ours with group or other access is made 0700 (older versions made 0755).
    """
    path = data_dir()
    path.parent.mkdir(parents=True, exist_ok=True)
    for part in ("", *parts):
        path = path / part if part else path
        try:
            os.mkdir(path, PRIVATE_DIR_MODE)
        except FileExistsError:
            pass
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            what = "a link" if stat.S_ISLNK(info.st_mode) else f"owned by uid {info.st_uid}"
            what = what if stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode) else "not a directory"
            raise UnsafeDataDir(
                f"{path} is {what}, so another user could read or change what rompy-tasks keeps there; "
                "set ROMPY_TASKS_DATA_DIR to a directory of your own"
            )
        if stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE:
            os.chmod(path, PRIVATE_DIR_MODE)
    return path


def open_private(path: Path, flags: int = os.O_RDONLY) -> int:
    """A file descriptor for `path` in a private directory: never through a link, created 0600."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE_MODE)


def read_private(path: Path) -> str:
    """The text of a file in a private directory (not through a link)."""
    with os.fdopen(open_private(path)) as handle:
        return handle.read()


def write_private(path: Path, text: str) -> None:
    """Replace a small file in a private directory: 0600, not through a link (a link is replaced)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def process_matches(pid: int, *words: str) -> bool:
    """True if `pid` is a live process of this user whose command line contains every one of `words`.

    Before signalling a pid read from a file: pids are reused, and a file may name any process.
    """
    try:
        info = os.stat(f"/proc/{pid}")
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return info.st_uid == os.geteuid() and all(word in command for word in words)
