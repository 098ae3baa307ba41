"""`rompy-tasks engine FLOW_RUN_ID`: a deployment's flow run, run as `python -m prefect.engine` runs it.

Our work pools' process workers (flows/worker.py) start this instead of Prefect's engine command.
Like every flow command it is handed to the warm command process (flows/entry.py), which has
Prefect and our flows imported and forks it, so the run's process is ready in milliseconds
instead of the seconds a new interpreter spends importing them. What runs is Prefect's own
engine module as its `__main__`: loading the flow, its states, cancellation and crash
reporting are Prefect's.
"""

import runpy
import sys
import warnings
from typing import Annotated
from uuid import UUID

import typer

app = typer.Typer()  # merged into the root app


@app.command(hidden=True)
def engine(flow_run_id: Annotated[UUID, typer.Argument(help="The flow run to execute")]) -> None:
    """Execute a flow run as Prefect's engine does (our work pools' workers start this)."""
    sys.argv = ["prefect.engine", str(flow_run_id)]
    with warnings.catch_warnings():  # runpy: "found in sys.modules": imported already, on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        runpy.run_module("prefect.engine", run_name="__main__")
