"""Property: whatever document a user writes, loading it either succeeds or raises ConfigError."""

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rompy_tasks.core.errors import ConfigError
from rompy_tasks.pipeline import load_pipeline

FIELDS = [
    "config",
    "backend",
    "postprocessor",
    "run_id",
    "period",
    "start",
    "end",
    "duration",
    "interval",
    "output_dir",
    "model_type",
    "veros",
    "shell",
    "command",
    "template",
    "parameters",
    "type",
    "local",
    "timeout",
    "env_vars",
    "working_dir",
    "shell",
    "processor",
    "archive",
    "analyze",
    "visualize",
    "plots",
    "settings",
    "diagnostics",
    "setup",
    "acc",
    "run_retries",
    "include_end",
    "delete_existing",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["2026-01-01", "1h", "P1D", "acc", "local", "veros", "shell", "{{ x }}", "../..", "'a", "${X}"]),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(alphabet=string.ascii_letters + "_.", min_size=1, max_size=8))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=30,
)


def _load(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("doc") / "pipeline.yaml"
    path.write_text(text)
    try:
        load_pipeline(path)
    except ConfigError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(keys, documents, max_size=5))
def test_random_structured_documents_only_raise_config_error(tmp_path_factory, doc):
    _load(tmp_path_factory, yaml.safe_dump(doc))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_random_text_only_raises_config_error(tmp_path_factory, text):
    _load(tmp_path_factory, text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.text(max_size=30),
    run_id=st.text(max_size=12),
    output_dir=st.text(max_size=12),
    duration=st.one_of(st.text(max_size=6), st.integers()),
)
def test_near_valid_documents_only_raise_config_error(tmp_path_factory, command, run_id, output_dir, duration):
    doc = {
        "config": {
            "run_id": run_id,
            "output_dir": output_dir,
            "period": {"start": "2026-01-01", "duration": duration},
            "config": {"model_type": "shell", "command": command, "template": output_dir},
        },
    }
    _load(tmp_path_factory, yaml.safe_dump(doc))
