"""Host paths no config may hand over: system directories, runtime sockets, engine state.

A Docker volume or build context under them would give a container the host; a publish
destination there would let a run overwrite the host's files.
"""

import stat
from pathlib import Path

# Host paths that give a container (or a run) the host: system directories, runtime sockets, engine state.
HOST_PATHS_REFUSED = tuple(
    Path(p)
    for p in (
        "/etc", "/root", "/boot", "/proc", "/sys", "/dev", "/run", "/var/run", "/var/lib/docker",
        "/var/lib/containerd", "/usr", "/bin", "/sbin", "/lib", "/lib64",
    )
)  # fmt: skip
# Roots shared by every user: below them is fine (a user's data), the root itself hands over everyone's files.
SHARED_ROOTS_REFUSED = (Path("/home"), Path("/tmp"))


def host_access_problem(path: Path) -> str | None:
    """Why handing `path` to a container (a mount, a build context) or to a run's writes would
    hand it the host; None if not."""
    resolved = path.expanduser().resolve()
    if resolved == Path("/"):
        return "it is the host's root directory"
    if resolved in SHARED_ROOTS_REFUSED:
        return f"it is {resolved} itself, which holds every user's files (mount a directory below it)"
    try:
        if stat.S_ISSOCK(resolved.stat().st_mode):
            return "it is a socket, an API into the host (such as the Docker engine's)"
    except OSError:
        pass
    for refused in HOST_PATHS_REFUSED:
        if resolved == refused or refused in resolved.parents:
            return f"it is inside the host's {refused}"
        if resolved in refused.parents:
            return f"it contains the host's {refused}"
    return None


def run_dir_problem(path: Path) -> str | None:
    """Why `path` must not be a run directory, on any backend; None if it may.

    A run directory is written by the model, mounted read-write into a container, chowned to its
    user and, with `delete_existing`, removed: so the host paths no volume may name are refused,
    and so is the user's home directory itself; a directory below the home is the user's own data
    (for root that is below /root, which as a volume would hand a container root's files)."""
    resolved = path.expanduser().resolve()
    home = Path.home().resolve()
    if resolved == home:
        return "it is your home directory itself (choose a directory below it)"
    if home != Path("/") and home in resolved.parents:
        return None
    return host_access_problem(resolved)
