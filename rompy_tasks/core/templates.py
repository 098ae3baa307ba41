"""Render a template directory tree into a staging directory, safely.

Jinja2 runs in an immutable sandbox with StrictUndefined: a template cannot reach Python
internals or change its context, and a missing variable is an error, not an empty string. The
context is plain data (see `BaseModelConfig.template_context`). File and folder names are templates
too; every rendered path is checked to stay inside the destination, so a value such as
`../../etc` cannot write outside the run directory.
"""

from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined
from jinja2 import TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rompy_tasks.core.errors import TemplateError

_MARKERS = ("{{", "{%", "{#")
_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def render_string(text: str, context: dict[str, Any], where: str = "template") -> str:
    """Render one template string; any Jinja failure becomes a TemplateError naming `where`."""
    if not any(marker in text for marker in _MARKERS):
        return text  # plain text: nothing to compile (a compile costs about a millisecond)
    try:
        return _ENV.from_string(text).render(**context)
    except JinjaError as err:
        raise TemplateError.single(where, f"{type(err).__name__}: {err}") from None


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
