"""A third-party rompy-tasks plugin: one backend, one rompy-style postprocessor."""

import json
from pathlib import Path
from typing import Literal

from rompy_tasks.backends.base import BaseBackendConfig, RunResult
from rompy_tasks.backends.process import execute_process


class EchoBackendConfig(BaseBackendConfig):
    """Runs the model locally after printing a banner line."""

    type: Literal["echo"] = "echo"
    banner: str = "echo-backend"

    def execute(self, run, on_line=None) -> RunResult:
        command = ["sh", "-c", 'echo "$0"; exec "$@"', self.banner, *run.config.run_command(run)]
        return execute_process(self, run, command, on_line=on_line, details={"banner": self.banner})


class CountFiles:
    """Counts the run's files matching a pattern (rompy's process(model_run, **kwargs) interface)."""

    def process(self, model_run, pattern="*", **kwargs):
        output_dir = Path(model_run.output_dir) / model_run.run_id
        files = sorted(p.name for p in output_dir.glob(pattern))
        (output_dir / "count.json").write_text(json.dumps({"pattern": pattern, "files": files}))
        return {"success": True, "count": len(files), "message": f"{len(files)} file(s) match {pattern}"}
