"""Pipeline files and pipeline results, without Prefect.

Loading a pipeline file (with `--set` overrides) either returns a validated PipelineConfig
or raises one ConfigError listing every problem; nothing is written. The result and the
run manifest are plain data so the CLI, the flows and the tests share them.
"""

import errno
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from rompy_tasks.backends.base import BaseBackendConfig, LineSink, RunResult, stage_log_path
from rompy_tasks.core.errors import ConfigError, Problem, StageError
from rompy_tasks.core.loader import apply_field_overrides, as_text, load_with_assignments
from rompy_tasks.core.model_run import RUN_MARKER, ModelRun, output_files
from rompy_tasks.core.records import read_record, write_json_atomically
from rompy_tasks.core.run_files import exclusive, write_text
from rompy_tasks.core.secrets import REDACTED, redact_urls
from rompy_tasks.inputs import StaticInput, stage_inputs
from rompy_tasks.pipeline_config import DataCut, PipelineBase
from rompy_tasks.plugins import pipeline_config_class
from rompy_tasks.postprocess.base import BasePostprocessorConfig

Stage = Literal["generate", "run", "postprocess"]
STAGES: tuple[str, ...] = ("generate", "run", "postprocess")
MANIFEST_NAME = "rompy_tasks_run.json"


def select_stages(first_stage: str, last_stage: str) -> list[str]:
    """The stages from `first_stage` to `last_stage` inclusive (fractal-style selection)."""
    for name, value in (("first_stage", first_stage), ("last_stage", last_stage)):
        if value not in STAGES:
            raise ConfigError.single(name, f"unknown stage {value!r}; stages are {', '.join(STAGES)}")
    start, end = STAGES.index(first_stage), STAGES.index(last_stage)
    if start > end:
        raise ConfigError.single("first_stage", f"{first_stage!r} comes after last_stage {last_stage!r}")
    return list(STAGES[start : end + 1])


def expand_shorthands(data: dict[str, Any]) -> dict[str, Any]:
    """File conveniences, expanded before validation: `postprocessor: archive` or a list of names,
    rompy's `type: noop` for our `processor: noop`, and rompy's `backend_type: local` (its
    backend files' key) for `type: local`.

    The model (and so the JSON schema the Prefect API enforces) takes only the explicit
    form: a list of `{processor: name, ...}` and a backend with `type`.
    """
    if isinstance(data.get("backend"), dict):
        data = {**data, "backend": explicit_backend(data["backend"])}
    value = data.get("postprocessor")
    if value is None:
        return data
    items = value if isinstance(value, list) else [value]
    return {**data, "postprocessor": [_explicit_processor(item) for item in items]}


def explicit_backend(section: dict[str, Any]) -> dict[str, Any]:
    """rompy's backend files name the backend `backend_type:`; ours `type:` (either is taken)."""
    if "backend_type" in section and "type" not in section:
        return {"type": section["backend_type"], **{k: v for k, v in section.items() if k != "backend_type"}}
    return section


def _explicit_processor(item: Any) -> Any:
    if isinstance(item, str):
        return {"processor": item}
    if isinstance(item, dict) and "type" in item and "processor" not in item:  # rompy's key
        return {"processor": item["type"], **{k: v for k, v in item.items() if k != "type"}}
    return item


def nested_pipeline_type() -> Any:
    """The type of a `pipeline:` field inside an ensemble or forecast file (shorthands expanded)."""
    return Annotated[
        pipeline_config_class(),
        BeforeValidator(lambda value: expand_shorthands(value) if isinstance(value, dict) else value),
    ]


def validate_data(data: dict[str, Any], source: str | None = None, needs_run: bool = True) -> PipelineBase:
    """Validate a pipeline mapping; every problem is reported with its field path.

    `needs_run=False` for verbs that run no model (rompy's `generate`, `postprocess`): as in
    rompy, they take no backend, so what only the run stage needs is not checked.
    """
    data = expand_shorthands(data)
    try:
        pipeline = pipeline_config_class().model_validate(data)
    except ValidationError as err:
        raise ConfigError.from_validation(err, data=data, source=source) from None
    try:
        pipeline.config.config.check(pipeline.config)
    except ConfigError as err:
        raise type(err)(err.problems, source) from None
    if problem := pipeline.config.deletion_problem():
        raise ConfigError.single("config.delete_existing", problem, source)
    if needs_run and (problem := run_stage_problem(pipeline)):
        raise ConfigError([problem], source)
    return pipeline


def run_stage_problem(pipeline: PipelineBase) -> Problem | None:
    """What the run stage would lack: a command, for a model without one of its own (rompy's base, swan)."""
    field = pipeline.backend.command_field
    if field is None or getattr(pipeline.backend, field) is None:
        if missing := pipeline.config.config.command_missing():
            fix = f"give the backend's `{field}`" if field else f"the {pipeline.backend.type} backend cannot give one"
            return Problem(f"backend.{field or 'type'}", f"{missing}: {fix}")
    return None


def apply_overrides(pipeline: PipelineBase, overrides: dict[str, Any]) -> PipelineBase:
    """`pipeline` with `dotted.path: value` overrides (the flows' `overrides` parameter)."""
    return apply_field_overrides(pipeline, overrides, validate_data)


ROMPY_MODEL_RUN_KEYS = {"model_type", "run_id", "period", "output_dir", "config", "delete_existing", "run_id_subdir"}
# rompy's ModelRun defaults (rompy/model.py), for a model-run file that leaves them out
ROMPY_DEFAULT_PERIOD = {"start": "2020-02-21T04:00:00", "end": "2020-02-24T04:00:00", "interval": "15min"}
ROMPY_DEFAULT_CONFIG = {"model_type": "base"}


def as_pipeline_document(data: dict[str, Any]) -> dict[str, Any]:
    """A rompy model-run file (`run_id`, `period`, `output_dir`, `config: {model_type: ...}`,
    what `rompy run|generate|postprocess CONFIG` read) as a pipeline with only its `config`;
    a pipeline file as it is. In a pipeline, `config` is a model run, never a model config.

    As in rompy, every key of a model-run file has a default: without `config:` the model is
    rompy's base model (the `rompy` extra), without `period:` rompy's default period.
    """
    config = data.get("config")
    model_run = (isinstance(config, dict) and "model_type" in config) or (
        config is None and set(data) <= ROMPY_MODEL_RUN_KEYS and bool(data)
    )
    if not model_run:
        return data
    model_run_doc = {k: v for k, v in data.items() if not (k == "model_type" and v == "modelrun")}
    model_run_doc.setdefault("config", dict(ROMPY_DEFAULT_CONFIG))
    model_run_doc.setdefault("period", dict(ROMPY_DEFAULT_PERIOD))
    return {"config": model_run_doc}


def load_pipeline(
    path: str | Path,
    overrides: list[str] | None = None,
    backend_file: Path | None = None,
    processor_file: Path | None = None,
    needs_run: bool = True,
) -> PipelineBase:
    """Read, override (`a.b=c`) and validate a pipeline file, or a rompy model-run file.

    rompy's `--backend-config` and `--processor-config` files replace the `backend` and
    `postprocessor` sections (a processor file is one mapping, as in rompy).
    """
    sections = {"backend": backend_file, "postprocessor": processor_file}
    chosen = {key: file for key, file in sections.items() if file is not None}
    data = load_with_assignments(path, overrides, chosen, shape=as_pipeline_document)
    return validate_data(data, source=str(path), needs_run=needs_run)


def redacted(pipeline: PipelineBase) -> dict[str, Any]:
    """The pipeline as JSON data with values that may be secrets hidden: env_vars (backend and
    postprocessors), URL credentials."""
    data = redact_urls(pipeline.model_dump(mode="json", fallback=as_text))
    for section in [data.get("backend") or {}, *(data.get("postprocessor") or [])]:
        if section.get("env_vars"):
            section["env_vars"] = {key: REDACTED for key in section["env_vars"]}
    return data


def record_generated(run: ModelRun, files: list[Path]) -> Path:
    """Write the generate stage's log: when it ran and which input files it wrote."""
    log = stage_log_path(run.staging_dir, "generate")
    lines = [f"# {datetime.now(UTC).isoformat()} generated {len(files)} input file(s)"]
    lines += [str(Path(f).relative_to(run.staging_dir)) for f in files]
    write_text(log, "\n".join(lines) + "\n")
    return log


def check_inputs(run: ModelRun) -> None:
    """Before the run stage: the generate stage must have completed for this run directory.

    A directory another tool generated (`rompy generate`: files, but not our marker) is run as it
    is, as rompy's `run --skip-generate` does; one of ours without a completed generate is not."""
    staging = run.staging_dir
    if stage_log_path(staging, "generate").is_file():
        return
    if staging.is_dir() and not (staging / RUN_MARKER).exists() and any(p.name != "logs" for p in staging.iterdir()):
        return
    raise StageError(f"inputs of {staging} were never generated: run the generate stage first")


def check_outputs(run: ModelRun) -> None:
    """Before postprocessing: the model must have written outputs."""
    if not run.staging_dir.is_dir() or not output_files(run):
        patterns = run.config.output_patterns()
        raise StageError(f"no model outputs matching {patterns} in {run.staging_dir}: run the model first")


def generated_inputs(run: ModelRun) -> set[Path]:
    """The input files the generate stage recorded in its log."""
    log = stage_log_path(run.staging_dir, "generate")
    if not log.is_file():
        return set()
    lines = [line for line in log.read_text().splitlines() if line and not line.startswith("#")]
    return {run.staging_dir / line for line in lines}


def remove_outputs(run: ModelRun) -> list[Path]:
    """Delete model outputs (never generated inputs, logs or the manifest) after a failure."""
    keep = generated_inputs(run) | {run.staging_dir / MANIFEST_NAME}
    removed = []
    for path in output_files(run):
        if path not in keep and path.relative_to(run.staging_dir).parts[0] != "logs":
            path.unlink()
            removed.append(path)
    return removed


class StageTiming(BaseModel):
    stage: str
    seconds: float


class PipelineResult(BaseModel):
    """What a pipeline run did: completed stages, the model result, postprocessor results."""

    run_id: str
    staging_dir: Path
    status: Literal["completed", "failed"]
    stages_requested: list[str]
    stages_completed: list[str] = Field(default_factory=list)
    timings: list[StageTiming] = Field(default_factory=list)
    generated_files: list[str] = Field(default_factory=list)
    run: RunResult | None = None
    postprocess: dict[str, dict[str, Any]] = Field(default_factory=dict)
    error: str | None = None
    manifest_error: str | None = Field(None, description="Why the manifest could not be written (e.g. a full disk)")
    finished: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def summary_markdown(self, pipeline: PipelineBase) -> str:
        """The flow-run summary artifact: run id, period, backend, stages, durations, outputs."""
        run = pipeline.config
        lines = [
            f"# Model run `{self.run_id}`: {self.status}",
            "",
            "| | |",
            "|---|---|",
            f"| Model | {run.config.model_type} |",
            f"| Period | {run.period.start.isoformat()} to {run.period.end.isoformat()} |",
            f"| Backend | {pipeline.backend.type} |",
            f"| Run directory | `{self.staging_dir}` |",
            f"| Stages requested | {', '.join(self.stages_requested)} |",
            f"| Stages completed | {', '.join(self.stages_completed) or 'none'} |",
        ]
        if self.run is not None:
            lines.append(f"| Exit code | {self.run.exit_code} |")
            lines.append(f"| Model log | `{self.run.log_path}` |")
        lines += ["", "## Durations", "", "| Stage | Seconds |", "|---|---|"]
        lines += [f"| {t.stage} | {t.seconds:.2f} |" for t in self.timings]
        outputs = [str(p.relative_to(self.staging_dir)) for p in output_files(run)]
        lines += ["", "## Output files", ""] + [f"- `{name}`" for name in outputs or ["(none)"]]
        for name, result in self.postprocess.items():
            lines += ["", f"## Postprocessor `{name}`", "", str(result.get("message", ""))]
        if self.error:
            lines += ["", "## Error", "", "```", self.error[-3000:], "```"]
        return "\n".join(lines)


def moved_result(result: PipelineResult, new_dir: Path) -> PipelineResult:
    """`result` after its run directory was moved to `new_dir`: every path under the old one rebased."""
    old = str(result.staging_dir)

    def rebase(value: Any) -> Any:
        if isinstance(value, str) and (value == old or value.startswith(old + "/")):
            return str(new_dir) + value[len(old) :]
        if isinstance(value, dict):
            return {k: rebase(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rebase(v) for v in value]
        return value

    return PipelineResult.model_validate(rebase(result.model_dump(mode="json")))


def write_manifest(result: PipelineResult, pipeline: PipelineBase) -> Path:
    """Record the run (config with secrets hidden, stages, results) in the run directory, atomically."""
    payload = {"pipeline": redacted(pipeline), "result": result.model_dump(mode="json")}
    if inputs := read_record(stage_log_path(result.staging_dir, "inputs").with_suffix(".json")):
        payload["inputs"] = inputs["inputs"]  # each static input's URI and sha256
    return write_json_atomically(result.staging_dir / MANIFEST_NAME, payload, durable=False)


# --- the stages, as plain functions ----------------------------------------------------------------
# The pipeline flow wraps each in a Prefect task (or subflow); an ensemble member calls them
# directly inside its own task run. Both go through `execute_stages`, so a run behaves the same.


def generate(
    model_run: ModelRun,
    forcing: Sequence[DataCut],
    log: LineSink,
    inputs: Sequence[StaticInput] = (),
    cache: Path | None = None,
) -> list[str]:
    """Create the run directory and write into it the static inputs, the model's inputs and its forcing cut."""
    staging = model_run.prepare_staging()
    placed = stage_inputs(list(inputs), staging, cache)
    for item in placed:
        log(f"input {item['id']}: {item['uri']} (sha256 {item['sha256'][:12]}...) as {item['path']}")
    if placed:
        write_json_atomically(stage_log_path(staging, "inputs").with_suffix(".json"), {"inputs": placed})
    files = [staging / item["path"] for item in placed] + model_run.config.generate(model_run, staging)
    for source in forcing:  # the forcing cuts, then rompy's data blocks
        path = source.write(model_run.period, staging)
        log(f"{source.shown_url} cut to the run period into {path.relative_to(staging)}")
        files.append(path)
    record_generated(model_run, files)
    log(f"generated {len(files)} input file(s) in {staging}")
    return [str(f) for f in files]


def execute(model_run: ModelRun, backend: BaseBackendConfig, log: LineSink) -> RunResult:
    """Execute the model on its backend, every output line to `log`."""
    log(f"running {model_run.config.model_type} on the {backend.type} backend in {model_run.staging_dir}")
    result = backend.execute(model_run, on_line=log)
    log(f"model finished with exit code {result.exit_code} in {result.duration_seconds:.1f} s")
    return result


@dataclass(frozen=True)
class StageCalls:
    """How each stage is called: directly (an ensemble member) or as Prefect tasks (the pipeline flow)."""

    generate: Callable[[ModelRun, Sequence[DataCut], Sequence[StaticInput], Path | None], list[str]]
    run: Callable[[ModelRun, BaseBackendConfig], RunResult]
    postprocess: Callable[[ModelRun, BasePostprocessorConfig], dict[str, Any]]


def execute_stages(
    pipeline: PipelineBase,
    result: PipelineResult,
    calls: StageCalls,
    *,
    validate_stages: bool = True,
    cleanup_on_failure: bool = False,
    log: LineSink = print,
) -> PipelineResult:
    """Run `result.stages_requested` in order, filling `result`; the manifest is written whatever happens.

    A failure keeps inputs and logs (outputs too, unless `cleanup_on_failure`) and is re-raised;
    a failure to write the manifest never hides the run's own error.
    """
    model_run = pipeline.config
    with exclusive(model_run.lock_path, f"run directory {model_run.staging_dir}"):
        return _execute_stages_locked(pipeline, result, calls, validate_stages, cleanup_on_failure, log)


def _execute_stages_locked(
    pipeline: PipelineBase,
    result: PipelineResult,
    calls: StageCalls,
    validate_stages: bool,
    cleanup_on_failure: bool,
    log: LineSink,
) -> PipelineResult:
    model_run = pipeline.config
    started = time.monotonic()
    stage = "setup"
    try:
        for stage in result.stages_requested:
            stage_start = time.monotonic()
            if stage == "generate":
                result.generated_files = calls.generate(
                    model_run, [*pipeline.forcing, *pipeline.data], pipeline.inputs, pipeline.cache_dir
                )
            elif stage == "run":
                if validate_stages:
                    check_inputs(model_run)
                result.run = calls.run(model_run, pipeline.backend)
            else:
                if validate_stages and pipeline.postprocessor:  # nothing to postprocess: nothing to check
                    check_outputs(model_run)
                for processor in pipeline.postprocessor:
                    result.postprocess[processor.processor] = calls.postprocess(model_run, processor)
            result.stages_completed.append(stage)
            result.timings.append(StageTiming(stage=stage, seconds=time.monotonic() - stage_start))
        result.status = "completed"
    except BaseException as err:
        failure = _with_stage_named(err, stage, model_run)
        result.error = "".join(traceback.format_exception_only(failure)).strip()
        if cleanup_on_failure:
            removed = remove_outputs(model_run)
            log(f"cleanup_on_failure: removed {len(removed)} output file(s); inputs and logs kept")
        if failure is not err:
            raise failure from err
        raise
    finally:
        result.timings.append(StageTiming(stage="total", seconds=time.monotonic() - started))
        try:
            if result.staging_dir.is_dir():
                manifest = write_manifest(result, pipeline)
                log(f"pipeline {result.status}: stages {result.stages_completed}; manifest {manifest}")
            else:  # e.g. the run stage before any generate: a manifest would make an unmarked directory
                log(f"pipeline {result.status}: no run directory {result.staging_dir}, so no manifest")
        except OSError as err:  # e.g. a full disk: say so, but keep the run's own outcome
            result.manifest_error = f"{result.staging_dir / MANIFEST_NAME}: {err.strerror or err}"
            log(f"could not write the run manifest {result.manifest_error}")
    return result


FULL_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _with_stage_named(err: BaseException, stage: str, model_run: ModelRun) -> BaseException:
    """A full disk or quota as one line naming the stage and the file (Python's `[Errno 28] No space
    left on device` names neither); any other error as it is."""
    if not isinstance(err, OSError) or err.errno not in FULL_DISK_ERRNOS:
        return err
    where = err.filename2 or err.filename or _newest_file(model_run.staging_dir)
    writing = f" while writing {where}" if where else ""
    try:
        free = f"{shutil.disk_usage(model_run.staging_dir).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return StageError(f"{stage} stage: {err.strerror}{writing} ({free} in {model_run.staging_dir})")


def _newest_file(directory: Path) -> Path | None:
    """The file written last under `directory`: where a write without a file name ran out of space."""
    newest: tuple[float, Path] | None = None
    for path in directory.rglob("*") if directory.is_dir() else []:
        try:
            if path.is_file() and not path.is_symlink() and (newest is None or path.stat().st_mtime > newest[0]):
                newest = (path.stat().st_mtime, path)
        except OSError:
            continue
    return newest[1] if newest else None


def completed_result(pipeline: PipelineBase) -> PipelineResult:
    """The result of a run known to have completed (a member's record), for a manifest written late."""
    result = new_result(pipeline, list(STAGES))
    result.status, result.stages_completed = "completed", list(STAGES)
    return result


def new_result(pipeline: PipelineBase, stages: list[str]) -> PipelineResult:
    """An empty result for a pipeline about to run `stages`."""
    run = pipeline.config
    return PipelineResult(run_id=run.run_id, staging_dir=run.staging_dir, status="failed", stages_requested=stages)
