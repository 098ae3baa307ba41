"""Every seed validation rule of BaseBackendConfig and LocalConfig."""

import json

import pytest
from pydantic import ValidationError

from rompy_tasks.backends.local import LocalConfig


def errors_of(**fields):
    with pytest.raises(ValidationError) as info:
        LocalConfig(**fields)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}


def test_defaults_are_valid():
    config = LocalConfig()
    assert (config.type, config.timeout, config.shell, config.capture_output) == ("local", 3600, False, True)


@pytest.mark.parametrize("timeout", [60, 3600, 86400])
def test_timeout_bounds_accept(timeout):
    assert LocalConfig(timeout=timeout).timeout == timeout


@pytest.mark.parametrize("timeout", [0, 59, 86401, -5])
def test_timeout_bounds_reject(timeout):
    assert "timeout" in errors_of(timeout=timeout)


def test_env_vars_must_be_strings():
    assert LocalConfig(env_vars={"OMP_NUM_THREADS": "4"}).env_vars == {"OMP_NUM_THREADS": "4"}
    problems = errors_of(env_vars={"OMP_NUM_THREADS": 4, "DEBUG": True})
    assert set(problems) == {"env_vars.OMP_NUM_THREADS", "env_vars.DEBUG"}


def test_working_dir_must_exist(tmp_path):
    assert LocalConfig(working_dir=tmp_path).working_dir == tmp_path
    problems = errors_of(working_dir=tmp_path / "missing")
    assert "does not exist" in problems["working_dir"]


@pytest.mark.parametrize("command", ["", "   "])
def test_command_must_be_non_empty_if_given(command):
    assert "non-empty" in errors_of(command=command)["command"]


@pytest.mark.parametrize("field", ["shell", "capture_output"])
@pytest.mark.parametrize("value", ["maybe", 2, [True]])
def test_flags_must_be_boolean(field, value):
    assert field in errors_of(**{field: value})


def test_unknown_fields_are_rejected():
    assert "nonsense" in errors_of(nonsense=1)


def test_every_problem_is_reported_at_once(tmp_path):
    problems = errors_of(timeout=5, command="", working_dir=tmp_path / "nope", env_vars={"A": 1})
    assert set(problems) == {"timeout", "command", "working_dir", "env_vars.A"}


def test_json_schema_export_carries_the_rules():
    schema = LocalConfig.model_json_schema()
    json.dumps(schema)
    seconds, duration = schema["properties"]["timeout"]["anyOf"]  # seconds, or a duration string ("2h")
    assert (seconds["type"], seconds["minimum"], seconds["maximum"]) == ("integer", 60, 86400)
    assert duration["type"] == "string"
    assert schema["properties"]["env_vars"]["additionalProperties"]["type"] == "string"
    assert schema["properties"]["type"]["const"] == "local"
