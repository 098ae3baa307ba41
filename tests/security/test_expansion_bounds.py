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
    (tmp_path / "l0.yaml").write_text("leaf: 1\n")
    for level in range(1, 15):  # each file includes the one below twice: 2^14 reads
        (tmp_path / f"l{level}.yaml").write_text(f"a: !include l{level - 1}.yaml\nb: !include l{level - 1}.yaml\n")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(shell_doc(tmp_path, "true")) + "extra: !include l14.yaml\n")
    code, stderr, seconds = validate_quickly("validate", str(path))
    assert code == 2 and "more than 1000 !include reads" in stderr, stderr[-2000:]
    assert seconds < 15


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
