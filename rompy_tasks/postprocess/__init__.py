"""Postprocessors (registered under the `rompy_tasks.postprocess` entry-point group).

Each is a config class with a `processor` discriminator and a `process(run)` method that
returns a result dict. The flows layer runs each one as its own Prefect subflow and turns
the optional `table` and `markdown` entries of the result into artifacts.
"""
