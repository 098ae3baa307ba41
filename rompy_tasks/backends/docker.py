"""The docker backend: run the model inside a container on a Docker engine (docker SDK).

The run directory is mounted read-write at `/rompy/run` and the model runs there, as a
non-root user unless `user: root` is explicit. CPU and memory limits are applied to the
container; its output streams line by line to the Prefect log and `logs/run.log`.
Timeout, Ctrl-C or cancellation stop the container (SIGTERM, then SIGKILL after a grace
period); `remove_container` then removes it. Problems that would stop the run (engine
unreachable, image missing with `pull_policy: never`, a volume's host path gone) are
reported before anything starts. If the engine goes away mid-run, the error says so and
names the container; the next run removes such leftovers (they carry our labels).
"""

import hashlib
import os
import re
import stat
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from rompy_tasks.backends import guard
from rompy_tasks.backends.base import (
    BaseBackendConfig,
    LineSink,
    RunResult,
    raise_for_exit,
    stage_log_path,
)
from rompy_tasks.backends.process import emit_line, mpi_launch
from rompy_tasks.core.errors import BackendError, EngineUnreachable
from rompy_tasks.core.host_paths import host_access_problem
from rompy_tasks.core.model_run import RUN_MARKER
from rompy_tasks.core.run_files import open_for_append

if TYPE_CHECKING:
    import docker
    from rompy_tasks.core.model_run import ModelRun

MOUNT_POINT = "/rompy/run"
VOLUME_OPTIONS = {"ro", "rw", "z", "Z"}  # Z/z: SELinux relabelling, as rompy's `:Z` mounts
DEFAULT_NON_ROOT_USER = "1000:1000"
STOP_GRACE_SECONDS = 10
RUN_LABEL = "rompy-tasks.run-id"
REMOVE_LABEL = "rompy-tasks.remove"  # set on containers that must not outlive their run
_USER = re.compile(r"^([a-z_][a-z0-9_-]*|\d+)(:([a-z_][a-z0-9_-]*|\d+))?$")
_ROOT_USERS = {"root", "0", "0:0", "root:root"}


PIDS_LIMIT_DEFAULT = 4096
VOLUME_ROOTS_VARIABLE = "ROMPY_TASKS_DOCKER_VOLUME_ROOTS"  # a site's allowlist of data roots, `:`-separated


def allowed_volume_roots() -> list[Path]:
    """The site's data roots (resolved) that volumes must lie under; empty when the site set none."""
    value = os.environ.get(VOLUME_ROOTS_VARIABLE, "")
    return [Path(root).expanduser().resolve() for root in value.split(":") if root.strip()]


def parse_volume(spec: str) -> tuple[Path, str, str]:
    """Split `host:container[:mode]`; raise ValueError saying what is wrong.

    The host path returned is the resolved one that was checked: the engine cleans `..`
    lexically, the kernel after following links, so `link/../..` would otherwise mount
    something other than what was checked (even `/`). `..` is refused outright.
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"volume {spec!r} must look like host:container[:mode]")
    if ".." in Path(parts[0]).parts:
        raise ValueError(f"volume {spec!r}: the host path must not contain '..' (give the directory itself)")
    host, container = Path(parts[0]).expanduser(), parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    options = mode.split(",")
    if (
        not set(options) <= VOLUME_OPTIONS
        or sum(o in ("ro", "rw") for o in options) > 1
        or len(set(options)) < len(options)
    ):
        raise ValueError(
            f"volume {spec!r}: mode must be ro or rw, optionally with SELinux z or Z (e.g. ro,Z), not {mode!r}"
        )
    if not container.startswith("/"):
        raise ValueError(f"volume {spec!r}: the container path must be absolute")
    if container.rstrip("/") == MOUNT_POINT or container.startswith(MOUNT_POINT + "/"):
        raise ValueError(f"volume {spec!r}: {MOUNT_POINT} is where the run directory is mounted")
    if not host.exists():
        raise ValueError(f"volume {spec!r}: host path {host} does not exist")
    if problem := host_access_problem(host):
        raise ValueError(f"volume {spec!r}: {problem}; a model container gets data directories, not the host")
    resolved = host.resolve(strict=True)
    roots = allowed_volume_roots()
    if roots and not any(resolved == root or root in resolved.parents for root in roots):
        allowed = ", ".join(map(str, roots))
        raise ValueError(
            f"volume {spec!r}: {resolved} is outside this site's data roots ({VOLUME_ROOTS_VARIABLE}: {allowed})"
        )
    return resolved, container, mode


def resolve_dockerfile(dockerfile: Path, build_context: Path | None) -> Path:
    """rompy's rule: a relative Dockerfile is under the build context when one is given."""
    dockerfile = dockerfile.expanduser()
    if build_context is not None and not dockerfile.is_absolute():
        return build_context.expanduser() / dockerfile
    return dockerfile


class DockerConfig(BaseBackendConfig):
    """Run the model in a Docker container (an image, or one built from a Dockerfile)."""

    command_field: ClassVar[str | None] = "executable"

    type: Literal["docker"] = "docker"
    image: str | None = Field(None, min_length=1, description="Image to run (give this or dockerfile)")
    build_context: Path | None = Field(None, description="Build context (default: the Dockerfile's folder)")
    dockerfile: Path | None = Field(
        None,
        description="Dockerfile to build the image from; relative to build_context when that is given (as in rompy)",
    )
    build_args: dict[str, str] = Field(default_factory=dict, description="Build arguments")
    cpu: int = Field(1, ge=1, le=128, description="CPUs for the container (1..128), a hard limit")
    memory: str | None = Field(None, pattern=r"^\d+[bkmgBKMG]?$", description="Memory limit such as 512m, 2g, 4G")
    volumes: list[str] = Field(default_factory=list, description="Extra mounts host:container[:ro|rw]")
    user: str | None = Field(
        None,
        description="User in the container. Default: a non-root user (yours, or 1000:1000 when you are"
        " root); running as root must be asked for with user: root",
    )
    remove_container: bool = Field(True, description="Remove the container when the run ends")
    executable: str | None = Field(
        None,
        description="Replace the model command's executable; for a model without a command (rompy's), the"
        " command itself, run by /bin/sh in the container",
    )
    mpiexec: str | None = Field(None, description="MPI launcher: runs `mpiexec -n <cpu> <command>`")
    pull_policy: Literal["never", "if-missing", "always"] = "if-missing"
    network: Literal["none", "host"] = Field("none", description="Container network (models rarely need one)")
    build_network: Literal["none", "host"] = Field(
        "none", description="Network of Dockerfile builds; host lets RUN steps reach the host's services too"
    )
    pids_limit: int = Field(PIDS_LIMIT_DEFAULT, ge=16, le=1_000_000, description="Most processes in the container")

    @model_validator(mode="after")
    def _image_or_dockerfile(self) -> "DockerConfig":
        if (self.image is None) == (self.dockerfile is None):
            raise ValueError("give exactly one of 'image' or 'dockerfile'")
        return self

    @field_validator("dockerfile")
    @classmethod
    def _dockerfile_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None:
            path = resolve_dockerfile(value, info.data.get("build_context"))
            if not path.is_file():
                where = " (relative to build_context, as in rompy)" if path != value.expanduser() else ""
                raise ValueError(f"dockerfile {path}{where} does not exist")
        return value

    @property
    def dockerfile_path(self) -> Path:
        """The Dockerfile: under `build_context` when it is given and the path is relative (rompy's rule)."""
        return resolve_dockerfile(self.dockerfile, self.build_context)

    @property
    def context_path(self) -> Path:
        """The build context: `build_context`, else the Dockerfile's folder."""
        return (self.build_context.expanduser() if self.build_context else self.dockerfile_path.parent).resolve()

    @field_validator("build_context")
    @classmethod
    def _context_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_dir():
            raise ValueError(f"build_context {value} does not exist or is not a directory")
        if value is not None and (problem := host_access_problem(value)):
            raise ValueError(f"build_context {value}: {problem}; every file in it is sent to the engine")
        return value

    @field_validator("volumes")
    @classmethod
    def _volumes_valid(cls, value: list[str]) -> list[str]:
        for spec in value:
            parse_volume(spec)
        return value

    @field_validator("user")
    @classmethod
    def _user_valid(cls, value: str | None) -> str | None:
        if value is not None and not _USER.match(value):
            raise ValueError(f"user {value!r} must be a name or uid, optionally with :group")
        return value

    def preflight(self) -> None:
        """Before anything starts: the engine answers and has the CPUs `cpu` asks for (rompy's own
        docker_backend.yml asks for 4; rompy uses `cpu` only for `mpiexec -n`, here it is also a limit)."""
        engine_cpus = docker_client().info().get("NCPU") or 0
        if engine_cpus and self.cpu > engine_cpus:
            raise BackendError(
                f"cpu: {self.cpu} is more than the {engine_cpus} CPU(s) of the Docker engine; in rompy-tasks "
                f"`cpu` is the container's hard CPU limit (and mpiexec's -n): set cpu to {engine_cpus} or less"
            )

    def container_user(self) -> str:
        """The user the model runs as: explicit, else this process's uid, else a non-root default."""
        if self.user is not None:
            return self.user
        uid, gid = os.getuid(), os.getgid()
        return f"{uid}:{gid}" if uid != 0 else DEFAULT_NON_ROOT_USER

    def container_command(self, run: "ModelRun") -> list[str]:
        """The model command as the container sees it (run-dir paths mapped to the mount).

        `executable` replaces the model command's executable; for a model without a command of
        its own (rompy's models) it is the whole command, run by the container's /bin/sh as rompy
        runs it with `bash -c`.
        """
        staging = str(run.staging_dir)
        try:
            model_command = run.config.run_command(run)
        except NotImplementedError:
            if not self.executable:
                raise
            model_command = ["/bin/sh", "-c", self.executable]
        else:
            if self.executable:
                model_command[0] = self.executable
        command = [
            MOUNT_POINT + arg[len(staging) :] if arg == staging or arg.startswith(staging + "/") else arg
            for arg in model_command
        ]
        if self.mpiexec:
            command = mpi_launch(self.mpiexec, self.cpu, command)
        return command

    def model_ranks(self) -> int | None:
        return self.cpu if self.mpiexec else 1

    def execute(self, run: "ModelRun", on_line: LineSink | None = None) -> RunResult:
        try:  # paths may have gone since validation: check before anything starts
            for volume in self.volumes:
                parse_volume(volume)
        except ValueError as err:
            raise BackendError(str(err)) from None
        client = docker_client()
        remove_leftovers(client, on_line)
        image = resolve_image(client, self, run.staging_dir, on_line)
        user = self.container_user()
        if user not in _ROOT_USERS and os.getuid() == 0:
            _give_run_dir_to(run.staging_dir, user)
        return run_container(client, self, image, self.container_command(run), run, on_line=on_line)


def docker_client() -> "docker.DockerClient":
    """A client for the engine in DOCKER_HOST (or the default socket), checked to answer."""
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as err:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineUnreachable(
            f"Docker engine unreachable at {where}: {err}. Start one (as root: scripts/docker-engine)."
        ) from None
    return client


def _give_run_dir_to(run_dir: Path, user: str) -> None:
    """Let a numeric non-root container user write the run directory (we are root here).

    Only a run directory rompy-tasks created (its marker) is handed over, and in it only what
    the run created: never through a link, never a file with another name elsewhere (a hardlink
    planted to a host file would hand that file over)."""
    ids = user.split(":")
    if not ids[0].isdigit():
        return
    uid, gid = int(ids[0]), int(ids[1]) if len(ids) > 1 and ids[1].isdigit() else int(ids[0])
    marker = run_dir / RUN_MARKER
    if marker.is_symlink() or not marker.is_file():
        raise BackendError(
            f"{run_dir} was not created by rompy-tasks (no {RUN_MARKER} file), so its files are not handed to the "
            f"container user {user}: use a new run directory (run_id, output_dir) or set backend.user"
        )
    for parent, directories, files in os.walk(run_dir):  # never into a linked directory
        os.chown(parent, uid, gid, follow_symlinks=False)
        for name in [*directories, *files]:
            path = os.path.join(parent, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or (stat.S_ISREG(info.st_mode) and info.st_nlink > 1):
                continue
            if not stat.S_ISDIR(info.st_mode):
                os.chown(path, uid, gid, follow_symlinks=False)


def build_tag(config: DockerConfig) -> str:
    """A tag derived from the Dockerfile, build args and context, so an unchanged build is reused."""
    dockerfile, context = config.dockerfile_path.absolute(), config.context_path
    digest = hashlib.sha256(dockerfile.read_bytes())
    digest.update(repr(sorted(config.build_args.items())).encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(path.relative_to(context).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"rompy-tasks-build:{digest.hexdigest()[:16]}"


def resolve_image(client: "docker.DockerClient", config: DockerConfig, run_dir: Path, on_line: LineSink | None) -> Any:
    """The image to run: built from the Dockerfile (cached by tag) or checked/pulled per pull_policy."""
    import docker

    if config.dockerfile is not None:
        tag = build_tag(config)
        try:
            return client.images.get(tag)
        except docker.errors.ImageNotFound:
            return _build(client, config, tag, stage_log_path(run_dir, "build"), on_line)
    name = config.image
    present = _local_image(client, name)
    if config.pull_policy == "never":
        if present is None:
            raise BackendError(f"image {name!r} is not on this Docker engine and pull_policy is 'never'")
        return present
    if present is not None and config.pull_policy == "if-missing":
        return present
    try:
        return client.images.pull(name)
    except docker.errors.DockerException as err:
        raise BackendError(f"cannot pull image {name!r} (pull_policy {config.pull_policy!r}): {err}") from None


def _local_image(client: "docker.DockerClient", name: str) -> Any:
    import docker

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def _build(
    client: "docker.DockerClient", config: DockerConfig, tag: str, log_path: Path, on_line: LineSink | None
) -> Any:
    dockerfile, context = config.dockerfile_path.absolute(), config.context_path
    with open_for_append(log_path) as log:
        log.write(f"# {datetime.now(UTC).isoformat()} building {tag} from {dockerfile}\n")
        for chunk in client.api.build(
            path=str(context),
            dockerfile=str(dockerfile),
            tag=tag,
            buildargs=config.build_args,
            network_mode=config.build_network,
            rm=True,
            decode=True,
        ):
            if "error" in chunk:
                log.write(chunk["error"] + "\n")
                raise BackendError(f"docker build of {dockerfile} failed: {chunk['error'].strip()}")
            for line in chunk.get("stream", "").splitlines():
                log.write(line + "\n")
                if on_line is not None and line.strip():
                    on_line(line)
    return client.images.get(tag)


def _pump_logs(container: Any, log: IO[str], on_line: LineSink | None) -> None:
    """Copy the container's output line by line to the (already open) log file and the callback."""
    buffer = b""
    for chunk in container.logs(stream=True, follow=True):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            emit_line(log, on_line, line.decode(errors="replace").rstrip("\r"))
    if buffer:
        emit_line(log, on_line, buffer.decode(errors="replace").rstrip("\r"))


def run_container(
    client: "docker.DockerClient",
    config: DockerConfig,
    image: Any,
    command: list[str],
    run: "ModelRun",
    *,
    on_line: LineSink | None = None,
    timeout: float | None = None,
    grace: int = STOP_GRACE_SECONDS,
) -> RunResult:
    """Run `command` in a new container for `run` and own it until it is gone (or kept, if asked).

    `timeout` defaults to the config's (tests shorten it below the config's minimum).
    """
    timeout = config.timeout if timeout is None else timeout
    user = config.container_user()
    log_path = stage_log_path(run.staging_dir, "run")
    name = f"rompy-{run.run_id}-{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC)
    # Opened before the container starts: the model cannot swap the log for a link in between.
    log = open_for_append(log_path)
    log.write(
        f"# {started.isoformat()} container {name} from {image.tags or image.id} as {user}: {' '.join(command)}\n"
    )
    log.flush()
    container = _start_container(client, config, image, command, run, name, user, log)
    guard.watch("container", name)  # killed if this process dies, even by SIGKILL
    pump = threading.Thread(target=_pump_logs, args=(container, log, on_line), daemon=True)
    pump.start()
    try:
        exit_code, timed_out, engine_gone = _wait_for(client, container, timeout, grace)
    finally:
        pump.join(timeout=30)
        ended = datetime.now(UTC)
        engine_left = config.remove_container and not _remove(container, log)
        guard.unwatch("container", name)
    # A container stopped by the engine on its way down exits non-zero: say why.
    if engine_gone or (exit_code != 0 and not timed_out and (engine_left or not _engine_answers(client))):
        raise _engine_gone(name, log)
    with log:
        log.write(f"# {ended.isoformat()} container {'timed out' if timed_out else 'exited'} with code {exit_code}\n")
    result = RunResult(
        backend="docker",
        command=command,
        exit_code=exit_code,
        started=started,
        ended=ended,
        duration_seconds=(ended - started).total_seconds(),
        log_path=log_path,
        details={
            "image": (image.tags or [image.id])[0],
            "image_id": image.id,
            "container_id": container.id,
            "container_name": name,
            "user": user,
        },
    )
    return raise_for_exit(result, timed_out, timeout)


def _wait_for(client: "docker.DockerClient", container: Any, timeout: float, grace: int) -> tuple[int, bool, bool]:
    """Wait for the container to exit, stopping it on timeout or cancellation: (exit code, timed out, engine gone)."""
    import requests

    try:
        try:
            return container.wait(timeout=timeout)["StatusCode"], False, False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            # docker-py reports a wait timeout as either; an engine that no longer answers is gone
            if not _engine_answers(client):
                return -1, False, True
            container.stop(timeout=grace)
            return container.wait(timeout=grace + 30)["StatusCode"], True, False
    except requests.exceptions.ConnectionError:
        return -1, False, True
    except BaseException:
        container.stop(timeout=grace)  # Ctrl-C, SIGTERM, cancellation: the container goes too
        raise


def _start_container(
    client: "docker.DockerClient",
    config: DockerConfig,
    image: Any,
    command: list[str],
    run: "ModelRun",
    name: str,
    user: str,
    log: IO[str],
) -> Any:
    """Create and start the hardened container; a refusal is a BackendError (the log is then closed)."""
    import docker

    mounts = {str(run.staging_dir): {"bind": MOUNT_POINT, "mode": "rw"}}
    for volume in config.volumes:
        host, target, mode = parse_volume(volume)
        mounts[str(host)] = {"bind": target, "mode": mode}
    labels = {RUN_LABEL: run.run_id}
    if config.remove_container:
        labels[REMOVE_LABEL] = "true"
    try:
        return client.containers.run(
            image.id,
            command,
            detach=True,
            name=name,
            working_dir=MOUNT_POINT,
            user=user,
            environment=config.model_environment(),
            volumes=mounts,
            nano_cpus=int(config.cpu * 1e9),
            mem_limit=config.memory.lower() if config.memory else None,
            network_mode=config.network,
            labels=labels,
            # Hardening: no privilege gain through setuid files, no capabilities (also for user: root),
            # a bounded process count, and an init as PID 1 so the model's tree gets SIGTERM at once.
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
            pids_limit=config.pids_limit,
            init=True,
        )
    except docker.errors.DockerException as err:
        log.close()
        raise BackendError(f"the Docker engine refused to start the container: {err}") from None


def _engine_answers(client: "docker.DockerClient") -> bool:
    import requests

    import docker

    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.exceptions.ConnectionError):
        return False


def _engine_gone(name: str, log: IO[str]) -> EngineUnreachable:
    """The error for a run whose engine went away (noted in the run log, which is then closed)."""
    with log:
        log.write(f"# {datetime.now(UTC).isoformat()} the Docker engine went away\n")
    return EngineUnreachable(
        f"the Docker engine went away during the run of container {name}; "
        "the container is removed on the next docker run once the engine is back"
    )


def _remove(container: Any, log: IO[str]) -> bool:
    """Remove a finished container; False if the engine is gone (the next run removes it)."""
    import requests

    import docker

    try:
        container.remove(force=True)
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as err:
        log.write(f"# could not remove container {container.name}: {err.__class__.__name__}\n")
        return False
    return True


def remove_leftovers(client: "docker.DockerClient", on_line: LineSink | None = None) -> list[str]:
    """Remove our stopped containers that were meant to be removed (e.g. after the engine went away).

    Only containers labelled for removal and no longer running: a kept container (remove_container:
    false) and a concurrent run's container are left alone. Parallel ensemble members find the
    same leftovers: one already gone (404) or being removed by another (409) counts as removed.
    """
    import docker

    removed = []
    for status in ("exited", "dead"):
        for container in client.containers.list(all=True, filters={"label": f"{REMOVE_LABEL}=true", "status": status}):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as err:
                if err.status_code != 409:
                    raise
                continue
            removed.append(container.name)
    if removed and on_line is not None:
        on_line(f"removed {len(removed)} leftover container(s) of earlier runs: {', '.join(removed)}")
    return removed
