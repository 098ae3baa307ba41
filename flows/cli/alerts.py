"""`rompy-tasks alerts`: forecast alerts as Prefect automations."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from flows.cli.common import REPO, connect_api, load_forecast_file, out, parse_duration_option, valid

app = typer.Typer(no_args_is_help=True, help="Alerts on forecast cycles (Prefect automations)")


@app.command("install")
def alerts_install(
    webhook: Annotated[str, typer.Argument(help="URL that receives a JSON POST {subject, body} per alert")],
    file: Annotated[Path, typer.Option(help="The automations, as code")] = REPO / "deployments" / "alerts.yaml",
    forecast: Annotated[Path, typer.Option(help="The forecast (its cycle interval sets the overdue window)")] = (
        REPO / "examples" / "veros-forecast" / "forecast.yaml"
    ),
    deployment: Annotated[str, typer.Option(help="The forecast deployment's name")] = "veros-acc-forecast",
    overdue_after: Annotated[
        str | None, typer.Option(help="Alert when no cycle completed for this long (default: 1.5 cycle intervals)")
    ] = None,
) -> None:
    """Notify WEBHOOK when a forecast cycle fails, crashes or is skipped, or none completes in time."""
    config = load_forecast_file(forecast, None)
    overdue = parse_duration_option("--overdue-after", overdue_after) if overdue_after else 1.5 * config.cycle_interval
    connect_api()
    from flows.alerts import install_alerts

    for name in valid(install_alerts, webhook, file, overdue, deployment):
        out.print(f"installed automation: {escape(name)}", soft_wrap=True)
