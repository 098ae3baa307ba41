"""The commands of one run: run, generate, postprocess, pipeline (rompy's verbs), validate, schema, plugins.

As in Prefect's CLI, each command group has its own module; these are the root's own commands.
Validation and schema commands never import Prefect, so they answer fast.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter
from rich.markup import escape
from rich.table import Table

from flows.cli.common import (
    EXIT_INVALID,
    BackendConfigOption,
    SetOption,
    connect_api,
    err,
    invalid,
    out,
    run_flow,
    valid,
)
from rompy_tasks.core.errors import ConfigError
from rompy_tasks.pipeline import STAGES, load_pipeline
from rompy_tasks.plugins import backend_union, pipeline_config_class, postprocessor_union, registry

app = typer.Typer()  # merged into the root app: these commands have no group name


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
        raise invalid(ConfigError.single("--skip-generate", "cannot be used with --dry-run"))
    first_stage = "run" if skip_generate else first_stage
    last_stage = "generate" if dry_run else last_stage
    try:
        stages = select_stages(first_stage, last_stage)
    except ConfigError as error:
        raise invalid(error) from None
    pipeline = valid(load_pipeline, file, set_, backend_config, None, "run" in stages)
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
    """rompy's `generate`: write the model's inputs into the run directory, run nothing (no backend needed)."""
    pipeline = valid(load_pipeline, file, _output_dir_set(set_, output_dir), None, None, False)
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
    """rompy's `postprocess`: run the postprocessors on a finished run's outputs (no backend needed)."""
    pipeline = valid(load_pipeline, file, _output_dir_set(set_, output_dir), None, processor_config, False)
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
    pipeline = valid(load_pipeline, file, set_, backend_config, processor_config)
    _run_pipeline(pipeline, "generate", "postprocess", cleanup_on_failure, validate_stages)


def _run_pipeline(
    pipeline: Any, first_stage: str, last_stage: str, cleanup_on_failure: bool, validate_stages: bool
) -> None:
    """Run the pipeline flow on the reused (or configured) Prefect API, with progress, and print the result."""
    connect_api()
    from flows.pipeline import model_pipeline  # imports Prefect: only when something will run
    from flows.progress import pipeline_progress

    run_id = pipeline.config.run_id
    result = run_flow(
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
    """Validate a pipeline file; list every problem with its field path.

    Checks what `generate` needs; what `run` would need in addition is named as a warning.
    """
    from rompy_tasks.pipeline import run_stage_problem

    pipeline = valid(load_pipeline, file, set_, None, None, False)
    period = pipeline.config.period
    out.print(
        f"[green]valid[/]: run {pipeline.config.run_id}, model {pipeline.config.config.model_type}, "
        f"backend {pipeline.backend.type}, postprocessors "
        f"{', '.join(p.processor for p in pipeline.postprocessor) or 'none'}; "
        f"period {period.start.isoformat()} to {period.end.isoformat()} every {period.interval}",
        soft_wrap=True,
    )
    if problem := run_stage_problem(pipeline):
        err.print(
            f"[yellow]warning[/]: `run` would also need {escape(problem.loc)}: {escape(problem.msg)} "
            "(`generate` and `postprocess` need no backend)",
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
