import pytest

from rompy_tasks.core.errors import ConfigError
from rompy_tasks.core.loader import load_document, parse_assignment, set_path


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_include_is_relative_to_the_including_file(tmp_path):
    write(tmp_path / "parts" / "backend.yaml", "type: local\ntimeout: !include timeout.yaml\n")
    write(tmp_path / "parts" / "timeout.yaml", "120\n")
    main = write(tmp_path / "pipeline.yaml", "backend: !include parts/backend.yaml\n")
    assert load_document(main) == {"backend": {"type": "local", "timeout": 120}}


def test_include_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "x: !include b.yaml\n")
    write(tmp_path / "b.yaml", "y: !include a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_document(tmp_path / "a.yaml")


def test_missing_include_names_the_file(tmp_path):
    main = write(tmp_path / "p.yaml", "x: !include nope.yaml\n")
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_document(main)


def test_json_documents_load(tmp_path):
    main = write(tmp_path / "p.json", '{"a": {"b": [1, 2]}}')
    assert load_document(main) == {"a": {"b": [1, 2]}}


def test_variables_defaults_and_escapes(tmp_path):
    main = write(
        tmp_path / "p.yaml",
        'a: ${HOME_DIR}/runs\nb: ${MISSING:-fallback}\nc: $${LITERAL}\nd: ["x-${HOME_DIR}"]\n',
    )
    data = load_document(main, environ={"HOME_DIR": "/data"})
    assert data == {"a": "/data/runs", "b": "fallback", "c": "${LITERAL}", "d": ["x-/data"]}


def test_variable_value_cannot_change_structure(tmp_path):
    main = write(tmp_path / "p.yaml", "a: ${EVIL}\n")
    data = load_document(main, environ={"EVIL": "x\nb: {c: 1}"})
    assert data == {"a": "x\nb: {c: 1}"}


def test_every_unset_variable_is_listed_with_its_path(tmp_path):
    main = write(tmp_path / "p.yaml", "a: ${ONE}\nb:\n  - ${TWO}\n")
    with pytest.raises(ConfigError) as info:
        load_document(main, environ={})
    assert [p.loc for p in info.value.problems] == ["a", "b[0]"]
    assert "ONE" in info.value.problems[0].msg


def test_bad_yaml_reports_line_and_column(tmp_path):
    main = write(tmp_path / "p.yaml", "a: 1\nb: [unclosed\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: line \d+, column \d+"):
        load_document(main)


def test_document_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_document(write(tmp_path / "p.yaml", "- 1\n- 2\n"))


def test_overrides_parse_values_and_create_paths():
    data = {"config": {"period": {"duration": "1d"}}, "postprocessor": [{"processor": "archive"}]}
    for text in ["config.period.duration=2d", "backend.timeout=120", "postprocessor[0].format=zip"]:
        set_path(data, *parse_assignment(text))
    assert data["config"]["period"]["duration"] == "2d"
    assert data["backend"] == {"timeout": 120}
    assert data["postprocessor"][0]["format"] == "zip"


@pytest.mark.parametrize("text", ["noequals", "=3", "postprocessor[5].x=1", "a.b.c=1"])
def test_bad_overrides_are_config_errors(text):
    data = {"postprocessor": [{}], "a": {"b": 3}}
    with pytest.raises(ConfigError):
        set_path(data, *parse_assignment(text))
