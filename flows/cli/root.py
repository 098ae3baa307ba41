"""The `rompy-tasks` command line: the root app, its command groups, and how a command exits.

Exit codes: 0 success, 1 the run failed, 2 invalid input (every problem printed with its
field path; nothing written, nothing started). rompy's common options (`-v`, `--log-dir`, ...,
flows/global_options.py) are taken wherever they stand, as in rompy after the verb.
"""

import os
import sys
import time

import typer

from flows import command_socket
from flows.cli import alerts, backends, cache, deployments, engine, ensemble, forecast, run, server
from flows.cli.common import EXIT_FAILED, apply_global_options
from flows.global_options import split_global_options

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Prefect-native ocean/wave/coastal model runs")
app.add_typer(run.app)  # run, generate, postprocess, pipeline, validate, schema, plugins
app.add_typer(backends.app, name="backends")
app.add_typer(ensemble.app, name="ensemble")
app.add_typer(forecast.app, name="forecast")
app.add_typer(server.app, name="server")
app.add_typer(deployments.app, name="deployments")
app.add_typer(alerts.app, name="alerts")
app.add_typer(cache.app, name="cache")
app.add_typer(engine.app)  # engine: a worker's flow run (hidden)
EXIT_JOIN_SECONDS = 10.0


def _exit_now(code: int) -> None:
    """Exit once Prefect's exit handlers have delivered logs and events, skipping interpreter teardown.

    Tearing down the modules of Prefect and its dependencies takes about half a second.
    """
    import atexit
    import threading

    deadline = time.monotonic() + EXIT_JOIN_SECONDS  # a thread that never ends must not hold the exit
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    for hook in command_socket.EXIT_HOOKS:
        hook(code)
    os._exit(code)


GROUPS = {"backends", "ensemble", "forecast", "server", "deployments", "alerts", "cache"}


def main() -> None:
    argv, options = split_global_options(sys.argv[1:])
    if options.config_from_env and argv:  # the file's place: after the command (and its group)
        from rompy_tasks.core.loader import FROM_ENVIRONMENT

        where = 2 if argv[0] in GROUPS and len(argv) > 1 else 1
        argv.insert(where, FROM_ENVIRONMENT)
    sys.argv = [sys.argv[0], *argv]
    try:
        apply_global_options(options)
        app()
    except SystemExit as exit_:
        code = exit_.code
    else:
        code = 0
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = EXIT_FAILED
    _exit_now(code or 0)


if __name__ == "__main__":
    main()
