"""`rompy-tasks deployments`: deployment files for `prefect deploy`."""

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import out, valid
from rompy_tasks.core.loader import load_document

app = typer.Typer(no_args_is_help=True, help="Prefect deployment files (prefect.yaml)")


@app.command("render")
def deployments_render(
    file: Annotated[Path, typer.Argument(help="A prefect.yaml that uses !include or ${VAR}")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the plain prefect.yaml")],
) -> None:
    """Resolve `!include` and `${VAR}` in a prefect.yaml for `prefect deploy`, which reads neither.

    So a deployment and the CLI share one file (deployments/prefect.yaml includes the forecast
    of examples/veros-forecast/forecast.yaml). Prefect's own `{{ ... }}` templates are kept, and
    so is a forecast's `${CYCLE...}`, set when each cycle runs.
    """
    import yaml

    from rompy_tasks.forecast import CYCLE_VARIABLE

    data = valid(load_document, file, None, (CYCLE_VARIABLE,))
    output.write_text(f"# Rendered from {file} by `rompy-tasks deployments render`; edit that file.\n")
    with output.open("a") as handle:
        yaml.safe_dump(data, handle, sort_keys=False, width=120)
    out.print(f"wrote {output}", soft_wrap=True)
