"""Docker options equivalent to host root are refused at validation (issue 11.4)."""

import socket

import pytest
from pydantic import ValidationError

from rompy_tasks.backends.docker import DockerConfig


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
    message = refused(volumes=["/tmp:/scratch", spec])
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
