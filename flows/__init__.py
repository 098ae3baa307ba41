"""Prefect flows (pipeline, postprocess subflows) and the CLI, the composition root.

Importing this package sets Prefect defaults that our prefect.toml also sets, so that the
CLI behaves the same from any directory: no analytics, and a start-up timeout long
enough for the temporary API server on a fresh database.
"""

import os


def set_prefect_defaults() -> None:
    """Our defaults, unless the environment says otherwise (again in each warm command: flows/warm.py)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


set_prefect_defaults()
