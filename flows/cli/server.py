"""`rompy-tasks server`: the local Prefect server that commands reuse."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from flows import command_socket
from flows.cli.common import EXIT_FAILED, err, out

app = typer.Typer(no_args_is_help=True, help="The local Prefect server that commands reuse")


@contextmanager
def _private_data() -> Iterator[None]:
    """Exit 1 with the reason when the data directory is not private to this user."""
    from rompy_tasks.data_dir import UnsafeDataDir

    try:
        yield
    except UnsafeDataDir as error:
        err.print(f"[bold red]{error}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None


def _login_hint(local_server: Any) -> None:
    where = local_server.auth_path()
    out.print(
        f"UI login: the auth string in {where} (the whole line; readable by you only)",
        highlight=False,
        soft_wrap=True,
    )


@app.command("start")
def server_start() -> None:
    """Start the local Prefect server (loopback only) unless it runs; print where it is."""
    from rompy_tasks import local_server

    with _private_data():
        info, started = local_server.start()
    out.print(f"{'started' if started else 'running'}: UI {info.ui_url}  API {info.api_url}  pid {info.pid}")
    out.print(f"home {local_server.server_dir()}  log {local_server.log_path()}", highlight=False, soft_wrap=True)
    _login_hint(local_server)
    out.print("stop it with `rompy-tasks server stop`")


@app.command("prepare")
def server_prepare() -> None:
    """Initialise the server home template once, so a first start is quick (scripts/setup runs this)."""
    from rompy_tasks import local_server

    template, made = local_server.prepare_template()
    out.print(f"{'prepared' if made else 'ready'}: {template}", highlight=False, soft_wrap=True)


@app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server (run history stays in its database) and the warm command processes."""
    from rompy_tasks import local_server

    with _private_data():
        command_socket.stop_all()
        info = local_server.stop()
    out.print(
        f"stopped the local Prefect server (pid {info.pid})" if info else "the local Prefect server was not running"
    )


@app.command("status")
def server_status() -> None:
    """Say whether the local Prefect server runs (exit 0) or not (exit 1)."""
    from rompy_tasks import local_server

    with _private_data():
        info = local_server.status()
    if info is None:
        out.print("the local Prefect server is not running (it starts with the first `rompy-tasks run`)")
        raise typer.Exit(EXIT_FAILED)
    out.print(f"running: UI {info.ui_url}  API {info.api_url}  pid {info.pid}  log {local_server.log_path()}")
    _login_hint(local_server)
