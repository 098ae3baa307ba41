"""Install the forecast's alerts (deployments/alerts.yaml) as Prefect automations (issue 14.7).

The automations live in a file, as code; installing fills in the webhook's notification block,
the deployment's name and the overdue window (by default 1.5 cycle intervals of the forecast),
and replaces automations of the same name, so installing twice leaves one of each.
"""

from datetime import timedelta
from pathlib import Path
from uuid import UUID

from prefect import get_client
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.schemas.automations import AutomationCore
from pydantic import ValidationError

from rompy_tasks.core.errors import ConfigError
from rompy_tasks.core.loader import load_document
from rompy_tasks.core.time import duration_text, parse_duration

BLOCK_NAME = "rompy-tasks-alerts"
NO_BLOCK_YET = UUID(int=0)  # validating the file before the block exists


def load_automations(
    automations_file: Path, overdue: timedelta, deployment: str, block_id: UUID = NO_BLOCK_YET
) -> list[AutomationCore]:
    """The automations of `automations_file`, filled in and validated (ConfigError naming the problems)."""
    values = {
        "ALERT_BLOCK_ID": str(block_id),
        "DEPLOYMENT": deployment,
        "OVERDUE_SECONDS": str(int(overdue.total_seconds())),
        "OVERDUE_WINDOW": duration_text(overdue.total_seconds()),
    }
    specs = load_document(automations_file, environ=values).get("automations") or []
    try:
        for spec in specs:  # `within` may be written as a duration (`18h`; a filled-in variable is text)
            trigger = spec.get("trigger") if isinstance(spec, dict) else None
            if isinstance(trigger, dict) and isinstance(trigger.get("within"), str):
                trigger["within"] = parse_duration(trigger["within"].strip())
        return [AutomationCore.model_validate(spec) for spec in specs]
    except ValidationError as error:
        raise ConfigError.from_validation(error, prefix=("automations",), source=str(automations_file)) from None
    except ValueError as error:
        raise ConfigError.single("automations", str(error), str(automations_file)) from None


def install_alerts(webhook_url: str, automations_file: Path, overdue: timedelta, deployment: str) -> list[str]:
    """Create (or replace) the notification block and the automations; return their names.

    The file is validated before anything is created.
    """
    if not load_automations(automations_file, overdue, deployment):
        raise ConfigError.single("automations", "no automations in the file", str(automations_file))
    block = CustomWebhookNotificationBlock(
        name=BLOCK_NAME, url=webhook_url, method="POST", json_data={"subject": "{{subject}}", "body": "{{body}}"}
    )
    automations = load_automations(automations_file, overdue, deployment, block.save(BLOCK_NAME, overwrite=True))
    with get_client(sync_client=True) as client:
        for automation in automations:
            for existing in client.read_automations_by_name(automation.name):
                client.delete_automation(existing.id)
            client.create_automation(automation)
    return [automation.name for automation in automations]
