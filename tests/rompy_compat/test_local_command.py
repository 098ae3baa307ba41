"""A rompy local `command` runs as its author meant, or is refused (issue 12).

rompy runs `command` through a shell. Without `shell: true` we split it into arguments, so
`echo a | tr a b` would print "a | tr a b" instead of "b": such a file is now invalid with a
message that says to set `shell: true`; with it, the pipe runs as in rompy.
"""

import pytest
from conftest import run_cli
from helpers import shell_doc, write_yaml


def local_doc(tmp_path, command: str, **backend) -> dict:
    return shell_doc(tmp_path, "true", backend={"type": "local", "timeout": 120, "command": command, **backend})


@pytest.mark.parametrize(
    ("command", "syntax"),
    [
        ("echo a | tr a b > out.txt", "|"),
        ("make && ./model", "&"),
        ("./model > log.txt", ">"),
        ("echo $HOME", "$"),
        ('echo "in $HOME"', "$"),
        ("cp *.nc out/", "*"),
        ("echo `date`", "`"),
        ("echo 'unbalanced", "'"),
    ],
)
def test_shell_syntax_without_shell_true_is_refused_naming_the_fix(tmp_path, command, syntax):
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", local_doc(tmp_path, command))))
    assert result.returncode == 2, result.stdout
    problem = f"has an unclosed {syntax} quote" if syntax == "'" else f"uses shell syntax ('{syntax}')"
    assert f"backend.command: Value error, the command {problem}" in result.stderr, result.stderr
    assert "which is only interpreted with shell: true" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["echo 'a | b' \"c d\"", "python3 -c 'import sys; print(sys.argv)' x\\ y", "true"])
def test_a_command_whose_splitting_means_the_same_is_accepted(tmp_path, command):
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", local_doc(tmp_path, command))))
    assert result.returncode == 0, result.stderr


def test_with_shell_true_a_rompy_pipeline_command_runs_as_in_rompy(tmp_path):
    doc = local_doc(tmp_path, "echo a | tr a b > out.txt && echo done", shell=True)  # noqa: S604 - the point
    result = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "runs" / "r" / "out.txt").read_text() == "b\n"
