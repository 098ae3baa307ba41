"""Docker options equivalent to host root are refused at validation, and a volume mounts exactly
the path that was checked."""

import os
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from rompy_tasks.backends.docker import VOLUME_ROOTS_VARIABLE, DockerConfig, parse_volume


def refused(**fields) -> str:
    with pytest.raises(ValidationError) as caught:
        DockerConfig(image="x", **fields)
    return str(caught.value)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("/:/host:rw", "host's root directory"),
        ("/etc:/etc", "inside the host's /etc"),
        ("/etc/ssh:/keys:ro", "inside the host's /etc"),
        ("/var:/v", "contains the host's /var/run"),
        ("/root:/r", "inside the host's /root"),
        ("/proc:/p", "inside the host's /proc"),
    ],
)
def test_host_root_equivalent_volumes_are_refused(spec, why):
    message = refused(volumes=["/var/tmp:/scratch", spec])
    assert "volumes" in message and why in message


def test_sockets_such_as_the_engines_cannot_be_mounted(tmp_path):
    path = tmp_path / "engine.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        assert "a socket" in refused(volumes=[f"{path}:/var/run/docker.sock"])
    finally:
        server.close()


def test_the_host_root_is_no_build_context(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    message = str(pytest.raises(ValidationError, DockerConfig, dockerfile=dockerfile, build_context="/").value)
    assert "build_context" in message and "host's root" in message


def test_data_directories_and_defaults_stay_valid(tmp_path):
    config = DockerConfig(image="x", volumes=[f"{tmp_path}:/data:ro"])
    assert (config.build_network, config.pids_limit, config.network) == ("none", 4096, "none")


def test_dot_dot_through_a_link_cannot_reach_the_host_root(tmp_path):
    """`link/../../..` resolves (links first) to a harmless directory, but the engine cleans `..`
    lexically and mounted `/`: a host path with `..` is refused, whatever it resolves to."""
    deep = tmp_path.joinpath(*[f"d{i}" for i in range(8)])
    deep.mkdir(parents=True)
    (tmp_path / "a").symlink_to(deep)
    ups = "/".join([".."] * len(tmp_path.parts))
    spec = f"{tmp_path}/a/{ups}:/v:rw"
    assert "must not contain '..'" in refused(volumes=[spec], user="root")
    assert "must not contain '..'" in refused(volumes=[f"{tmp_path}/..:/v"])


def test_a_link_is_mounted_as_the_target_that_was_checked(tmp_path):
    """HPC data paths are links (/scratch -> /lustre/...): allowed, and the engine gets the target."""
    target = tmp_path / "lustre" / "project"
    target.mkdir(parents=True)
    (tmp_path / "scratch").symlink_to(target)
    assert parse_volume(f"{tmp_path}/scratch:/data:ro") == (target.resolve(), "/data", "ro")
    (tmp_path / "to-etc").symlink_to("/etc")
    assert "inside the host's /etc" in refused(volumes=[f"{tmp_path}/to-etc:/e"])


@pytest.mark.parametrize("root", ["/home", "/tmp", "/home/", "/tmp/."])
def test_the_shared_roots_themselves_are_refused_but_not_what_is_below(root, tmp_path):
    assert "holds every user's files" in refused(volumes=[f"{root}:/shared"])
    assert DockerConfig(image="x", volumes=[f"{tmp_path}:/data"]).volumes  # tmp_path lies below /tmp


def test_a_site_can_allow_volumes_only_below_its_data_roots(tmp_path, monkeypatch):
    data, other = tmp_path / "data", tmp_path / "other"
    (data / "forcing").mkdir(parents=True)
    other.mkdir()
    monkeypatch.setenv(VOLUME_ROOTS_VARIABLE, f"{data}:/nonexistent-root")
    assert DockerConfig(image="x", volumes=[f"{data}/forcing:/forcing:ro"]).volumes
    message = refused(volumes=[f"{other}:/o"])
    assert "outside this site's data roots" in message and VOLUME_ROOTS_VARIABLE in message


@pytest.mark.parametrize(
    ("output_dir", "subdir", "why"),
    [
        ("/", False, "the host's root directory"),
        ("/etc", False, "inside the host's /etc"),
        ("/etc", True, "inside the host's /etc"),
        ("/usr/local/share/x", False, "inside the host's /usr"),
        ("~", False, "your home directory itself"),
    ],
)
def test_a_run_directory_on_the_hosts_paths_is_invalid_on_every_backend(tmp_path, output_dir, subdir, why):
    """Issue 36.2: the run directory obeys the volumes' host-path rules, at validate and at run, exit 2,
    nothing written (a docker run would mount it read-write and chown it to the container user)."""
    from conftest import run_cli
    from helpers import shell_doc, write_yaml

    for backend in ({"type": "docker", "image": "rompy-tasks/none:0"}, {"type": "local"}):
        doc = shell_doc(tmp_path, "true", backend=backend)
        doc["config"].update(output_dir=output_dir, run_id_subdir=subdir, run_id="host-path-probe")
        path = write_yaml(tmp_path / "p.yaml", doc)
        for verb in ("validate", "run"):
            ran = run_cli(verb, str(path))
            assert ran.returncode == 2, (verb, backend, ran.stderr[-2000:])
            assert "config.output_dir: the run directory" in ran.stderr and why in ran.stderr
    assert not Path("/usr/local/share/x").exists() and not Path("/etc/host-path-probe").exists()


def test_a_run_directory_below_the_home_or_tmp_stays_valid(tmp_path):
    from helpers import shell_doc

    from rompy_tasks.pipeline import validate_data

    for output_dir in (str(tmp_path), "~/runs"):
        doc = shell_doc(tmp_path, "true")
        doc["config"].update(output_dir=output_dir, run_id_subdir=False)
        validate_data(doc)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a run directory to a container user needs root")
def test_only_what_the_run_created_is_handed_to_the_container_user(tmp_path):
    """Issue 36.2: a directory rompy-tasks did not create is not chowned; in one it did, neither a
    link nor a file with another name elsewhere (a planted hardlink to a host file)."""
    from rompy_tasks.backends.docker import _give_run_dir_to
    from rompy_tasks.core.errors import BackendError
    from rompy_tasks.core.model_run import RUN_MARKER

    users_data = tmp_path / "data"
    users_data.mkdir()
    (users_data / "keep.nc").write_text("the user's")
    with pytest.raises(BackendError, match="not created by rompy-tasks"):
        _give_run_dir_to(users_data, "1000:1000")
    assert (users_data / "keep.nc").stat().st_uid == 0

    host_file = tmp_path / "host-file"
    host_file.write_text("the host's")
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / RUN_MARKER).write_text("ours\n")
    (run_dir / "logs" / "run.log").write_text("log")
    os.link(host_file, run_dir / "planted")
    (run_dir / "linked").symlink_to(host_file)
    _give_run_dir_to(run_dir, "1000:1000")
    assert (run_dir / "logs" / "run.log").stat().st_uid == 1000 and (run_dir / "logs").stat().st_uid == 1000
    assert host_file.stat().st_uid == 0, "the planted hardlink's file stays the host's"
