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
    """Counts members: a member's task run logging means it runs; the flow says when it ends."""

    ENDED = re.compile(r"^member (\S+) (completed|failed) after")

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
        name = getattr(record, "task_run_name", None)
        ended = self.ENDED.match(record.getMessage()) if name is None else None
        if ended and ended.group(1) in self.members:
            self.running.discard(ended.group(1))
            (self.completed if ended.group(2) == "completed" else self.failed).add(ended.group(1))
        elif name in self.members and name not in self.completed | self.failed:
            self.running.add(name)
        else:
            return
        self.progress.update(self.bar, completed=len(self.completed) + len(self.failed), description=self._text())


def _console_handlers() -> list[PrefectConsoleHandler]:
    """Prefect's console handlers, wherever its logging config attached them."""
    loggers = [logging.root, *logging.root.manager.loggerDict.values()]
    return [
        h
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for h in logger.handlers
        if isinstance(h, PrefectConsoleHandler)
    ]


@contextmanager
def _live(console: Console, handler_factory) -> Iterator[None]:
    """Run a Progress on `console` fed by a log handler, with Prefect's console output above it."""
    if not console.is_terminal:
        yield
        return
    prefect_logger = logging.getLogger("prefect")
    handlers = _console_handlers()
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


class _WithoutTraceback(logging.Formatter):
    """A console formatter that leaves out tracebacks: the user reads the one clear line (the
    API, the UI and `--log-dir` keep them; `-v` shows them)."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


@contextmanager
def console_level(level: int, simple: bool = False, tracebacks: bool = True) -> Iterator[None]:
    """Show only records of `level` and above on Prefect's console handlers (the API gets all);
    below INFO, Prefect's loggers pass DEBUG records too. `simple`: the message only (rompy's
    `--simple-logs`), no time, level or run name; without `tracebacks`, none on the terminal."""
    handlers = _console_handlers()
    previous = [(h.level, h.formatter) for h in handlers]
    prefect_logger = logging.getLogger("prefect")
    logger_level = prefect_logger.level
    if level < logging.INFO:
        prefect_logger.setLevel(level)
    for h in handlers:
        h.setLevel(level)
        formatter = logging.Formatter("%(message)s") if simple else h.formatter
        h.setFormatter(formatter if tracebacks else _WithoutTraceback(formatter))
    try:
        yield
    finally:
        prefect_logger.setLevel(logger_level)
        for h, (old, formatter) in zip(handlers, previous, strict=True):
            h.setLevel(old)
            h.setFormatter(formatter)


def pipeline_progress(console: Console, run_id: str):
    """A bar for one pipeline: the stage, and the model's percentage while it runs."""
    return _live(console, lambda progress: _ProgressHandler(progress, run_id))


def ensemble_progress(console: Console, run_ids: list[str]):
    """A bar for an ensemble: members done / failed / running."""
    return _live(console, lambda progress: _EnsembleHandler(progress, run_ids))
