"""Subflows run without Prefect flow heartbeats.

A subflow runs in its parent's process, and the parent flow run's heartbeat already tells
the API that process is alive. Each heartbeat thread also costs up to 1 s to stop (it sleeps
in whole seconds and the engine joins it), which dominated short ensemble members and
postprocessors (measured: 1.17 s -> 0.39 s per shell pipeline). The top-level flow keeps its
heartbeat.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings


@contextmanager
def subflow_context() -> Iterator[None]:
    """Call subflows inside this (it is per thread/context, like Prefect's settings)."""
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
