"""Build the Reference pages from the code (mkdocs-gen-files runs this at every build).

Every field of every config model (type, default, constraints, description) comes from the
pydantic models of the installed plugins and of the pipeline, ensemble and forecast files;
every command and option from the typer app; each deployment from deployments/prefect.yaml.
Nothing here is written by hand, so the reference cannot drift from the code. The build also
places the vendored mermaid script (scripts/docs fetches it from the npm registry).
"""

import re
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import mkdocs_gen_files
import typer
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from flows.cli.root import app
from rompy_tasks.backends.base import BaseBackendConfig
from rompy_tasks.core.config import BaseModelConfig
from rompy_tasks.core.model_run import ModelRun
from rompy_tasks.ensemble import EnsembleConfig
from rompy_tasks.forecast import ForecastConfig
from rompy_tasks.pipeline_config import PipelineBase
from rompy_tasks.plugins import available
from rompy_tasks.postprocess.base import BasePostprocessorConfig

ROOT = Path(__file__).resolve().parent.parent
MERMAID = ROOT / ".venv" / "share" / "rompy-tasks-docs" / "mermaid.min.js"
ROMPY_DOCS = "https://rom-py.github.io/rompy/"
PLUGIN_PAGES = {
    **{cls: "models.md" for cls in available("config").values()},
    **{cls: "backends.md" for cls in available("run").values()},
    **{cls: "postprocessors.md" for cls in available("postprocess").values()},
}


# a field typed by a family's base class means "any of them": link the family's page
FAMILIES = {
    BaseModelConfig: ("models.md", "one of the models"),
    BaseBackendConfig: ("backends.md", "one of the backends"),
    BasePostprocessorConfig: ("postprocessors.md", "one of the postprocessors"),
    PipelineBase: ("pipeline.md", "a pipeline"),
    ModelRun: ("pipeline.md#modelrun", "a model run"),
}


def anchor(model: type) -> str:
    return model.__name__.lower()


def nested_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation refers to (inside unions, lists, mappings, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in nested_models(arg)]


def type_name(annotation: Any, page: str) -> str:
    """A reader's name for a type; models link to their section (here or on their page)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for base, (where, shown) in FAMILIES.items():
            if issubclass(annotation, base) and annotation not in PLUGIN_PAGES:
                return f"[{shown}]({where})" if where != page else f"[{shown}](#{anchor(base)})"
        target = PLUGIN_PAGES.get(annotation, page)
        link = f"#{anchor(annotation)}" if target == page else f"{target}#{anchor(annotation)}"
        return f"[{annotation.__name__}]({link})"
    if origin is typing.Annotated:
        return type_name(args[0], page)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a, page) for a in args)
    if origin is typing.Literal:
        return " or ".join(f"`{a!r}`" for a in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {type_name(args[0], page)}" if args else "list"
    if origin is dict:
        return f"mapping of {type_name(args[0], page)} to {type_name(args[1], page)}" if args else "mapping"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def default_of(field: Any) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
        return f"`{value!r}`" if not isinstance(value, BaseModel) else "(its defaults)"
    if field.default is PydanticUndefined:
        return "**required**"
    return f"`{shown_value(field.default)}`"


def shown_value(value: Any) -> str:
    """A default as a user writes it in YAML."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if hasattr(value, "value"):  # an enum
        return repr(value.value)
    return repr(value)


CONSTRAINTS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "at least", "max_length": "at most"}


def constraints_of(field: Any) -> str:
    found = []
    for item in field.metadata:
        for attribute, shown in CONSTRAINTS.items():
            if getattr(item, attribute, None) is not None:
                found.append(f"{shown} {getattr(item, attribute)}")
        if getattr(item, "pattern", None):
            found.append(f"pattern `{item.pattern}`")
    return ", ".join(found)


def cell(text: str) -> str:
    """One table cell: one line, pipes escaped, and `<name>` shown rather than taken for HTML."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return re.sub(r"<(?=[A-Za-z/])", "&lt;", text)


def model_section(model: type[BaseModel], page: str, title: str | None = None) -> str:
    doc = (model.__doc__ or "").strip().split("\n\n")[0]
    rows = [
        f"| `{name}` | {cell(type_name(field.annotation, page))} | {cell(default_of(field))} | "
        f"{cell(constraints_of(field))} | {cell(field.description or '')} |"
        for name, field in model.model_fields.items()
    ]
    heading = f"## {model.__name__}\n\n" + (f"{title}\n\n" if title else "")
    table = "| field | type | default | constraints | description |\n|---|---|---|---|---|\n" + "\n".join(rows)
    return heading + (f"{cell(doc)}\n\n" if doc else "") + table + "\n"


def models_page(path: str, title: str, intro: str, roots: list[tuple[type[BaseModel], str | None]]) -> None:
    """`roots` and every model they refer to (not documented on another page), one section each."""
    sections, seen, queue = [], set(), list(roots)
    while queue:
        model, note = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        sections.append(model_section(model, path, note))
        for field in model.model_fields.values():
            for nested in nested_models(field.annotation):
                family = any(issubclass(nested, base) for base in FAMILIES) and nested not in PLUGIN_PAGES
                if PLUGIN_PAGES.get(nested, path) == path and nested not in seen and not family:
                    queue.append((nested, None))
    with mkdocs_gen_files.open(f"reference/{path}", "w") as out:
        out.write(f"# {title}\n\n{intro}\n\n" + "\n".join(sections))


def cli_page() -> None:
    root = typer.main.get_command(app)
    lines = ["# Command line", "", "Every command and option of `rompy-tasks`, from the command-line app itself.", ""]

    def walk(command: Any, prefix: str) -> None:
        if hasattr(command, "commands"):  # a group (typer's own click types: no isinstance)
            for name in sorted(command.commands):
                walk(command.commands[name], f"{prefix} {name}")
            return
        lines.extend([f"## `{prefix}`", "", cell((command.help or "").split("\n\n")[0]), ""])
        params = [p for p in command.params if p.name != "help"]
        if params:
            lines.extend(["| argument or option | default | help |", "|---|---|---|"])
            for param in params:
                names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
                if param.param_type_name == "argument":
                    names = f"`{(param.metavar or param.name or '').upper()}` (argument)"
                default = "" if param.default in (None, (), []) or callable(param.default) else f"`{param.default}`"
                lines.append(f"| {names} | {default} | {cell(getattr(param, 'help', '') or '')} |")
            lines.append("")

    walk(root, "rompy-tasks")
    with mkdocs_gen_files.open("reference/cli.md", "w") as out:
        out.write("\n".join(lines) + "\n")


class _IncludeLoader(yaml.SafeLoader):
    """deployments/prefect.yaml with each `!include` shown as the file it names."""


_IncludeLoader.add_constructor("!include", lambda loader, node: f"!include {loader.construct_scalar(node)}")


def deployments_page() -> None:
    lines = ["# Deployments", "", "Each deployment the project ships, read from its prefect.yaml.", ""]
    for path in sorted((ROOT / "deployments").rglob("prefect.yaml")):
        spec = yaml.load(path.read_text(), Loader=_IncludeLoader)  # noqa: S506
        lines += [f"From `{path.relative_to(ROOT)}`:", ""]
        lines += _deployment_sections(spec["deployments"])
    with mkdocs_gen_files.open("reference/deployments.md", "w") as out:
        out.write("\n".join(lines))


def _deployment_sections(deployments: list[dict]) -> list[str]:
    lines: list[str] = []
    for deployment in deployments:
        flow = re.split(r"[:.]", deployment["entrypoint"])[-1]  # a module path or a file:function
        params = deployment.get("parameters") or {}
        lines += [
            f"## `{flow.replace('_', '-')}/{deployment['name']}`",
            "",
            cell(deployment.get("description", "")),
            "",
        ]
        lines += [f"- entrypoint: `{deployment['entrypoint']}`", f"- work pool: `{deployment['work_pool']['name']}`"]
        for schedule in deployment.get("schedules") or []:
            lines.append(
                f"- schedule: `{schedule.get('cron') or schedule.get('interval')}` ({schedule.get('timezone', 'UTC')})"
            )
        lines.append(f"- parameters: {', '.join(f'`{name}`' for name in params)}")
        allowed = params.get("allowed_overrides")
        lines.append(
            "- allowed overrides (a locked deployment): " + ", ".join(f"`{a}`" for a in allowed)
            if allowed
            else "- not locked: any override"
        )
        lines.append("")
    return lines


def rompy_models_note() -> str:
    return (
        "With the `rompy` extra (`pip install 'rompy-tasks[rompy]'` and a model plugin such as "
        "rompy-swan), rompy's own model configs are model types too (`base`, `swan`, `schism`, `xbeach`, ...): "
        f"their fields are rompy's, documented at [rompy's documentation]({ROMPY_DOCS}). This reference is "
        "built from the core install."
    )


def main() -> None:
    models_page(
        "pipeline.md",
        "Pipeline file",
        "A pipeline file (`rompy-tasks run FILE`): the model run, its backend, its postprocessors and "
        "its data. `config.config` is one of the [models](models.md), `backend` one of the "
        "[backends](backends.md), each `postprocessor` one of the [postprocessors](postprocessors.md).",
        [(PipelineBase, None), (ModelRun, None)],
    )
    models_page(
        "models.md",
        "Models",
        "The model configs (`config.config`, chosen by `model_type`). " + rompy_models_note(),
        [(cls, f"`model_type: {name}`") for name, cls in sorted(available("config").items())],
    )
    models_page(
        "backends.md",
        "Backends",
        "How the run stage executes (`backend`, chosen by `type`).",
        [(cls, f"`type: {name}`") for name, cls in sorted(available("run").items())],
    )
    models_page(
        "postprocessors.md",
        "Postprocessors",
        "What runs on a run's outputs (`postprocessor`, chosen by `processor`).",
        [(cls, f"`processor: {name}`") for name, cls in sorted(available("postprocess").items())],
    )
    models_page(
        "ensemble.md",
        "Ensemble file",
        "An ensemble file (`rompy-tasks ensemble FILE`): a base [pipeline](pipeline.md) and its members.",
        [(EnsembleConfig, None)],
    )
    models_page(
        "forecast.md",
        "Forecast file",
        "A forecast file (`rompy-tasks forecast run FILE`): a base [pipeline](pipeline.md) and the cycling rules.",
        [(ForecastConfig, None)],
    )
    cli_page()
    deployments_page()
    if MERMAID.is_file():
        with mkdocs_gen_files.open("assets/vendor/mermaid.min.js", "wb") as out:
            out.write(MERMAID.read_bytes())
    else:
        raise SystemExit(f"{MERMAID} is missing: scripts/docs fetches it from the npm registry")


main()
