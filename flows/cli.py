"""The `rompy-tasks` command line.

Exit codes: 0 success, 1 the run failed, 2 invalid input (every problem printed with its
field path; nothing written, nothing started). Validation and schema commands never import
Prefect, so they answer fast.
"""

import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from rompy_tasks.core.errors import ConfigError
from rompy_tasks.core.loader import load_document
from rompy_tasks.pipeline import STAGES, load_pipeline
from rompy_tasks.plugins import (
    available,
    backend_union,
    pipeline_config_class,
    postprocessor_union,
    registry,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Prefect-native ocean/wave/coastal model runs")
backends_app = typer.Typer(no_args_is_help=True, help="Inspect and validate backend configs")
app.add_typer(backends_app, name="backends")


class RunsByDefault(TyperGroup):
    """A command group whose first argument may be a file: `ensemble FILE` runs it (the `run`
    subcommand), while `ensemble validate FILE` validates, as `forecast validate` does."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


ensemble_app = typer.Typer(
    cls=RunsByDefault,
    no_args_is_help=True,
    help="Ensembles: `ensemble FILE` runs one, `ensemble validate FILE` checks it",
)
app.add_typer(ensemble_app, name="ensemble")
forecast_app = typer.Typer(no_args_is_help=True, help="Operational forecast cycles: run, backfill, status, validate")
app.add_typer(forecast_app, name="forecast")
server_app = typer.Typer(no_args_is_help=True, help="The local Prefect server that commands reuse")
app.add_typer(server_app, name="server")
deployments_app = typer.Typer(no_args_is_help=True, help="Prefect deployment files (prefect.yaml)")
app.add_typer(deployments_app, name="deployments")
alerts_app = typer.Typer(no_args_is_help=True, help="Alerts on forecast cycles (Prefect automations)")
app.add_typer(alerts_app, name="alerts")
REPO = Path(__file__).resolve().parent.parent

out = Console()
err = Console(stderr=True)
EXIT_HOOKS: list[Callable[[int], None]] = []  # called with the exit code, last (flows/entry.py, flows/warm.py)


def reset_consoles() -> None:
    """New consoles for this terminal and environment (a warm command inherits the ones made at import)."""
    global out, err
    out, err = Console(), Console(stderr=True)


EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a field: path.to.field=value (repeatable)")
]


def _invalid(error: ConfigError) -> typer.Exit:
    where = f" in {escape(error.source)}" if error.source else ""
    # soft_wrap: a path or message stays on one line, whole, for copy and grep
    err.print(f"[bold red]Invalid configuration{where}[/] ({len(error.problems)} problem(s)):", soft_wrap=True)
    for problem in error.problems:
        loc, msg = escape(problem.loc or "(document)"), escape(problem.msg)
        err.print(f"  [yellow]{loc}[/]: {msg}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_INVALID)


def _valid(load: Callable[..., Any], *args: Any) -> Any:
    """`load(*args)`, or exit 2 listing every problem."""
    try:
        return load(*args)
    except ConfigError as error:
        raise _invalid(error) from None


def _load(file: Path, overrides: list[str] | None) -> Any:
    return _valid(load_pipeline, file, overrides)


def _outcome(state: Any, title: str) -> Any:
    """The flow's result, or exit 1 after printing why it failed."""
    if not state.is_completed():
        reason = state.message
        try:
            state.result()
        except BaseException as error:  # noqa: BLE001 - shown to the user, exit code says the rest
            reason = f"{type(error).__name__}: {error}"  # once: the state's message repeats it
        err.print(f"[bold red]{title} failed[/]: ", end="")
        err.print(reason, highlight=False, markup=False, soft_wrap=True)  # paths stay whole for copy and grep
        raise typer.Exit(EXIT_FAILED)
    return state.result()


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C, so the model's process tree is killed on the way out."""
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def _connect_api() -> None:
    """Point this command at the configured Prefect API, or at the reused local server.

    Done before Prefect is imported, so every thread of the command sees the same API.
    """
    from rompy_tasks import local_server

    configured = local_server.configured_api_url()
    if configured:
        if not local_server.healthy(configured.rstrip("/"), timeout=5.0):
            err.print(
                f"[bold red]The Prefect API at {configured} does not answer[/] (PREFECT_API_URL or your Prefect "
                "profile). Start that server, or unset PREFECT_API_URL to use the local server rompy-tasks starts.",
                highlight=False,
            )
            raise typer.Exit(EXIT_FAILED)
        return
    try:
        info, started = local_server.start()
    except RuntimeError as error:
        err.print(f"[bold red]{error}[/]")
        raise typer.Exit(EXIT_FAILED) from None
    if started:
        err.print(
            f"Started a local Prefect server for this and later commands: UI {info.ui_url}, "
            f"log {local_server.log_path()}. Stop it with `rompy-tasks server stop`.",
            highlight=False,
        )
    os.environ["PREFECT_API_URL"] = info.api_url
    if "prefect.context" in sys.modules:  # imported already (a warm command process): read the API URL again
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def _run_flow(call: Callable[..., Any], rule: str, title: str, *around: AbstractContextManager) -> Any:
    """Run a flow from the command line: its result, or exit 1 saying why `title` failed.

    Prints `rule` first and runs inside the `around` contexts (progress bars, console level).
    SIGTERM unwinds like Ctrl-C. No flow heartbeat: it tells a server that a flow's process is
    alive and costs about a second to stop, most of a short run's overhead; the guard marks a
    dead command's runs Crashed instead. Deployment runs (started by a worker) keep it.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    err.rule(rule)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    with ExitStack() as stack:
        for context in around:
            stack.enter_context(context)
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            state = call(return_state=True)
    return _outcome(state, title)


BackendConfigOption = Annotated[
    Path | None, typer.Option("--backend-config", help="A backend file (rompy's) replacing the file's backend")
]


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Pipeline file, or a rompy model-run file")],
    set_: SetOption = None,
    backend_config: BackendConfigOption = None,
    first_stage: Annotated[str, typer.Option(help=f"First stage: {', '.join(STAGES)}")] = "generate",
    last_stage: Annotated[str, typer.Option(help=f"Last stage: {', '.join(STAGES)}")] = "postprocess",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="rompy's: generate inputs only")] = False,
    skip_generate: Annotated[
        bool, typer.Option("--skip-generate", help="rompy's: run on inputs generated before")
    ] = False,
    cleanup_on_failure: Annotated[bool, typer.Option(help="Remove model outputs if the run fails")] = False,
    validate_stages: Annotated[bool, typer.Option(help="Check inputs/outputs between stages")] = True,
) -> None:
    """Run a pipeline: generate inputs, run the model, postprocess.

    As `rompy run CONFIG --backend-config B`, FILE may be a rompy model-run file (run_id,
    period, output_dir, config) and B its backend; `--dry-run` stops after generate and
    `--skip-generate` starts at the run stage.
    """
    from rompy_tasks.pipeline import select_stages

    if dry_run and skip_generate:
        raise _invalid(ConfigError.single("--skip-generate", "cannot be used with --dry-run"))
    first_stage = "run" if skip_generate else first_stage
    last_stage = "generate" if dry_run else last_stage
    pipeline = _valid(load_pipeline, file, set_, backend_config)
    try:
        select_stages(first_stage, last_stage)
    except ConfigError as error:
        raise _invalid(error) from None
    _run_pipeline(pipeline, first_stage, last_stage, cleanup_on_failure, validate_stages)


OutputDirOption = Annotated[
    Path | None, typer.Option("--output-dir", help="Override the model run's output_dir (rompy's flag)")
]


def _output_dir_set(set_: list[str] | None, output_dir: Path | None) -> list[str]:
    """`--set` assignments plus rompy's `--output-dir`, for a pipeline or a model-run file alike."""
    return [*(set_ or []), *([f"config.output_dir={output_dir}"] if output_dir else [])]


@app.command()
def generate(
    file: Annotated[Path, typer.Argument(help="Pipeline file, or a rompy model-run file")],
    output_dir: OutputDirOption = None,
    set_: SetOption = None,
) -> None:
    """rompy's `generate`: write the model's inputs into the run directory, run nothing."""
    pipeline = _valid(load_pipeline, file, _output_dir_set(set_, output_dir))
    _run_pipeline(pipeline, "generate", "generate", False, True)


@app.command()
def postprocess(
    file: Annotated[Path, typer.Argument(help="Pipeline file, or a rompy model-run file")],
    processor_config: Annotated[
        Path | None, typer.Option("--processor-config", help="A postprocessor file (rompy's) replacing the file's")
    ] = None,
    output_dir: OutputDirOption = None,
    validate_outputs: Annotated[
        bool, typer.Option("--validate-outputs/--no-validate", help="Fail when the model left no outputs")
    ] = True,
    set_: SetOption = None,
) -> None:
    """rompy's `postprocess`: run the postprocessors on a finished run's outputs."""
    pipeline = _valid(load_pipeline, file, _output_dir_set(set_, output_dir), None, processor_config)
    if not validate_outputs:
        processors = [
            p.model_copy(update={"validate_outputs": False}) if "validate_outputs" in type(p).model_fields else p
            for p in pipeline.postprocessor
        ]
        pipeline = pipeline.model_copy(update={"postprocessor": processors})
    _run_pipeline(pipeline, "postprocess", "postprocess", False, validate_outputs)


@app.command("pipeline")
def rompy_pipeline(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML/JSON file (config, backend, postprocessor)")],
    backend_config: BackendConfigOption = None,
    processor_config: Annotated[
        Path | None, typer.Option("--processor-config", help="A postprocessor file replacing its postprocessors")
    ] = None,
    cleanup_on_failure: Annotated[
        bool, typer.Option("--cleanup-on-failure/--no-cleanup", help="Remove model outputs if the run fails")
    ] = False,
    validate_stages: Annotated[
        bool, typer.Option("--validate-stages/--no-validate", help="Check inputs/outputs between stages")
    ] = True,
    set_: SetOption = None,
) -> None:
    """rompy's `pipeline` verb: generate, run, postprocess, with rompy's flags (else as `run`)."""
    pipeline = _valid(load_pipeline, file, set_, backend_config, processor_config)
    _run_pipeline(pipeline, "generate", "postprocess", cleanup_on_failure, validate_stages)


def _run_pipeline(
    pipeline: Any, first_stage: str, last_stage: str, cleanup_on_failure: bool, validate_stages: bool
) -> None:
    """Run the pipeline flow on the reused (or configured) Prefect API, with progress, and print the result."""
    _connect_api()
    from flows.pipeline import model_pipeline  # imports Prefect: only when something will run
    from flows.progress import pipeline_progress

    run_id = pipeline.config.run_id
    result = _run_flow(
        lambda **kw: model_pipeline(
            pipeline=pipeline,
            first_stage=first_stage,
            last_stage=last_stage,
            cleanup_on_failure=cleanup_on_failure,
            validate_stages=validate_stages,
            **kw,
        ),
        f"rompy-tasks: {run_id} ({pipeline.config.config.model_type} on {pipeline.backend.type})",
        f"Run {run_id}",
        pipeline_progress(err, run_id),
    )
    _print_result(result)


@ensemble_app.command("run")
def ensemble(
    file: Annotated[Path, typer.Argument(help="Ensemble YAML/JSON file")],
    set_: SetOption = None,
    indexes: Annotated[str | None, typer.Option(help="Members to run, e.g. 0,3-5")] = None,
    max_parallel: Annotated[int | None, typer.Option(min=1, help="Members running at once")] = None,
    verbose: Annotated[bool, typer.Option(help="Print every member's log lines here too")] = False,
) -> None:
    """Run an ensemble: many members of one pipeline, resuming completed ones.

    The terminal shows progress, warnings and errors; every member's log lines go to the
    Prefect UI and to its run directory (`--verbose` prints them here as well).
    """
    from rompy_tasks.ensemble import load_ensemble, parse_indexes

    try:
        config, members = load_ensemble(file, set_)
        selected = parse_indexes(indexes) if indexes else None
        if selected is not None and (bad := [i for i in selected if i >= len(members)]):
            raise ConfigError.single("--indexes", f"{bad} outside 0..{len(members) - 1}")
    except ConfigError as error:
        raise _invalid(error) from None

    _connect_api()
    from flows.ensemble import model_ensemble
    from flows.progress import console_level, ensemble_progress

    run_ids = [m.run_id for m in members if selected is None or m.index in selected]
    result = _run_flow(
        lambda **kw: model_ensemble(ensemble=config, indexes=selected, max_parallel=max_parallel, **kw),
        f"rompy-tasks ensemble: {config.name} ({len(members)} members)",
        f"Ensemble {config.name}",
        ensemble_progress(err, run_ids),
        console_level(logging.INFO if verbose else logging.WARNING),
    )
    table = Table("member", "run id", "status", "attempts", "seconds", title=f"Ensemble {config.name}")
    for m in result.members:
        seconds = f"{m.duration_seconds:.1f}" if m.duration_seconds is not None else ""
        table.add_row(str(m.index), m.run_id, m.status, str(m.attempts), seconds)
    out.print(table)
    out.print(f"Ensemble directory: {result.ensemble_dir}")


@ensemble_app.command("validate")
def ensemble_validate(
    file: Annotated[Path, typer.Argument(help="Ensemble YAML/JSON file")],
    set_: SetOption = None,
) -> None:
    """Validate an ensemble file and every member; list every problem with its field path."""
    from rompy_tasks.ensemble import load_ensemble

    config, members = _valid(load_ensemble, file, set_)
    out.print(
        f"[green]valid[/]: ensemble {config.name}, {len(members)} member(s) "
        f"({', '.join(m.run_id for m in members[:5])}{', ...' if len(members) > 5 else ''}), "
        f"model {config.pipeline.config.config.model_type} on {config.pipeline.backend.type}",
        soft_wrap=True,
    )


def _print_result(result: Any) -> None:
    table = Table(title=f"Run {result.run_id}: {result.status}", show_header=True)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for timing in result.timings:
        table.add_row(timing.stage, f"{timing.seconds:.1f}")
    out.print(table)
    out.print(f"Run directory: {result.staging_dir}")


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML/JSON file")],
    set_: SetOption = None,
) -> None:
    """Validate a pipeline file; list every problem with its field path."""
    pipeline = _load(file, set_)
    period = pipeline.config.period
    out.print(
        f"[green]valid[/]: run {pipeline.config.run_id}, model {pipeline.config.config.model_type}, "
        f"backend {pipeline.backend.type}, postprocessors "
        f"{', '.join(p.processor for p in pipeline.postprocessor) or 'none'}; "
        f"period {period.start.isoformat()} to {period.end.isoformat()} every {period.interval}",
        soft_wrap=True,
    )


def _forecast_schema() -> dict[str, Any]:
    from rompy_tasks.forecast import ForecastConfig

    return ForecastConfig.model_json_schema()


SCHEMAS = {
    "pipeline": lambda: pipeline_config_class().model_json_schema(),
    "forecast": _forecast_schema,
    "backend": lambda: TypeAdapter(backend_union()).json_schema(),
    "postprocessor": lambda: TypeAdapter(postprocessor_union()).json_schema(),
}


@app.command()
def schema(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCHEMAS)}")] = "pipeline",
) -> None:
    """Print the JSON schema of a pipeline file, a backend or a postprocessor."""
    if kind not in SCHEMAS:
        err.print(f"[red]unknown schema {kind!r}[/]; choose from {', '.join(SCHEMAS)}")
        raise typer.Exit(EXIT_INVALID)
    sys.stdout.write(json.dumps(SCHEMAS[kind](), indent=2) + "\n")


@backends_app.command("list")
def backends_list() -> None:
    """List the registered backends."""
    table = Table("type", "config class", "description")
    for name, cls in available("run").items():
        table.add_row(name, f"{cls.__module__}.{cls.__qualname__}", (cls.__doc__ or "").strip().split("\n")[0])
    out.print(table)


@backends_app.command("validate")
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
    from rompy_tasks.pipeline import _explicit_processor

    if backend_type and processor_type:
        raise _invalid(ConfigError.single("--processor-type", "give --backend-type or --processor-type, not both"))
    kind, group, key, forced = (
        ("postprocessor", "postprocess", "processor", processor_type)
        if processor_type
        else ("backend", "run", "type", backend_type)
    )
    if forced is not None and forced not in available(group):
        raise _invalid(ConfigError.single(f"--{kind}-type", f"unknown {kind} {forced!r}; {_choices(group)}"))
    try:
        data = load_document(file)
        if kind == "postprocessor":
            data = _explicit_processor(data)
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
        raise _invalid(error) from None
    except ValidationError as error:
        raise _invalid(ConfigError.from_validation(error, data=data, source=str(file))) from None
    out.print(f"[green]valid[/] {getattr(config, key)} {kind} config")


def _choices(group: str) -> str:
    return f"available: {', '.join(available(group))}"


def _backend_class(positional: str | None, option: str | None) -> Any:
    """The backend class named by `schema TYPE` or rompy's `--backend-type TYPE`, or exit 2."""
    name = option or positional
    backends = available("run")
    if name is None or name not in backends:
        what = f"unknown backend {name!r}" if name else "give a backend type"
        raise _invalid(ConfigError.single("--backend-type", f"{what}; {_choices('run')}"))
    return backends[name]


FormatOption = Annotated[str, typer.Option("--format", help="json or yaml (rompy's flag)")]


def _write_data(data: Any, output_format: str, output: Path | None = None) -> None:
    if output_format not in ("json", "yaml"):
        raise _invalid(ConfigError.single("--format", f"{output_format!r} is not json or yaml"))
    import yaml

    text = json.dumps(data, indent=2) + "\n" if output_format == "json" else yaml.safe_dump(data, sort_keys=False)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err.print(f"Wrote {output}", highlight=False)


@backends_app.command("schema")
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


@backends_app.command("create")
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


@app.command()
def plugins() -> None:
    """List discovered plugins per entry-point group, and any that failed to load."""
    reg = registry()
    table = Table("group", "name", "target", "status")
    for key, names in reg.targets.items():
        for name, target in names.items():
            failed = next((f for f in reg.failures if f.name == name and f.target == target), None)
            status = f"[red]failed: {failed.error}[/]" if failed else "[green]ok[/]"
            table.add_row(f"rompy_tasks.{key}", name, target, status)
    out.print(table)


def _load_forecast(file: Path, overrides: list[str] | None) -> Any:
    from rompy_tasks.forecast import load_forecast

    return _valid(load_forecast, file, overrides)


def _time(option: str, text: str) -> Any:
    """An ISO 8601 time (`2026-01-02`, `2026-01-02T12`, `2026-01-02T12:00Z`); UTC unless it says otherwise."""
    from datetime import datetime

    from rompy_tasks.core.time import as_utc

    try:
        return as_utc(datetime.fromisoformat(text.strip().replace("z", "Z")))
    except ValueError:
        raise _invalid(ConfigError.single(option, f"{text!r} is not an ISO 8601 time such as 2026-01-02T12")) from None


def _duration(option: str, text: str) -> Any:
    """A duration option (`2h`, `PT30M`, `01:30:00`, seconds), or exit 2 naming the option."""
    from rompy_tasks.core.time import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise _invalid(ConfigError.single(option, str(error))) from None


def _print_cycles(records: list[Any]) -> None:
    table = Table("cycle", "status", "start", "restart from", "seconds", "note", title="Forecast cycles")
    for r in records:
        seconds = f"{r.timings['total']:.1f}" if "total" in r.timings else ""
        table.add_row(r.run_id, r.status, r.start or "-", r.restart_cycle or "-", seconds, (r.reason or "")[:60])
    out.print(table)


@forecast_app.command("run")
def forecast_run(
    file: Annotated[Path, typer.Argument(help="Forecast YAML/JSON file")],
    cycle: Annotated[str | None, typer.Option(help="Cycle time (default: now, floored to the cycle interval)")] = None,
    force: Annotated[bool, typer.Option(help="Re-run a completed cycle")] = False,
    set_: SetOption = None,
) -> None:
    """Run one forecast cycle, hot-started from the previous one."""
    from datetime import UTC, datetime

    config = _load_forecast(file, set_)
    when = _time("--cycle", cycle) if cycle else datetime.now(UTC)
    _connect_api()
    from flows.forecast import forecast_cycle

    title = f"rompy-tasks forecast: {config.name}"
    record = _run_flow(lambda **kw: forecast_cycle(forecast=config, cycle=when, force=force, **kw), title, title)
    _print_cycles([record])
    out.print(f"Cycle directory: {record.run_dir}")


@forecast_app.command("backfill")
def forecast_backfill(
    file: Annotated[Path, typer.Argument(help="Forecast YAML/JSON file")],
    start: Annotated[str, typer.Option("--from", help="First cycle time (ISO 8601)")],
    end: Annotated[str, typer.Option("--to", help="Last cycle time (ISO 8601)")],
    force: Annotated[bool, typer.Option(help="Re-run completed cycles too")] = False,
    set_: SetOption = None,
) -> None:
    """Run what is missing from --from to --to (missing, failed, skipped cycles), oldest first."""
    config = _load_forecast(file, set_)
    first, last = _time("--from", start), _time("--to", end)
    if first > last:
        raise _invalid(ConfigError.single("--from", f"{start} is after --to {end}"))
    _connect_api()
    from flows.forecast import forecast_backfill as backfill_flow

    title = f"rompy-tasks forecast backfill: {config.name}"
    records = _run_flow(
        lambda **kw: backfill_flow(forecast=config, start=first, end=last, force=force, **kw), title, title
    )
    _print_cycles(records)


@forecast_app.command("status")
def forecast_status(
    file: Annotated[Path, typer.Argument(help="Forecast YAML/JSON file")],
    last: Annotated[int, typer.Option(min=1, max=1000, help="How many cycles to show, newest first")] = 8,
    grace: Annotated[str, typer.Option(help="Cycles due less than this long ago are not checked yet")] = "0h",
    set_: SetOption = None,
) -> None:
    """The morning check: the newest cycles, read from their records (no server needed).

    Exits 1 if the newest due cycle is missing, failed or skipped, so cron or a monitor can alert.
    """
    from rompy_tasks.core.time import clock_text
    from rompy_tasks.forecast import cycle_id, recent_cycles

    config = _load_forecast(file, set_)
    rows = recent_cycles(config, last, grace=_duration("--grace", grace))
    table = Table("cycle", "status", "start", "late by", "seconds", "outputs", "note", title=f"Forecast {config.name}")
    for cycle, record in rows:
        if record is None:
            table.add_row(cycle_id(cycle), "[red]missing[/]", "", "", "", "", "")
            continue
        colour = {"completed": "green", "running": "cyan"}.get(record.status, "red")
        start = {"hot": f"hot from {record.restart_cycle}", "cold": "cold"}.get(record.start or "", "-")
        late = clock_text((record.started - cycle).total_seconds()) if record.started else "-"
        seconds = f"{record.timings['total']:.1f}" if "total" in record.timings else ""
        outputs = str(len(record.outputs)) if record.status == "completed" else ""
        note = escape((record.reason or "")[:60])
        table.add_row(record.run_id, f"[{colour}]{record.status}[/]", start, late, seconds, outputs, note)
    out.print(table)
    out.print(f"Forecast directory: {config.directory}", soft_wrap=True)
    newest, record = rows[0]
    problem = "missing" if record is None else record.status if record.status in {"failed", "skipped"} else None
    if problem:
        err.print(f"[bold red]The newest cycle {cycle_id(newest)} is {problem}[/]", highlight=False)
        raise typer.Exit(1)


@forecast_app.command("validate")
def forecast_validate(
    file: Annotated[Path, typer.Argument(help="Forecast YAML/JSON file")],
    set_: SetOption = None,
) -> None:
    """Validate a forecast file; list every problem with its field path."""
    config = _load_forecast(file, set_)
    out.print(
        f"[green]valid[/]: forecast {config.name}, every {config.cycle_interval}, {config.forecast_length} long, "
        f"model {config.pipeline.config.config.model_type} on {config.pipeline.backend.type}"
    )


@forecast_app.command("forcing")
def forecast_forcing(
    output: Annotated[Path, typer.Argument(help="NetCDF file to write")],
    start: Annotated[str, typer.Option(help="First time (ISO 8601)")],
    end: Annotated[str, typer.Option(help="Last time (ISO 8601)")],
    interval_hours: Annotated[int, typer.Option(min=1, help="Hours between records")] = 6,
) -> None:
    """Write the synthetic wind-stress forcing file the demo forecast and the tests use."""
    from datetime import timedelta

    from rompy_tasks.synthetic import write_synthetic_wind

    first, last = _time("--start", start), _time("--end", end)
    if first >= last:
        raise _invalid(ConfigError.single("--start", f"{start} is not before --end {end}"))
    path = write_synthetic_wind(output, first, last, timedelta(hours=interval_hours))
    out.print(f"wrote {path} ({first.isoformat()} to {last.isoformat()}, every {interval_hours} h)")


@deployments_app.command("render")
def deployments_render(
    file: Annotated[Path, typer.Argument(help="A prefect.yaml that uses !include or ${VAR}")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the plain prefect.yaml")],
) -> None:
    """Resolve `!include` and `${VAR}` in a prefect.yaml for `prefect deploy`, which reads neither.

    So a deployment and the CLI share one file (deployments/prefect.yaml includes the forecast
    of examples/veros-forecast/forecast.yaml). Prefect's own `{{ ... }}` templates are kept, and
    so is a forecast's `${CYCLE...}`, set when each cycle runs.
    """
    import yaml

    from rompy_tasks.forecast import CYCLE_VARIABLE

    data = _valid(load_document, file, None, (CYCLE_VARIABLE,))
    output.write_text(f"# Rendered from {file} by `rompy-tasks deployments render`; edit that file.\n")
    with output.open("a") as handle:
        yaml.safe_dump(data, handle, sort_keys=False, width=120)
    out.print(f"wrote {output}", soft_wrap=True)


@alerts_app.command("install")
def alerts_install(
    webhook: Annotated[str, typer.Argument(help="URL that receives a JSON POST {subject, body} per alert")],
    file: Annotated[Path, typer.Option(help="The automations, as code")] = REPO / "deployments" / "alerts.yaml",
    forecast: Annotated[Path, typer.Option(help="The forecast (its cycle interval sets the overdue window)")] = (
        REPO / "examples" / "veros-forecast" / "forecast.yaml"
    ),
    deployment: Annotated[str, typer.Option(help="The forecast deployment's name")] = "veros-acc-forecast",
    overdue_after: Annotated[
        str | None, typer.Option(help="Alert when no cycle completed for this long (default: 1.5 cycle intervals)")
    ] = None,
) -> None:
    """Notify WEBHOOK when a forecast cycle fails, crashes or is skipped, or none completes in time."""
    config = _load_forecast(forecast, None)
    overdue = _duration("--overdue-after", overdue_after) if overdue_after else 1.5 * config.cycle_interval
    _connect_api()
    from flows.alerts import install_alerts

    for name in _valid(install_alerts, webhook, file, overdue, deployment):
        out.print(f"installed automation: {escape(name)}", soft_wrap=True)


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server (loopback only) unless it runs; print where it is."""
    from rompy_tasks import local_server

    info, started = local_server.start()
    out.print(f"{'started' if started else 'running'}: UI {info.ui_url}  API {info.api_url}  pid {info.pid}")
    out.print(f"home {local_server.server_dir()}  log {local_server.log_path()}", highlight=False, soft_wrap=True)
    out.print("stop it with `rompy-tasks server stop`")


@server_app.command("prepare")
def server_prepare() -> None:
    """Initialise the server home template once, so a first start is quick (scripts/setup runs this)."""
    from rompy_tasks import local_server

    template, made = local_server.prepare_template()
    out.print(f"{'prepared' if made else 'ready'}: {template}", highlight=False, soft_wrap=True)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server (run history stays in its database) and the warm command processes."""
    from flows import warm
    from rompy_tasks import local_server

    warm.stop_all()
    info = local_server.stop()
    out.print(
        f"stopped the local Prefect server (pid {info.pid})" if info else "the local Prefect server was not running"
    )


@server_app.command("status")
def server_status() -> None:
    """Say whether the local Prefect server runs (exit 0) or not (exit 1)."""
    from rompy_tasks import local_server

    info = local_server.status()
    if info is None:
        out.print("the local Prefect server is not running (it starts with the first `rompy-tasks run`)")
        raise typer.Exit(EXIT_FAILED)
    out.print(f"running: UI {info.ui_url}  API {info.api_url}  pid {info.pid}  log {local_server.log_path()}")


def _exit_now(code: int) -> None:
    """Exit once Prefect's exit handlers have delivered logs and events, skipping interpreter teardown.

    Tearing down the modules of Prefect and its dependencies takes about half a second.
    """
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    for hook in EXIT_HOOKS:
        hook(code)
    os._exit(code)


def main() -> None:
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
    else:
        code = 0
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = EXIT_FAILED
    _exit_now(code or 0)


if __name__ == "__main__":
    main()
