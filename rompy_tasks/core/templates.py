"""Render a template directory tree into a staging directory, safely.

Jinja2 runs in an immutable sandbox with StrictUndefined: a template cannot reach Python
internals or change its context, and a missing variable is an error, not an empty string. The
context is plain data (see `BaseModelConfig.template_context`). File and folder names are templates
too; every rendered path is checked to stay inside the destination, so a value such as
`../../etc` cannot write outside the run directory.

Rendering is bounded (issue 11.5): one template renders within `MAX_RENDER_SECONDS` and no
string or sequence it builds, output included, exceeds `MAX_RENDERED_CHARS`. Sizes are checked
before an operation allocates (`'x' * 4000000000`, `'x'.center(10**9)`, `2 ** 10**9`), time at
every loop iteration, call and output chunk (nested `range` loops), so a hostile template is a
validation error within a second instead of a hang.
"""

import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, meta, nodes
from jinja2 import TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from rompy_tasks.core.errors import TemplateError

MAX_RENDER_SECONDS = 1.0
MAX_RENDERED_CHARS = 16 * 1024 * 1024
MAX_INTEGER_BITS = 100_000

TEMPLATE_MARKERS = ("{{", "{%", "{#")
_SIZED = (str, bytes, list, tuple)
_PRINTF_SPECS = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d*)(?:\.(\d*))?")
_BRACE_SPECS = re.compile(r"\{[^{}]*?:([^{}]*)\}")
_WIDTH_FILTERS = ("center", "indent", "wordwrap", "format", "truncate")


class _LimitExceeded(Exception):
    """A bound was hit; render_string reports it as a TemplateError on the template."""


@dataclass
class _Budget:
    deadline: float

    def step(self) -> None:
        if time.monotonic() > self.deadline:
            raise _LimitExceeded(f"rendering took more than {MAX_RENDER_SECONDS:g} s")


_BUDGET: ContextVar[_Budget] = ContextVar("template_render_budget")


def _step() -> None:
    budget = _BUDGET.get(None)
    if budget is not None:
        budget.step()


def _check_length(length: int, what: str) -> None:
    if length > MAX_RENDERED_CHARS:
        raise _LimitExceeded(f"{what} would be larger than {MAX_RENDERED_CHARS:,} items")


def _check_size(value: Any, what: str) -> Any:
    if isinstance(value, _SIZED):
        _check_length(len(value), what)
    return value


def _check_widths(args: Iterable[Any], what: str) -> None:
    """Refuse integer arguments (widths, counts) larger than any output may be."""
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and arg > MAX_RENDERED_CHARS:
            raise _LimitExceeded(f"{what} with {arg:,} would be larger than {MAX_RENDERED_CHARS:,} characters")


def _check_format(fmt: Any, what: str) -> None:
    """Refuse a %- or {}-format string whose widths or precisions are larger than any output may be."""
    if isinstance(fmt, str):
        specs = [number for found in _PRINTF_SPECS.findall(fmt) for number in found]
        specs += [number for spec in _BRACE_SPECS.findall(fmt) for number in re.findall(r"\d+", spec)]
        if any(len(number) > 8 and int(number) > MAX_RENDERED_CHARS for number in specs):
            raise _LimitExceeded(f"{what}: a width in {fmt[:40]!r} is larger than {MAX_RENDERED_CHARS:,}")


def _check_binop(op: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too big, before Python allocates it."""
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right))
    if op == "*" and ints and left.bit_length() + right.bit_length() > MAX_INTEGER_BITS:
        raise _LimitExceeded(f"a product would have more than {MAX_INTEGER_BITS:,} bits")
    if op == "**" and ints and right > 0 and abs(left) > 1 and right * left.bit_length() > MAX_INTEGER_BITS:
        raise _LimitExceeded(f"a power would have more than {MAX_INTEGER_BITS:,} bits")
    if op == "*":
        sized, count = (left, right) if isinstance(left, _SIZED) else (right, left)
        if isinstance(sized, _SIZED) and isinstance(count, int) and len(sized) * count > MAX_RENDERED_CHARS:
            raise _LimitExceeded(f"repeating a value {count:,} times would be larger than {MAX_RENDERED_CHARS:,} items")
    if op == "+" and isinstance(left, _SIZED) and isinstance(right, _SIZED):
        _check_length(len(left) + len(right), "a concatenation")
    if op == "%":
        _check_format(left, "a % format")


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with size checks on operators, calls and filters."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _step()
        _check_binop(operator, left, right)
        return _check_size(super().call_binop(context, operator, left, right), f"the result of {operator}")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        _step()
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)  # str.format comes wrapped
        if isinstance(owner, _SIZED):  # 'x'.center(10**9), '{:>999999999}'.format(1)
            _check_widths([*args, *kwargs.values()], f"{__obj.__name__}()")
            if __obj.__name__ in ("format", "format_map"):
                _check_format(owner, "str.format")
        return _check_size(super().call(__context, __obj, *args, **kwargs), "a call's result")


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _step()
        if name in _WIDTH_FILTERS:
            _check_widths([*args[1:], *kwargs.values()], f"the {name} filter")
        if name == "format":
            _check_format(args[0] if args else None, "the format filter")
        return _check_size(func(*args, **kwargs), f"the {name} filter's result")

    bounded.__dict__.update(getattr(func, "__dict__", {}))  # keep Jinja's pass_context / pass_environment markers
    return bounded


def _bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _step()
        yield item


def _bounded_join(parts: Iterable[Any]) -> str:
    texts = [str(part) for part in parts]
    _check_length(sum(map(len, texts)), "a ~ concatenation")
    return "".join(texts)


class _CountLoopsAndJoins(NodeTransformer):
    """Route every for-loop's items and every `~` through the budget (Jinja has no hook for them)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call("_rt_bounded_iter", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call("_rt_bounded_join", nodes.List(node.nodes, lineno=node.lineno))


def _call(function: str, argument: nodes.Expr) -> nodes.Call:
    return nodes.Call(nodes.Name(function, "load"), [argument], [], None, None, lineno=argument.lineno)


_ENV = _BoundedSandbox(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
_ENV.filters = {name: _bounded_filter(name, func) for name, func in _ENV.filters.items()}
_ENV.globals.pop("lipsum", None)  # lipsum(n=10**9) would be a bomb with no size argument to check
_ENV.globals.update(_rt_bounded_iter=_bounded_iter, _rt_bounded_join=_bounded_join)


@lru_cache(maxsize=512)
def _compile(text: str) -> Template:
    tree = _CountLoopsAndJoins().visit(_ENV.parse(text))
    tree.set_environment(_ENV)
    return _ENV.from_string(tree)


Selection = dict[str, Any] | bool
"""What a template reads of one context value, as a pydantic `include`: True for all of it, or
the keys it reads, nested ({"period": {"start": True}})."""

# a key with one of these names may be a container's method (`parameters.items()`): what it is
# called on is read whole
_CONTAINER_ATTRIBUTES = frozenset(dir(dict)) | frozenset(dir(list))


@lru_cache(maxsize=512)
def referenced_fields(text: str) -> dict[str, Selection]:
    """What a template string reads of each context name (nothing for plain text).

    Only `name.key.key` and `name["key"]` chains narrow a selection; any other use of a name
    (`{{ runtime }}`, `runtime|attr(..)`, `{% set r = runtime %}`, a computed subscript) reads it
    whole. An ensemble builds each member's context from this: dumping whole models per member
    cost a third of validating 100,000 of them. A syntax error reads everything (rendering reports it).
    """
    if not any(marker in text for marker in TEMPLATE_MARKERS):
        return {}
    try:
        tree = _ENV.parse(text)
    except JinjaError:
        return {"runtime": True, "config": True}
    found: dict[str, Selection] = {}
    _collect_reads(tree, found)
    names = meta.find_undeclared_variables(tree)
    return {name: selection for name, selection in found.items() if name in names}


def merged_selections(selections: Iterable[dict[str, Selection]]) -> dict[str, Selection]:
    """One selection per name that covers everything any of `selections` reads."""
    merged: dict[str, Selection] = {}
    for selection in selections:
        merged = _merged(merged, selection)
    return merged


def _merged(a: Selection, b: Selection) -> Selection:
    if a is True or b is True:
        return True
    return {key: _merged(a[key], b[key]) if key in a and key in b else a.get(key, b.get(key)) for key in a | b}


def _collect_reads(node: nodes.Node, found: dict[str, Selection]) -> None:
    """Add to `found` what `node` and its children read of each name."""
    if isinstance(node, nodes.Getattr | nodes.Getitem) and (chain := _key_chain(node)):
        name, keys = chain
        selection: Selection = True
        for key in reversed(keys):
            selection = {key: selection}
        found[name] = _merged(found.get(name, {}), selection)
        return
    if isinstance(node, nodes.Name) and node.ctx == "load":
        found[node.name] = True
        return
    for child in node.iter_child_nodes():
        _collect_reads(child, found)


def _is_key(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Const) and isinstance(node.value, str)


def _key_chain(node: nodes.Node) -> tuple[str, list[str]] | None:
    """(name, keys) for `name.a["b"].c`, keys cut at the first that may be a container method;
    None when the chain does not start at a name or holds a computed subscript."""
    keys: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        elif _is_key(node.arg):
            keys.append(node.arg.value)
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    keys.reverse()
    for index, key in enumerate(keys):
        if key in _CONTAINER_ATTRIBUTES:
            return node.name, keys[:index]
    return node.name, keys


def render_string(text: str, context: dict[str, Any], where: str = "template") -> str:
    """Render one template string; any Jinja failure or exceeded bound becomes a TemplateError naming `where`."""
    if not any(marker in text for marker in TEMPLATE_MARKERS):
        return text  # plain text: nothing to compile (a compile costs about a millisecond)
    token = _BUDGET.set(_Budget(time.monotonic() + MAX_RENDER_SECONDS))
    try:
        chunks, size = [], 0
        for chunk in _compile(text).generate(**context):
            size += len(chunk)
            _check_length(size, "the rendered output")
            _step()
            chunks.append(chunk)
        return "".join(chunks)
    except JinjaError as err:
        raise TemplateError.single(where, f"{type(err).__name__}: {err}") from None
    except _LimitExceeded as err:
        raise TemplateError.single(where, f"template too costly: {err}") from None
    except RecursionError:
        raise TemplateError.single(where, "template too costly: recursion too deep") from None
    finally:
        _BUDGET.reset(token)


def inside(root: Path, candidate: Path) -> Path:
    """Return `candidate` resolved, or raise if it is not inside `root`."""
    root_resolved = root.resolve()
    resolved = candidate.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise TemplateError.single(str(candidate), f"path escapes the staging directory {root}")
    return resolved


def plan_tree(template_dir: Path, dest: Path, context: dict[str, Any]) -> list[tuple[Path, str | bytes]]:
    """Render every file under `template_dir` in memory: (target path, content) pairs.

    Writes nothing, so validation can run it to catch template errors and path escapes.
    """
    template_dir = Path(template_dir)
    if not template_dir.is_dir():
        raise TemplateError.single("template", f"template directory {template_dir} does not exist")
    planned: list[tuple[Path, str | bytes]] = []
    root = template_dir.resolve()
    for source in sorted(p for p in template_dir.rglob("*") if p.is_file()):
        relative = source.relative_to(template_dir).as_posix()
        if source.is_symlink() and root not in source.resolve().parents:
            # a link out of the template tree would copy any readable host file into the run
            raise TemplateError.single(f"template {relative}", f"links outside the template directory {template_dir}")
        rendered_name = render_string(relative, context, where=f"template name {relative}")
        target = inside(dest, dest / rendered_name)
        try:
            text = source.read_text()
        except UnicodeDecodeError:
            planned.append((target, source.read_bytes()))  # binary inputs are copied as-is
            continue
        planned.append((target, render_string(text, context, where=f"template {relative}")))
    return planned


def render_tree(template_dir: Path, dest: Path, context: dict[str, Any]) -> list[Path]:
    """Render `template_dir` into `dest`; return the files written.

    Everything is rendered and checked first, then written, so a failing template
    leaves nothing half-written behind.
    """
    written = []
    for target, content in plan_tree(template_dir, dest, context):
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        written.append(target)
    return written
