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
