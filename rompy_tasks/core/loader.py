"""Load YAML/JSON documents the way rompy users write them.

- `!include other.yaml` inserts another document (path relative to the including file).
- `${VAR}` and `${VAR:-default}` in string values are replaced from the environment after
  parsing, so a variable's value can never change the document's structure; `$${...}`
  keeps a literal `${...}`. rompy's filters apply too: `${CYCLE|strftime:%Y%m%d}`,
  `${CYCLE|as_datetime|shift:-1d}` (core/variable_filters.py).
- `set_path` applies `a.b=c` overrides (the CLI's `--set`, ensemble members).

Every failure is a `ConfigError` naming where it happened. Loading is bounded, so a small
hostile file cannot hang or exhaust `validate`: a file is at most MAX_FILE_BYTES and a regular
file, one load reads at most MAX_INCLUDES includes, and the document, with YAML aliases
expanded, holds at most MAX_VALUES values (a 695-byte alias bomb would expand to billions).
"""

import os
import re
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from rompy_tasks.core.errors import ConfigError, Problem
from rompy_tasks.core.variable_filters import apply_filters, unknown_filters

T = TypeVar("T")

MAX_FILE_BYTES = 10 * 1024 * 1024  # one load, all its files together
MAX_INCLUDES = 1000
MAX_VALUES = 1_000_000

_VAR = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}|]*))?(?:\|([^}]+))?\}")


FROM_ENVIRONMENT = "$ROMPY_CONFIG"  # the document's "path" under rompy's --config-from-env


def load_document(
    path: str | Path, environ: Mapping[str, str] | None = None, kept: Container[str] = ()
) -> dict[str, Any]:
    """Read a YAML or JSON mapping from `path`, resolving includes and variables (but `kept` ones).

    The path `$ROMPY_CONFIG` (rompy's `--config-from-env`) reads the document from that environment
    variable instead (no includes: they are relative to a file).
    """
    path = Path(path)
    try:
        if str(path) == FROM_ENVIRONMENT:
            text = os.environ.get(FROM_ENVIRONMENT[1:])
            if text is None:
                raise ConfigError.single("--config-from-env", "the environment variable ROMPY_CONFIG is not set")
            data = parse_document(text, source=FROM_ENVIRONMENT)
        else:
            data = _load_with_includes(path, stack=(), reads=_Reads())
    except RecursionError:
        raise ConfigError.single("", "the document is nested too deeply", str(path)) from None
    check_expanded_size(data, str(path))
    if not isinstance(data, dict):
        raise ConfigError.single("", f"the document must be a mapping, not {type(data).__name__}", str(path))
    problems: list[Problem] = []
    data = substitute_variables(data, os.environ if environ is None else environ, problems, kept=kept)
    if problems:
        raise ConfigError(problems, str(path))
    return data


def parse_document(text: str, source: str = "<string>") -> Any:
    """Parse YAML text (no includes); YAML errors become ConfigError with line and column."""
    try:
        data = yaml.load(text, Loader=_plain_loader())
    except yaml.YAMLError as err:
        raise ConfigError.single("", _yaml_message(err), source) from None
    except RecursionError:
        raise ConfigError.single("", "the document is nested too deeply", source) from None
    check_expanded_size(data, source)
    return data


def check_expanded_size(data: Any, source: str | None) -> None:
    """Refuse a document that holds more than MAX_VALUES values once its aliases are expanded.

    Counted without expanding: a shared (aliased) node's size is computed once and reused.
    """
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        total = 1 + sum(size(child) for child in children)
        sizes[id(node)] = total
        return total

    try:
        total = size(data)
    except RecursionError:
        raise ConfigError.single("", "the document is nested too deeply", source) from None
    if total > MAX_VALUES:
        raise ConfigError.single(
            "", f"the document expands to {total:,} values (YAML aliases), more than {MAX_VALUES:,}", source
        )


def _yaml_message(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(err, "problem", None) or str(err)
    return f"invalid YAML: {where}{problem}"


# libyaml's parser where PyYAML has it: about ten times faster on a large document
SAFE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _plain_loader() -> type[yaml.SafeLoader]:
    class Loader(SAFE_LOADER):
        pass

    def refuse_include(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        raise yaml.constructor.ConstructorError(None, None, "!include is only allowed in files", node.start_mark)

    Loader.add_constructor("!include", refuse_include)
    return Loader


KERNEL_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))  # their "regular files" may block for ever


class _Reads:
    """What one load has read: each file is read and parsed once (a file included ten times is
    shared, as a YAML alias is), and all files together hold at most MAX_FILE_BYTES."""

    def __init__(self) -> None:
        self.includes = 0
        self.bytes_left = MAX_FILE_BYTES
        self.parsed: dict[Path, Any] = {}


def _read_bounded(path: Path, included_from: str | None, reads: "_Reads | None" = None) -> str:
    """The text of a regular file within the load's byte budget (not a device, fifo or directory,
    nothing of the kernel's: `/proc/kmsg` looks like a regular file and blocks a reader)."""
    budget = reads.bytes_left if reads is not None else MAX_FILE_BYTES
    try:
        if not path.is_file():
            what = "does not exist" if not path.exists() else "is not a regular file"
            raise ConfigError.single("", f"{path} {what}", included_from)
        resolved = path.resolve()
        if any(root in resolved.parents for root in KERNEL_FILESYSTEMS):
            raise ConfigError.single("", f"{path} is the kernel's ({resolved}), not a document", included_from)
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a file that would block fails instead
        with os.fdopen(descriptor, "rb") as handle:
            alone_too_large = os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES
            raw = handle.read(budget + 1)
        if len(raw) > budget:
            limit = f"{MAX_FILE_BYTES // 2**20} MiB"
            what = f"{path} is larger than {limit}"
            if not alone_too_large:
                what = f"the document and its includes are larger than {limit} together (at {path})"
            raise ConfigError.single("", what, included_from)
        if reads is not None:
            reads.bytes_left -= len(raw)
        return raw.decode()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError.single("", f"cannot read {path}: {err}", included_from) from None


def _load_with_includes(path: Path, stack: tuple[Path, ...], reads: _Reads) -> Any:
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(str(p) for p in (*stack, resolved))
        raise ConfigError.single("", f"!include cycle: {chain}", str(path))
    if resolved in reads.parsed:
        return reads.parsed[resolved]
    text = _read_bounded(path, str(stack[-1]) if stack else None, reads)

    class Loader(SAFE_LOADER):
        pass

    def include(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(None, None, "!include takes a file path", node.start_mark)
        target = Path(loader.construct_scalar(node))
        if not target.is_absolute():
            target = path.parent / target
        reads.includes += 1
        if reads.includes > MAX_INCLUDES:
            raise ConfigError.single("", f"more than {MAX_INCLUDES} !include reads in one document", str(path))
        return _load_with_includes(target, (*stack, resolved), reads)

    Loader.add_constructor("!include", include)
    try:
        reads.parsed[resolved] = yaml.load(text, Loader=Loader)
        return reads.parsed[resolved]
    except yaml.YAMLError as err:
        raise ConfigError.single("", _yaml_message(err), str(path)) from None


def substitute_variables(
    value: Any,
    environ: Mapping[str, str],
    problems: list[Problem],
    path: str = "",
    kept: Container[str] = (),
    only: Container[str] | None = None,
) -> Any:
    """Replace `${VAR}`, `${VAR:-default}` and rompy's `${VAR|filter|...}` in every string.

    Unset variables and failing filters are recorded as problems. A string that is exactly one
    expression whose filters end in a time (`${CYCLE|shift:-1d}`) becomes that time, as in rompy.
    Expressions naming a `kept` variable, or any but `only` ones, stay as written (a forecast
    file's `CYCLE` is known only when a cycle runs); a kept one's filter names are still checked.
    """
    if isinstance(value, dict):
        return {k: substitute_variables(v, environ, problems, _join(path, k), kept, only) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_variables(v, environ, problems, f"{path}[{i}]", kept, only) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match) -> Any:
        escaped, name, default, chain = match.groups()
        if name in kept or (only is not None and name not in only):
            if chain and not escaped and (unknown := unknown_filters(chain)):
                problems.append(Problem(path, f"${{{name}|{chain}}}: unknown filter(s) {unknown}"))
            return match.group(0)
        if escaped:
            return match.group(0)[1:]
        if name in environ:
            found: Any = environ[name]
        elif default is not None:
            found = default
        else:
            problems.append(Problem(path, f"environment variable {name} is not set and has no default"))
            return match.group(0)
        if not chain:
            return found
        try:
            return apply_filters(found, chain)
        except ValueError as err:
            problems.append(Problem(path, f"${{{name}|{chain}}}: {err}"))
            return match.group(0)

    whole = _VAR.fullmatch(value)
    if whole is not None:
        return resolve(whole)
    return _VAR.sub(lambda match: str(resolve(match)), value)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Split `a.b=value`; the value is parsed as a YAML scalar (numbers, booleans, lists)."""
    if "=" not in text:
        raise ConfigError.single(text, "an override must look like path.to.field=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError.single(text, "an override needs a field path before '='")
    return key, parse_document(raw, source=f"--set {key}") if raw.strip() else ""


def assigned_copy(data: dict[str, Any], assignments: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with `dotted.path: value` assignments, `data` untouched: only the mappings and lists
    along each path are copied, the rest is shared (a member of 100,000 copies almost nothing)."""
    result = dict(data)
    for dotted, value in assignments.items():
        current: Any = result
        for part in _path_parts(dotted)[:-1]:
            key: Any = int(part) if isinstance(current, list) and part.isdigit() else part
            try:
                child = current[key]
            except (KeyError, IndexError, TypeError):
                break  # set_path says what is wrong, or creates the mapping
            if not isinstance(child, dict | list):
                break
            current[key] = copied = dict(child) if isinstance(child, dict) else list(child)
            current = copied
        set_path(result, dotted, value)
    return result


def _path_parts(dotted: str) -> list[str]:
    return [p for p in re.split(r"\.|\[(\d+)\]", dotted) if p]


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `data[a][b][0][c] = value` for `a.b.0.c` (or `a.b[0].c`), creating mappings as needed."""
    parts = _path_parts(dotted)
    if not parts:
        raise ConfigError.single(dotted, "empty field path")
    current: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(current, list):
            if not part.isdigit() or int(part) >= len(current):
                raise ConfigError.single(dotted, f"{part!r} is not an index of a list of {len(current)}")
            if last:
                current[int(part)] = value
            else:
                current = current[int(part)]
        elif isinstance(current, dict):
            if last:
                current[part] = value
            else:
                if not isinstance(current.get(part), dict | list):
                    current[part] = {} if current.get(part) is None else current[part]
                    if not isinstance(current[part], dict | list):
                        raise ConfigError.single(dotted, f"{part!r} is a value, it has no fields")
                current = current[part]
        else:
            raise ConfigError.single(dotted, f"cannot set a field inside a {type(current).__name__}")


def load_with_assignments(
    path: str | Path,
    assignments: list[str] | None = None,
    sections: Mapping[str, Path] | None = None,
    shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    kept: Container[str] = (),
) -> dict[str, Any]:
    """Read a document (reshaped by `shape`, if given; `kept` variables left as written), replace
    whole `sections` from their own files, then apply the CLI's `--set path.to.field=value` assignments."""
    data = load_document(path, kept=kept)
    if shape is not None:
        data = shape(data)
    for key, section_file in (sections or {}).items():
        data[key] = load_document(section_file)
    for text in assignments or []:
        set_path(data, *parse_assignment(text))
    return data


def given_fields(model: BaseModel) -> dict[str, Any]:
    """`model` as JSON data holding only what was given (by the file, `--set` or an override).

    Every hop that re-validates a config goes through this: a full dump would mark every default
    as given, and plugins that ask "was this set?" (`model_fields_set`, as rompy-swan's output
    times do) would then take the default (1970) instead of deriving the value. Aliases are
    kept, so fields whose names differ from their keys (xbeach's `break`) validate again.
    """
    return model.model_dump(mode="json", exclude_unset=True, by_alias=True, fallback=as_text)


def as_text(value: Any) -> str:
    """A value JSON has no type for (pyproj's CRS in rompy's grids) as its text, which its field
    accepts again (`EPSG:28350`); without this, dumping it failed and hid the config's own errors."""
    return str(value)


def apply_field_overrides(
    model: BaseModel, overrides: Mapping[str, Any], validate: Callable[[dict[str, Any], str], T]
) -> T:
    """A re-validated copy of `model` with `dotted.path: value` overrides applied.

    Deployments take these as an `overrides` parameter: Prefect's `--param` replaces a whole
    parameter, so a user changes one field from the UI or the shell without resending the config.
    """
    data = given_fields(model)
    for key, value in overrides.items():
        set_path(data, key, value)
    return validate(data, "overrides")
