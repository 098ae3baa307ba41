"""`noop`: do nothing but check that the model produced outputs."""

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from rompy_tasks.core.errors import StageError
from rompy_tasks.core.model_run import output_files
from rompy_tasks.postprocess.base import BasePostprocessorConfig

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun


class NoopConfig(BasePostprocessorConfig):
    processor: Literal["noop"] = "noop"
    validate_outputs: bool = Field(True, description="Fail when the model wrote no output files")

    def process(self, run: "ModelRun") -> dict[str, Any]:
        files = output_files(run)
        if self.validate_outputs and not files:
            raise StageError(f"no outputs in {run.staging_dir} matching {run.config.output_patterns()}")
        return {
            "success": True,
            "message": f"{len(files)} output file(s) present",
            "files": [str(f) for f in files],
        }
