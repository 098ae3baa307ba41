"""Docker options equivalent to host root are refused at validation, and a volume mounts exactly
the path that was checked."""

import socket

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
