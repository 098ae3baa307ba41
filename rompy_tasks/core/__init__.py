"""Prefect-free domain model: time, model runs, model configs, templates, loading, errors.

Nothing in this package imports Prefect, so validating a config is fast and testable alone.
"""
