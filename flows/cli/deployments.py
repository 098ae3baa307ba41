"""`rompy-tasks deployments`: deployment files for `prefect deploy`."""

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import connect_api, out, valid
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


@app.command("narrow-forms")
def deployments_narrow_forms() -> None:
    """Narrow each locked deployment's run form to what a UI user may set (run after `prefect deploy`).

    The form then shows the run controls (cycle, force, ...) first and `overrides` as typed fields
    of the deployment's allowed_overrides, pre-filled with the deployed values; the config itself
    stays as deployed. `prefect deploy` writes the full schema again: run this after each deploy.
    """
    connect_api()
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    from flows.run_form import narrowed_schema

    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            schema = narrowed_schema(deployment.parameter_openapi_schema or {}, deployment.parameters)
            if schema is None:
                continue
            client.update_deployment(deployment.id, DeploymentUpdate(parameter_openapi_schema=schema))
            fields = ", ".join(schema["properties"]["overrides"]["properties"])
            out.print(f"narrowed the run form of {deployment.name}: overrides {fields}", soft_wrap=True)
