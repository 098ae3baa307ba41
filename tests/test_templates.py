import pytest

from rompy_tasks.core.errors import TemplateError
from rompy_tasks.core.templates import render_string, render_tree


def test_tree_renders_contents_and_names(tmp_path):
    src = tmp_path / "tpl"
    (src / "{{ runtime.run_id }}_dir").mkdir(parents=True)
    (src / "{{ runtime.run_id }}_dir" / "namelist.{{ config.ext }}").write_text("dt = {{ config.dt }}\n")
    (src / "static.bin").write_bytes(b"\x00\xff\x10")
    dest = tmp_path / "out"
    written = render_tree(src, dest, {"runtime": {"run_id": "r1"}, "config": {"ext": "nml", "dt": 30}})
    assert (dest / "r1_dir" / "namelist.nml").read_text() == "dt = 30\n"
    assert (dest / "static.bin").read_bytes() == b"\x00\xff\x10"
    assert len(written) == 2


def test_undefined_variable_is_an_error_naming_the_template(tmp_path):
    src = tmp_path / "tpl"
    src.mkdir()
    (src / "a.txt").write_text("{{ config.missing }}")
    with pytest.raises(TemplateError, match="a.txt"):
        render_tree(src, tmp_path / "out", {"config": {}})
    assert not (tmp_path / "out").exists()


def test_sandbox_blocks_python_internals():
    with pytest.raises(TemplateError, match="SecurityError"):
        render_string("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})


@pytest.mark.parametrize("name", ["../escape.txt", "../../etc/evil", "/tmp/abs-evil"])
def test_rendered_path_cannot_escape_the_staging_dir(tmp_path, name):
    src = tmp_path / "tpl"
    src.mkdir()
    (src / "{{ config.name }}").write_text("x")
    (src / "fine.txt").write_text("y")
    dest = tmp_path / "stage"
    with pytest.raises(TemplateError, match="escapes"):
        render_tree(src, dest, {"config": {"name": name}})
    assert not dest.exists(), "nothing may be written when a path escapes"
    assert not (tmp_path / "escape.txt").exists()


NARROWED = [
    "{{ runtime.run_id }}-{{ config.parameters.seed }}",
    "{{ runtime['staging_dir'] }}/{{ runtime.period.start.year }}",
    "{% for k, v in config.parameters.items() %}{{ k }}={{ v }};{% endfor %}",
    "{{ config.parameters.values() | list | length }} {{ config.parameters.keys | default('') is defined }}",
    "{{ config.parameters[runtime.run_id] | default('none') }}",
    "{{ config.parameters.l[1] }} {{ config.parameters.l | sum }} {{ config.parameters.l.count(2) }}",
    "{% set r = runtime %}{{ r.output_dir }} {{ runtime.run_id | upper }}",
    "{{ runtime.items() | list | length }} {{ runtime.period }}",
    "{% with p = config.parameters %}{{ p.seed }}{{ p.nested.deep }}{% endwith %}",
    "{{ config.parameters.nested }} {{ config.command }} {{ runtime.config.parameters.seed }}",
]


@pytest.mark.parametrize("text", NARROWED)
def test_a_context_of_what_the_template_reads_renders_as_the_whole_context(tmp_path, text):
    """Ensembles build each member's context from `referenced_fields`: it must never change a result."""
    from helpers import shell_model_run

    from rompy_tasks.core.templates import referenced_fields

    run = shell_model_run(tmp_path, ["true"], run_id="m7", parameters={"seed": 3, "l": [1, 2], "nested": {"deep": 4}})
    whole = render_string(text, run.config.template_context(run))
    narrowed_context = run.config.template_context(run, referenced_fields(text))
    assert render_string(text, narrowed_context) == whole


def test_a_context_holds_only_what_the_template_reads(tmp_path):
    from helpers import shell_model_run

    from rompy_tasks.core.templates import referenced_fields

    run = shell_model_run(tmp_path, ["true"], run_id="m7", parameters={"seed": 3, "l": [1, 2]})
    reads = referenced_fields("{{ runtime.run_id }} {{ config.parameters.seed }}")
    assert run.config.template_context(run, reads) == {
        "runtime": {"run_id": "m7"},
        "config": {"parameters": {"seed": 3}},
    }


def test_a_template_that_reads_a_missing_key_fails_with_a_narrowed_context_too(tmp_path):
    from helpers import shell_model_run

    from rompy_tasks.core.templates import referenced_fields

    run = shell_model_run(tmp_path, ["true"], parameters={"seed": 3})
    text = "{{ config.parameters.missing }}"
    with pytest.raises(TemplateError, match="missing"):
        render_string(text, run.config.template_context(run, referenced_fields(text)))
