"""Ensembles: many members of one pipeline (Prefect-free: config, members, records).

An ensemble file holds a base `pipeline` and how members differ from it: an explicit list of
field overrides (dotted paths), a parameter `matrix` (cartesian product), or `n` members with
a seed field. Every member's pipeline is validated when the file is loaded, so a bad override
is reported (with the member index) before anything runs. Member run directories live in
`<pipeline output_dir>/<ensemble name>/<member run id>`; completion records (with a hash of
the member's resolved config) live in `<ensemble dir>/records/` and make re-runs resume.
"""

import gc
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from rompy_tasks.backends.base import BaseBackendConfig
from rompy_tasks.core.errors import ConfigError, Problem
from rompy_tasks.core.loader import (
    apply_field_overrides,
    as_text,
    assigned_copy,
    given_fields,
    load_with_assignments,
)
from rompy_tasks.core.model_run import RunId
from rompy_tasks.core.records import read_record, write_record
from rompy_tasks.core.time import seconds_type
from rompy_tasks.pipeline import nested_pipeline_type, validate_data
from rompy_tasks.pipeline_config import PipelineBase
from rompy_tasks.postprocess.ensemble_stats import EnsembleStatsConfig

MAX_MEMBERS = 100_000  # members are checked one by one at load: a bound keeps `validate` quick and small


class ExplicitMembers(BaseModel):
    """One mapping of `dotted.path: value` per member."""

    model_config = ConfigDict(extra="forbid")
    overrides: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_MEMBERS)


class MatrixMembers(BaseModel):
    """The cartesian product of value lists, one member per combination."""

    model_config = ConfigDict(extra="forbid")
    matrix: dict[str, list[Any]] = Field(min_length=1)

    @field_validator("matrix")
    @classmethod
    def _no_empty_axis(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, v in value.items() if not v]
        if empty:
            raise ValueError(f"matrix axes without values: {', '.join(empty)}")
        count = math.prod(len(v) for v in value.values())
        if count > MAX_MEMBERS:
            raise ValueError(f"the matrix makes {count:,} members, more than {MAX_MEMBERS:,}")
        return value


class SeededMembers(BaseModel):
    """`n` members that differ only in a seed field (perturbed physics or forcing)."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(ge=1, le=MAX_MEMBERS)
    seed_field: str = Field("config.config.parameters.seed", description="Dotted path set to the seed")
    seed_start: int = 0


LOCAL_PARALLEL = 2  # members at once where they run in the flow's process (threads), unless max_parallel says


class EnsembleConfig(BaseModel):
    """An ensemble: the base pipeline, its members and how to run them."""

    model_config = ConfigDict(extra="forbid")

    name: RunId = Field(description="Ensemble directory name (as a run id)")
    pipeline: nested_pipeline_type() = Field(  # type: ignore[valid-type]
        description="The base pipeline (config, backend, postprocessor)"
    )
    members: ExplicitMembers | MatrixMembers | SeededMembers
    run_id_template: str = Field("{run_id}_m{index:03d}", description="Member run id, from run_id and index")
    max_parallel: int | None = Field(
        None,
        ge=1,
        le=10000,
        description=f"Members in flight at once. Default: {LOCAL_PARALLEL} on a backend that runs them here; on"
        " one with worker jobs (slurm), every member waits at the cluster and the jobs (max_jobs) decide how many run",
    )
    stagger_seconds: seconds_type(0, 3600) = Field(0.0, description="Delay between member starts (or a duration)")  # type: ignore[valid-type]
    retries: int = Field(0, ge=0, le=10, description="Retries of a failed member")
    retry_delay_seconds: seconds_type(0, 3600) = Field(0.0, description="Seconds (or a duration) between tries")  # type: ignore[valid-type]
    allow_failures: int = Field(0, ge=0, description="Failed members that still count as success")
    pre_batch: list[str] = Field(default_factory=list, description="Commands run in the ensemble dir first")
    post_batch: list[str] = Field(default_factory=list, description="Commands run in the ensemble dir last")
    indexes: list[int] | None = Field(None, description="Run only these members")
    postprocessor: list[EnsembleStatsConfig] = Field(default_factory=list)

    @field_validator("run_id_template")
    @classmethod
    def _template_names_fields(cls, value: str) -> str:
        names = {m.group(1) for m in re.finditer(r"\{(\w+)", value)}
        unknown = names - {"run_id", "index", "name"}
        if unknown:
            raise ValueError(f"run_id_template may use {{run_id}}, {{index}}, {{name}}; not {', '.join(unknown)}")
        if "index" not in names:
            raise ValueError("run_id_template must contain {index} so member run ids are unique")
        return value

    @model_validator(mode="after")
    def _workers_need_batch_jobs(self) -> "EnsembleConfig":
        backend = type(self.pipeline.backend)
        if backend.reduction_cluster is BaseBackendConfig.reduction_cluster:
            for i, processor in enumerate(self.postprocessor):
                if processor.workers is not None:
                    raise ValueError(
                        f"postprocessor[{i}].workers: statistics compute on batch jobs of a slurm backend; "
                        f"this ensemble's backend is {self.pipeline.backend.type!r} (leave workers out)"
                    )
        return self

    @model_validator(mode="after")
    def _indexes_in_range(self) -> "EnsembleConfig":
        if self.indexes is not None:
            count = member_count(self.members)
            bad = sorted(i for i in self.indexes if not 0 <= i < count)
            if bad:
                raise ValueError(f"indexes {bad} are outside 0..{count - 1}")
        return self


def member_count(members: ExplicitMembers | MatrixMembers | SeededMembers) -> int:
    if isinstance(members, ExplicitMembers):
        return len(members.overrides)
    if isinstance(members, MatrixMembers):
        count = 1
        for values in members.matrix.values():
            count *= len(values)
        return count
    return members.n


def member_overrides(members: ExplicitMembers | MatrixMembers | SeededMembers) -> list[dict[str, Any]]:
    """The field overrides of every member, in index order."""
    if isinstance(members, ExplicitMembers):
        return members.overrides
    if isinstance(members, MatrixMembers):
        keys = list(members.matrix)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*members.matrix.values())]
    return [{members.seed_field: members.seed_start + i} for i in range(members.n)]


class Member(BaseModel):
    """One resolved member: its pipeline (validated) and the hash of its resolved config."""

    index: int
    run_id: str
    overrides: dict[str, Any]
    pipeline: SerializeAsAny[PipelineBase]  # the plugin-refined pipeline, dumped as what it is

    @cached_property
    def config_hash(self) -> str:
        """The hash of the resolved config, computed when a record needs it (not at validation)."""
        return config_hash(self.pipeline)


def config_hash(pipeline: PipelineBase) -> str:
    """A stable hash of a member's resolved pipeline: what a completion record is checked against."""
    text = json.dumps(pipeline.model_dump(mode="json", fallback=as_text), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def ensemble_dir(ensemble: EnsembleConfig) -> Path:
    return ensemble.pipeline.config.output_dir.expanduser().absolute() / ensemble.name


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Validating 100,000 members makes millions of objects that all live on, and the cyclic
    collector walked them again and again: 40 % of the time. Reference counting still frees
    every acyclic object at once; the collector runs again when this ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def resolve_members(ensemble: EnsembleConfig) -> list[Member]:
    """Every member's validated pipeline; all problems of all members reported at once."""
    with _without_cyclic_gc():
        return _resolve_members(ensemble)


def _resolve_members(ensemble: EnsembleConfig) -> list[Member]:
    base = given_fields(ensemble.pipeline)
    base_run_id = ensemble.pipeline.config.run_id
    out_dir = str(ensemble_dir(ensemble))
    shared = ensemble.pipeline.backend.shared_settings()
    members, problems, seen = [], [], {}
    for index, overrides in enumerate(member_overrides(ensemble.members)):
        run_id = str(
            overrides.get("config.run_id")
            or ensemble.run_id_template.format(run_id=base_run_id, index=index, name=ensemble.name)
        )
        try:
            data = assigned_copy(base, overrides)
            # members own their directories (always a subdirectory): a re-run starts them clean
            run = data.get("config") if isinstance(data.get("config"), dict) else {}
            data["config"] = {**run, "run_id": run_id, "output_dir": out_dir, "delete_existing": True}
            data["config"]["run_id_subdir"] = True
            pipeline = validate_data(data)
        except ConfigError as err:
            problems += [Problem(f"members[{index}].{p.loc}", p.msg) for p in err.problems]
            continue
        if pipeline.backend.shared_settings() != shared:
            problems.append(
                Problem(
                    f"members[{index}].backend",
                    "members share the ensemble's backend (one cluster for all): "
                    "they may override only its timeout, env_vars, secret_env, working_dir and launcher",
                )
            )
            continue
        if run_id in seen:
            problems.append(Problem(f"members[{index}]", f"run id {run_id!r} repeats member {seen[run_id]}"))
            continue
        seen[run_id] = index
        members.append(
            Member(
                index=index,
                run_id=run_id,
                overrides=overrides,
                pipeline=pipeline,
            )
        )
    if problems:
        raise ConfigError(problems)
    return members


def validate_ensemble(data: dict[str, Any], source: str | None = None) -> EnsembleConfig:
    """Validate an ensemble mapping and every member's pipeline; one ConfigError lists all problems."""
    return _validated_with_members(data, source)[0]


def _validated_with_members(data: dict[str, Any], source: str | None) -> tuple[EnsembleConfig, list[Member]]:
    try:
        ensemble = EnsembleConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError.from_validation(err, data=data, source=source) from None
    try:
        return ensemble, resolve_members(ensemble)
    except ConfigError as err:
        raise ConfigError(err.problems, source) from None


def apply_ensemble_overrides(ensemble: EnsembleConfig, overrides: dict[str, Any]) -> EnsembleConfig:
    """`ensemble` with `dotted.path: value` overrides (the flow's `overrides` parameter)."""
    return apply_field_overrides(ensemble, overrides, validate_ensemble)


def load_ensemble(path: str | Path, overrides: list[str] | None = None) -> tuple[EnsembleConfig, list[Member]]:
    """Read, override (`a.b=c`), validate an ensemble file and resolve its members."""
    return _validated_with_members(load_with_assignments(path, overrides), str(path))


# --- completion records --------------------------------------------------------------------------


def records_dir(where: Path) -> Path:
    """The ensemble directory's member records and their history.log."""
    return where / "records"


def record_path(where: Path, run_id: str) -> Path:
    """A member's completion record in the ensemble directory `where`."""
    return records_dir(where) / f"{run_id}.json"


def is_complete(where: Path, member: Member) -> bool:
    """True if the member completed before with exactly this resolved config."""
    record = read_record(record_path(where, member.run_id)) or {}
    return record.get("config_hash") == member.config_hash and record.get("status") == "completed"


def write_member_record(where: Path, member: Member, **fields: Any) -> Path:
    """Write a member's completion record atomically (a kill mid-write leaves none, never half).

    Not fsynced: after a machine crash a record may be missing (the member runs again), never
    wrong; and fsync would not make the member's outputs durable either. It cost ~8 ms a member.
    """
    payload = {
        "run_id": member.run_id,
        "index": member.index,
        "config_hash": member.config_hash,
        "overrides": member.overrides,
        "written": datetime.now(UTC).isoformat(),
        **fields,
    }
    return write_record(record_path(where, member.run_id), payload, member_history_line(payload), durable=False)


def member_history_line(record: dict[str, Any]) -> str:
    """A member record's line in history.log: when, which member, its status, its config's hash."""
    return f"{record['written']} {record['run_id']} {record.get('status', '')} {record['config_hash'][:12]}"


def parse_indexes(text: str) -> list[int]:
    """`0,3-5` -> [0, 3, 4, 5]."""
    indexes: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                indexes += list(range(low, high + 1))
            else:
                indexes.append(int(part))
        except ValueError:
            raise ConfigError.single("--indexes", f"{part!r} is not an index or a range like 3-5") from None
    return sorted(set(indexes))
