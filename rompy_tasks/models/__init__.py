"""Model config plugins (registered under the `rompy_tasks.config` entry-point group)."""
