"""The static shape of a pipeline: what every pipeline file has, typed for readers and editors.

`plugins.pipeline_config_class()` builds the class that validates files by refining the
three plugin fields to discriminated unions of the installed plugins (model configs,
backends, postprocessors); code that runs a pipeline reads it through this base type, so
`pipeline.config` is a `ModelRun`, `pipeline.backend` a `BaseBackendConfig`, each
postprocessor a `BasePostprocessorConfig`.
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rompy_tasks.backends.base import BaseBackendConfig
from rompy_tasks.core.errors import field_error
from rompy_tasks.core.model_run import ModelRun
from rompy_tasks.core.time import seconds_type
from rompy_tasks.data.blocks import DataBlock, DataGrid, DataPoint
from rompy_tasks.forcing import ForcingSource
from rompy_tasks.inputs import StaticInput, cache_dir_problem
from rompy_tasks.postprocess.base import BasePostprocessorConfig

DataCut = ForcingSource | DataGrid | DataPoint
"""What the generate stage cuts out of a source into the run directory (`write(period, dir)`)."""


class PipelineBase(BaseModel):
    """A model run, the backend that executes it, and the postprocessors of its outputs."""

    model_config = ConfigDict(extra="forbid")

    config: ModelRun
    backend: BaseBackendConfig
    postprocessor: list[BasePostprocessorConfig] = Field(
        default_factory=list, description="Postprocessors run in order after the model"
    )
    forcing: list[ForcingSource] = Field(
        default_factory=list, description="Forcing data cut to the run period in the generate stage"
    )
    data: list[DataBlock] = Field(
        default_factory=list,
        description="rompy's data blocks (DataGrid, DataPoint): a source cut to the run period (and a grid's bbox) "
        "with rompy's filters, written to <id>.nc in the generate stage",
    )
    inputs: list[StaticInput] = Field(
        default_factory=list,
        description="Static files by URI (rompy's DataBlobs: bathymetry, grids), fetched once into the cache "
        "and linked into the run directory in the generate stage",
    )
    cache_dir: Path | None = Field(
        None,
        description="The inputs' cache (default: ROMPY_TASKS_CACHE_DIR, else the user's data directory); "
        "yours alone: a link, another user's or a group- or world-writable directory is refused",
    )
    run_retries: int = Field(0, ge=0, le=10, description="Retries of the run stage after a failure")
    run_retry_delay_seconds: seconds_type(0, 3600) = Field(  # type: ignore[valid-type]
        10.0, description="Seconds (or a duration) between tries"
    )

    @field_validator("cache_dir")
    @classmethod
    def _cache_dir_private(cls, value: Path | None) -> Path | None:
        if value is not None and (problem := cache_dir_problem(value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _mpi_ranks_agree(self) -> "PipelineBase":
        """A model decomposed into N ranks is started as N ranks: a mismatch would fail (or hang)
        only once the job runs, after the queue."""
        declared = self.config.config.mpi_ranks()
        started = self.backend.model_ranks()
        if declared is None or started is None or declared[1] == started:
            return self
        field, ranks = declared
        problem = (
            f"the model is decomposed into {ranks} MPI rank(s) but the {self.backend.type} backend starts {started} "
            "(local: mpiexec with ntasks, docker: mpiexec with cpu, slurm: ntasks)"
        )
        raise field_error(type(self).__name__, ("config", "config", field), problem, getattr(self.config.config, field))
