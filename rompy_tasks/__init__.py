"""rompy-tasks: Prefect-native orchestration of ocean, wave and coastal model runs."""

__version__ = "0.1.0"
