import io
import logging

from rich.console import Console
from rich.progress import Progress

from flows.progress import _ProgressHandler, pipeline_progress


def record(message: str, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("prefect.task_runs", logging.INFO, __file__, 1, message, None, None)
    rec.__dict__.update(extra)
    return rec


def test_stage_and_model_percent_drive_the_bar():
    progress = Progress(console=Console(file=io.StringIO()))
    handler = _ProgressHandler(progress, "r1")
    task = progress.tasks[0]
    handler.emit(record("generated 3 files", task_run_name="generate-r1"))
    assert task.description == "r1: generate" and task.completed == 0
    handler.emit(record(" Current iteration: 5 (2.50/10.00d | 25.0% | 1.4m)", task_run_name="run-r1"))
    assert task.description == "r1: run" and task.completed == 25.0
    handler.emit(record("archived 11 files, 100% done", flow_run_name="archive-r1"))
    assert task.description == "r1: archive" and task.completed == 25.0, "only model lines move the bar"
    handler.emit(record("pipeline completed", flow_run_name="r1"))
    assert task.description == "r1: archive"


def test_no_live_display_when_not_a_terminal():
    console = Console(file=io.StringIO(), force_terminal=False)
    with pipeline_progress(console, "r1"):
        logging.getLogger("prefect").info("hello")
    assert console.file.getvalue() == ""
