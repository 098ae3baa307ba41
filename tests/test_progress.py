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


def test_ensemble_bar_counts_member_task_runs_and_the_flows_end_lines():
    from flows.progress import _EnsembleHandler

    progress = Progress(console=Console(file=io.StringIO()))
    handler = _EnsembleHandler(progress, ["m0", "m1"])
    bar = progress.tasks[0]
    handler.emit(record("running shell on the local backend", task_run_name="m0"))
    assert "1 running" in bar.description
    handler.emit(record("member m0 completed after 1 attempt(s)", flow_run_name="ens"))
    handler.emit(record("member m1 failed after 2 attempt(s)", flow_run_name="ens"))
    handler.emit(record("member other completed after 1 attempt(s)", flow_run_name="ens"))
    assert bar.completed == 2 and "1 done, 1 failed, 0 running" in bar.description
