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


class _EnsembleHandler(logging.Handler):
    """Counts members from their pipeline flow runs (named by run id)."""

    def __init__(self, progress: Progress, run_ids: list[str]):
        super().__init__(level=logging.INFO)
        self.progress = progress
        self.members = set(run_ids)
        self.running: set[str] = set()
        self.completed: set[str] = set()
        self.failed: set[str] = set()
        self.bar = progress.add_task(self._text(), total=len(run_ids))

    def _text(self) -> str:
        return f"members: {len(self.completed)} done, {len(self.failed)} failed, {len(self.running)} running"

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "flow_run_name", None)
        if name not in self.members or getattr(record, "task_run_name", None):
            return
        message = record.getMessage()
        if message.startswith("Beginning"):
            self.running.add(name)
            self.failed.discard(name)  # a retry
        elif message.startswith("Finished in state"):
            self.running.discard(name)
            (self.completed if "Completed" in message else self.failed).add(name)
        else:
            return
        self.progress.update(self.bar, completed=len(self.completed) + len(self.failed), description=self._text())


@contextmanager
def _live(console: Console, handler_factory) -> Iterator[None]:
    """Run a Progress on `console` fed by a log handler, with Prefect's console output above it."""
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
    handler = handler_factory(progress)
    for h in handlers:
        h.console = console
    prefect_logger.addHandler(handler)
    try:
        with progress:
            yield
    finally:
        prefect_logger.removeHandler(handler)
        for h, old in zip(handlers, previous, strict=True):
            h.console = old


def pipeline_progress(console: Console, run_id: str):
    """A bar for one pipeline: the stage, and the model's percentage while it runs."""
    return _live(console, lambda progress: _ProgressHandler(progress, run_id))


def ensemble_progress(console: Console, run_ids: list[str]):
    """A bar for an ensemble: members done / failed / running."""
    return _live(console, lambda progress: _EnsembleHandler(progress, run_ids))
