"""Small hostile files cannot hang or exhaust `validate` (issue 11.5): exit 2 at once, naming the file.

Each was reproduced on the code before: a 695-byte alias bomb took 24 s and 1.3 GB, an
`!include` fan-out of 2^14 reads 6 s, `!include /dev/zero` a MemoryError, and a matrix
ensemble had no size cap.
"""

import time
from pathlib import Path

import yaml
from conftest import run_cli
from helpers import shell_doc, shell_ensemble_doc, write_yaml


def validate_quickly(*args: str) -> tuple[int, str, float]:
    start = time.monotonic()
    result = run_cli(*args, timeout=60)
    return result.returncode, result.stderr, time.monotonic() - start


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]" for i in range(1, 9)]
    doc = yaml.safe_dump(shell_doc(tmp_path, "true"))
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n" + doc)  # 10^9 values once expanded
    code, stderr, seconds = validate_quickly("validate", str(path))
    assert code == 2, stderr[-2000:]
    assert "expands to" in stderr and "more than 1,000,000" in stderr
    assert seconds < 15


def test_an_include_fan_out_is_cut_short(tmp_path):
    """Each file is read and parsed once per load (issue 27.5); the expansion is still bounded."""
    (tmp_path / "l0.yaml").write_text("leaf: 1\n")
    for level in range(1, 26):  # each file includes the one below twice: 2^25 leaves
        (tmp_path / f"l{level}.yaml").write_text(f"a: !include l{level - 1}.yaml\nb: !include l{level - 1}.yaml\n")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(shell_doc(tmp_path, "true")) + "extra: !include l25.yaml\n")
    code, stderr, seconds = validate_quickly("validate", str(path))
    assert code == 2 and "the document expands to" in stderr, stderr[-2000:]
    assert seconds < 5


def test_one_load_reads_at_most_10_mib_in_all_and_each_file_once(tmp_path):
    """Issue 27.5: ten includes of one 10 MiB file took 55 s; a load's files share one budget."""
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"k": ["x" * 100] * 90_000}))  # about 9 MiB, under MAX_VALUES
    path = tmp_path / "p.yaml"
    base = yaml.safe_dump(shell_doc(tmp_path, "true"))
    path.write_text(base + "".join(f"x{i}: !include big.yaml\n" for i in range(10)))
    code, stderr, seconds = validate_quickly("validate", str(path))
    assert code == 2 and "x0: Extra inputs" in stderr and seconds < 5, (seconds, stderr[-500:])
    other = tmp_path / "other.yaml"
    other.write_text(big.read_text())
    path.write_text(base + "x0: !include big.yaml\nx1: !include other.yaml\n")
    code, stderr, seconds = validate_quickly("validate", str(path))
    assert code == 2 and "larger than 10 MiB together" in stderr and seconds < 5, (seconds, stderr[-500:])


def test_a_long_command_is_refused_before_it_is_parsed(tmp_path):
    doc = shell_doc(tmp_path, "true", backend={"type": "local", "command": "a " * 512 * 1024})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, stderr, seconds = validate_quickly("validate", str(path))
    assert code == 2 and "backend.command" in stderr and "128 KiB" in stderr and seconds < 3, (seconds, stderr)


def test_including_a_device_or_a_huge_file_is_refused(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(shell_doc(tmp_path, "true")) + "extra: !include /dev/zero\n")
    code, stderr, _ = validate_quickly("validate", str(path))
    assert code == 2 and "/dev/zero is not a regular file" in stderr, stderr[-2000:]
    huge = tmp_path / "huge.yaml"
    with huge.open("w") as handle:
        handle.truncate(11 * 1024 * 1024)
    path.write_text(yaml.safe_dump(shell_doc(tmp_path, "true")) + f"extra: !include {huge}\n")
    code, stderr, _ = validate_quickly("validate", str(path))
    assert code == 2 and "is larger than 10 MiB" in stderr, stderr[-2000:]


def test_a_matrix_ensemble_has_a_size_cap(tmp_path):
    axes = {f"config.config.parameters.p{i}": list(range(100)) for i in range(3)}  # 10^6 members
    path = write_yaml(tmp_path / "ensemble.yaml", shell_ensemble_doc(tmp_path, "true", {"matrix": axes}))
    code, stderr, seconds = validate_quickly("ensemble", str(path), "--max-parallel", "1")
    assert code == 2 and "members.matrix" in stderr and "1,000,000 members, more than 100,000" in stderr, stderr
    assert seconds < 15
    assert not (tmp_path / "runs").exists(), "nothing written"


def test_including_a_kernel_file_that_looks_regular_is_refused_at_once(tmp_path):
    """`/proc/kmsg` passes the regular-file check and a read blocks for ever (validate hung as root);
    nothing under /proc, /sys or /dev is a document."""
    path = tmp_path / "p.yaml"
    for kernel_file in ("/proc/kmsg", "/proc/self/status", "/sys/kernel/mm/transparent_hugepage/enabled"):
        if not Path(kernel_file).exists():
            continue
        path.write_text(yaml.safe_dump(shell_doc(tmp_path, "true")) + f"extra: !include {kernel_file}\n")
        code, stderr, seconds = validate_quickly("validate", str(path))
        assert code == 2 and f"{kernel_file} is the kernel's" in stderr, stderr[-2000:]
        assert seconds < 10
