"""Prefect flows (pipeline, postprocess subflows) and the CLI, the composition root.

Importing this package sets Prefect defaults that our prefect.toml also sets, so that the
CLI behaves the same from any directory: no analytics, and a start-up timeout long
enough for the temporary API server on a fresh database.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
