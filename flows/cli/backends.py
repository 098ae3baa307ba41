"""`rompy-tasks backends`: list, validate, schema and create backend config files."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from flows.cli.common import err, invalid, out
from rompy_tasks.core.errors import ConfigError
from rompy_tasks.core.loader import load_document
from rompy_tasks.plugins import available, backend_union, postprocessor_union

app = typer.Typer(no_args_is_help=True, help="Inspect and validate backend configs")


@app.command("list")
def backends_list() -> None:
    """List the registered backends."""
    table = Table("type", "config class", "description")
    for name, cls in available("run").items():
        table.add_row(name, f"{cls.__module__}.{cls.__qualname__}", (cls.__doc__ or "").strip().split("\n")[0])
    out.print(table)


@app.command("validate")
def backends_validate(
    file: Annotated[Path, typer.Argument(help="Backend (or postprocessor) config YAML/JSON")],
    backend_type: Annotated[
        str | None, typer.Option("--backend-type", help="Validate as this backend (the file may omit `type`)")
    ] = None,
    processor_type: Annotated[
        str | None, typer.Option("--processor-type", help="Validate as this postprocessor instead (rompy's flag)")
    ] = None,
) -> None:
    """Validate a backend config file (a mapping with `type`), or with `--processor-type` a postprocessor file."""
    from rompy_tasks.pipeline import _explicit_processor, explicit_backend

    if backend_type and processor_type:
        raise invalid(ConfigError.single("--processor-type", "give --backend-type or --processor-type, not both"))
    kind, group, key, forced = (
        ("postprocessor", "postprocess", "processor", processor_type)
        if processor_type
        else ("backend", "run", "type", backend_type)
    )
    if forced is not None and forced not in available(group):
        raise invalid(ConfigError.single(f"--{kind}-type", f"unknown {kind} {forced!r}; {_choices(group)}"))
    try:
        data = load_document(file)
        data = _explicit_processor(data) if kind == "postprocessor" else explicit_backend(data)
        if forced is None and key not in data:
            raise ConfigError.single(
                key, f"missing: name the {kind} in the file or with --{kind}-type; {_choices(group)}"
            )
        if forced is not None:
            if data.get(key, forced) != forced:
                raise ConfigError.single(key, f"the file says {data[key]!r} but --{kind}-type is {forced!r}")
            data = {**data, key: forced}
        union = postprocessor_union() if kind == "postprocessor" else backend_union()
        config = TypeAdapter(union).validate_python(data)
    except ConfigError as error:
        raise invalid(error) from None
    except ValidationError as error:
        raise invalid(ConfigError.from_validation(error, data=data, source=str(file))) from None
    out.print(f"[green]valid[/] {getattr(config, key)} {kind} config")


def _choices(group: str) -> str:
    return f"available: {', '.join(available(group))}"


def _backend_class(positional: str | None, option: str | None) -> Any:
    """The backend class named by `schema TYPE` or rompy's `--backend-type TYPE`, or exit 2."""
    name = option or positional
    backends = available("run")
    if name is None or name not in backends:
        what = f"unknown backend {name!r}" if name else "give a backend type"
        raise invalid(ConfigError.single("--backend-type", f"{what}; {_choices('run')}"))
    return backends[name]


FormatOption = Annotated[str, typer.Option("--format", help="json or yaml (rompy's flag)")]


def _write_data(data: Any, output_format: str, output: Path | None = None) -> None:
    if output_format not in ("json", "yaml"):
        raise invalid(ConfigError.single("--format", f"{output_format!r} is not json or yaml"))
    import yaml

    text = json.dumps(data, indent=2) + "\n" if output_format == "json" else yaml.safe_dump(data, sort_keys=False)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err.print(f"Wrote {output}", highlight=False)


@app.command("schema")
def backends_schema(
    backend_type: Annotated[str | None, typer.Argument(help="Backend type, e.g. local")] = None,
    backend_type_option: Annotated[str | None, typer.Option("--backend-type", help="rompy's way to name it")] = None,
    output_format: FormatOption = "json",
) -> None:
    """Print the JSON schema of one backend config (as JSON or YAML)."""
    _write_data(_backend_class(backend_type, backend_type_option).model_json_schema(), output_format)


BACKEND_EXAMPLES: dict[str, dict[str, Any]] = {
    "local": {"timeout": 7200, "env_vars": {"OMP_NUM_THREADS": "4"}, "command": "python run_model.py"},
    "docker": {"image": "swan:latest", "timeout": 7200, "cpu": 4, "memory": "2g", "env_vars": {"DOCKER_ENV": "value"}},
    "slurm": {"queue": "general", "ntasks": 4, "time_limit": "02:00:00", "timeout": 7200},
}
REQUIRED_PLACEHOLDERS: dict[str, dict[str, Any]] = {"docker": {"image": "your-image:latest"}}


@app.command("create")
def backends_create(
    backend_type: Annotated[str, typer.Option("--backend-type", help="Backend type to write a file for")],
    output: Annotated[Path | None, typer.Option("--output", help="File to write (default: stdout)")] = None,
    output_format: FormatOption = "yaml",
    with_examples: Annotated[bool, typer.Option("--with-examples", help="Example values instead of defaults")] = False,
) -> None:
    """rompy's `backends create`: a backend file to start from, every field at its default.

    The file written validates as it is (`backends validate`); `--with-examples` fills in
    typical values instead.
    """
    cls = _backend_class(None, backend_type)
    data: dict[str, Any] = {"type": backend_type}
    for name, field in cls.model_fields.items():
        if name != "type" and not field.is_required():
            default = field.get_default(call_default_factory=True)
            data[name] = default.model_dump(mode="json") if hasattr(default, "model_dump") else default
    data.update(REQUIRED_PLACEHOLDERS.get(backend_type, {}))
    if with_examples:
        data.update(BACKEND_EXAMPLES.get(backend_type, {}))
    data = json.loads(json.dumps({k: v for k, v in data.items() if v is not None}, default=str))
    _write_data(data, output_format, output)
