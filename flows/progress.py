"""A live progress bar for `rompy-tasks run` in a terminal, fed by Prefect's own log records.

The stage comes from the task or subflow run name of each record (`generate-…`, `run-…`,
`<postprocessor>-…`); the model's progress from a percentage in its output lines (Veros
prints `50.0%`, as many models do). Prefect's console handlers are pointed at the same rich
console, so log lines scroll above the bar instead of tearing it.
"""

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.logging.handlers import PrefectConsoleHandler
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s?%")


class _ProgressHandler(logging.Handler):
    def __init__(self, progress: Progress, run_id: str):
        super().__init__(level=logging.INFO)
        self.progress = progress
        self.run_id = run_id
        self.bar = progress.add_task(f"{run_id}: starting", total=100)

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "task_run_name", None) or getattr(record, "flow_run_name", None) or ""
        stage = name.removesuffix(f"-{self.run_id}") if name.endswith(f"-{self.run_id}") else None
        update: dict = {}
        if stage:
            update["description"] = f"{self.run_id}: {stage}"
        match = PERCENT.search(record.getMessage()) if stage == "run" else None
        if match and float(match.group(1)) <= 100:
            update["completed"] = float(match.group(1))
        if update:
            self.progress.update(self.bar, **update)


@contextmanager
def pipeline_progress(console: Console, run_id: str) -> Iterator[None]:
    """Show a progress bar while the pipeline runs (only on a terminal)."""
    if not console.is_terminal:
        yield
        return
    prefect_logger = logging.getLogger("prefect")
    loggers = [logging.root, *logging.root.manager.loggerDict.values()]
    handlers = [
        h
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for h in logger.handlers
        if isinstance(h, PrefectConsoleHandler)
    ]
    previous = [h.console for h in handlers]
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    handler = _ProgressHandler(progress, run_id)
    for h in handlers:
        h.console = console
    prefect_logger.addHandler(handler)
    try:
        with progress:
            yield
            progress.update(handler.bar, completed=100, description=f"{run_id}: done")
    finally:
        prefect_logger.removeHandler(handler)
        for h, old in zip(handlers, previous, strict=True):
            h.console = old
