"""A hostile template cannot hang or exhaust `validate` (issue 11.5): exit 2 within a second, naming it.

On the code before, nested `range` loops hung `validate` and `{{ 'x' * 4000000000 }}` took gigabytes.
"""

import time

import pytest
from conftest import run_cli
from helpers import shell_doc, write_yaml

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
EXPONENTIAL_MACRO = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}"
DOUBLING = "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (NESTED_LOOPS, "rendering took more than 1 s"),
        (EXPONENTIAL_MACRO, "rendering took more than 1 s"),
        ("{{ 'x' * 4000000000 }}", "repeating a value 4,000,000,000 times"),
        (DOUBLING, "a ~ concatenation would be larger than 16,777,216"),
        ("{{ 'x'.center(10**9) }}", "center() with 1,000,000,000"),
        ("{{ '{:>999999999}'.format(1) }}", "a width in '{:>999999999}'"),
        ("{{ '%0999999999d' % 1 }}", "a width in '%0999999999d'"),
        ("{{ 7 ** 1000000000 }}", "a power would have more than 100,000 bits"),
        ("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "the rendered output would be larger"),
    ],
    ids=["nested-loops", "macro", "repeat", "doubling", "center", "format", "percent", "power", "output"],
)
def test_a_costly_template_is_invalid_at_once(tmp_path, text, reason):
    template = tmp_path / "template"
    template.mkdir()
    (template / "input.txt").write_text(text)
    path = write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, "true", template=str(template)))
    start = time.monotonic()
    result = run_cli("validate", str(path), timeout=60)
    seconds = time.monotonic() - start
    assert result.returncode == 2, result.stdout + result.stderr[-2000:]
    assert "template input.txt" in result.stderr and "template too costly" in result.stderr
    assert reason in result.stderr, result.stderr[-2000:]
    assert seconds < 15  # the interpreter's start included; the render itself stops at 1 s
    assert not (tmp_path / "runs").exists()


def test_ordinary_loops_formats_and_filters_still_render(tmp_path):
    template = tmp_path / "template"
    template.mkdir()
    (template / "input.txt").write_text(
        "{% for k, v in config.parameters|dictsort %}{{ loop.index }}/{{ loop.length }} {{ k ~ '=' ~ v }};"
        "{% endfor %}{{ '%05.1f'|format(3.14159) }} {{ '%d' % 7 }} {{ '{:>6}'.format('ab') }}"
        " {{ 'x' * 3 }} {{ 2 ** 10 }} {{ ('-' ~ runtime.run_id)|upper|center(8) }}"
    )
    doc = shell_doc(tmp_path, "true", template=str(template), parameters={"b": 2, "a": 1})
    path = write_yaml(tmp_path / "p.yaml", doc)
    result = run_cli("run", str(path), "--last-stage", "generate", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert (tmp_path / "runs" / "r" / "input.txt").read_text() == "1/2 a=1;2/2 b=2;003.1 7     ab xxx 1024    -R   "
