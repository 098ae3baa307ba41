"""What the command groups share: consoles, exit codes, options, loading with exit 2, running a flow.

Exit codes: 0 success, 1 the run failed, 2 invalid input (every problem printed with its
field path; nothing written, nothing started).
"""

import os
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from flows.global_options import GlobalOptions
from rompy_tasks.core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent.parent

out = Console()
err = Console(stderr=True)


def reset_consoles() -> None:
    """Make the consoles anew for this terminal and environment (a warm command inherits the ones
    made at import). In place, so every module that imported `out` and `err` sees the new ones."""
    out.__init__()
    err.__init__(stderr=True)


EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
LOCAL_SERVER_RETRIES = 3
OPTIONS = GlobalOptions()  # rompy's common options of this command (root.main sets them)


def apply_global_options(options: GlobalOptions) -> None:
    """`--version` (exit 0), warnings, ASCII output and `--log-dir` for this command."""
    import logging
    import warnings

    vars(OPTIONS).update(vars(options))
    if options.version:
        out.print(f"rompy-tasks {_version('rompy-tasks')} (prefect {_version('prefect')}, rompy {_version('rompy')})")
        sys.exit(EXIT_OK)  # before the app: a SystemExit, as the app's own exits are
    warnings.simplefilter("default" if options.show_warnings else "ignore", DeprecationWarning)
    if options.ascii_only:
        import io

        for console, stream in ((out, sys.stdout), (err, sys.stderr)):
            ascii_stream = io.TextIOWrapper(stream.buffer, encoding="ascii", errors="replace", line_buffering=True)
            console.__init__(file=ascii_stream, stderr=console is err)
    if options.log_dir:
        from datetime import UTC, datetime

        directory = Path(options.log_dir).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        handler = logging.FileHandler(directory / f"rompy-tasks-{stamp}-{os.getpid()}.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def console_level_for(default: int) -> int:
    """The terminal's log level: `-v` INFO, `-vv` DEBUG, else the command's own `default`."""
    import logging

    return {0: default, 1: logging.INFO}.get(OPTIONS.verbosity, logging.DEBUG)


SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a field: path.to.field=value (repeatable)")
]


def invalid(error: ConfigError) -> typer.Exit:
    where = f" in {escape(error.source)}" if error.source else ""
    # soft_wrap: a path or message stays on one line, whole, for copy and grep
    err.print(f"[bold red]Invalid configuration{where}[/] ({len(error.problems)} problem(s)):", soft_wrap=True)
    for problem in error.problems:
        loc, msg = escape(problem.loc or "(document)"), escape(problem.msg)
        err.print(f"  [yellow]{loc}[/]: {msg}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_INVALID)


def valid(load: Callable[..., Any], *args: Any) -> Any:
    """`load(*args)`, or exit 2 listing every problem."""
    try:
        return load(*args)
    except ConfigError as error:
        raise invalid(error) from None


def outcome(state: Any, title: str) -> Any:
    """The flow's result, or exit 1 after printing why it failed."""
    if not state.is_completed():
        reason = state.message
        try:
            state.result()
        except BaseException as error:  # noqa: BLE001 - shown to the user, exit code says the rest
            reason = f"{type(error).__name__}: {error}"  # once: the state's message repeats it
            if OPTIONS.verbosity:
                err.print_exception()
        err.print(f"[bold red]{title} failed[/]: ", end="")
        err.print(reason, highlight=False, markup=False, soft_wrap=True)  # paths stay whole for copy and grep
        raise typer.Exit(EXIT_FAILED)
    return state.result()


def terminate_as_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C, so the model's process tree is killed on the way out."""
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def connect_api() -> None:
    """Point this command at the configured Prefect API, or at the reused local server.

    Done before Prefect is imported, so every thread of the command sees the same API.
    """
    from rompy_tasks import local_server

    configured = local_server.configured_api_url()
    if configured:
        if not local_server.healthy(configured.rstrip("/"), timeout=5.0):
            err.print(
                f"[bold red]The Prefect API at {configured} does not answer[/] (PREFECT_API_URL or your Prefect "
                "profile). Start that server, or unset PREFECT_API_URL to use the local server rompy-tasks starts.",
                highlight=False,
            )
            raise typer.Exit(EXIT_FAILED)
        return
    try:
        info, started = local_server.start()
    except RuntimeError as error:  # also UnsafeDataDir: the data directory is not private
        err.print(f"[bold red]{error}[/]")
        raise typer.Exit(EXIT_FAILED) from None
    if started:
        err.print(
            f"Started a local Prefect server for this and later commands: UI {info.ui_url}, "
            f"log {local_server.log_path()}. Stop it with `rompy-tasks server stop`.",
            highlight=False,
        )
    os.environ["PREFECT_API_URL"] = info.api_url
    os.environ["PREFECT_API_AUTH_STRING"] = local_server.auth_string()  # inherited by workers, never logged
    # A request to a server that went away is retried after 2, 4 and 8 s (Prefect's 5 retries wait
    # 62 s per request): long enough for `server stop; server start`, short enough to end promptly.
    os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", str(LOCAL_SERVER_RETRIES))
    if "prefect.context" in sys.modules:  # imported already (a warm command process): read the API URL again
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def run_flow(
    call: Callable[..., Any], rule: str, title: str, *around: AbstractContextManager, quiet: bool = False
) -> Any:
    """Run a flow from the command line: its result, or exit 1 saying why `title` failed.

    Prints `rule` first and runs inside the `around` contexts (progress bars). The terminal shows
    INFO records (WARNING if `quiet`: an ensemble's members would flood it), or what `-v` asks.
    SIGTERM unwinds like Ctrl-C. No flow heartbeat: it tells a server that a flow's process is
    alive and costs about a second to stop, most of a short run's overhead; the guard marks a
    dead command's runs Crashed instead. Deployment runs (started by a worker) keep it.
    """
    import logging

    import httpx
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.progress import console_level

    err.rule(rule)
    signal.signal(signal.SIGTERM, terminate_as_interrupt)
    with ExitStack() as stack:
        level = console_level_for(logging.WARNING if quiet else logging.INFO)
        stack.enter_context(console_level(level, simple=OPTIONS.simple_logs, tracebacks=OPTIONS.verbosity > 0))
        for context in around:
            stack.enter_context(context)
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            try:
                state = call(return_state=True)
            except httpx.TransportError as error:  # the API went away mid-run: one clear line, no traceback
                err.print(
                    f"[bold red]{title} stopped[/]: the Prefect API at {os.environ.get('PREFECT_API_URL', '?')} "
                    f"stopped answering ({type(error).__name__}); what the run wrote stays in its run directory",
                    highlight=False,
                    soft_wrap=True,
                )
                if OPTIONS.verbosity:
                    err.print_exception()
                raise typer.Exit(EXIT_FAILED) from None
    return outcome(state, title)


BackendConfigOption = Annotated[
    Path | None, typer.Option("--backend-config", help="A backend file (rompy's) replacing the file's backend")
]


def load_forecast_file(file: Path, overrides: list[str] | None) -> Any:
    from rompy_tasks.forecast import load_forecast

    return valid(load_forecast, file, overrides)


def parse_time(option: str, text: str) -> Any:
    """An ISO 8601 time (`2026-01-02`, `2026-01-02T12`, `2026-01-02T12:00Z`); UTC unless it says otherwise."""
    from datetime import datetime

    from rompy_tasks.core.time import as_utc

    try:
        return as_utc(datetime.fromisoformat(text.strip().replace("z", "Z")))
    except ValueError:
        raise invalid(ConfigError.single(option, f"{text!r} is not an ISO 8601 time such as 2026-01-02T12")) from None


def parse_duration_option(option: str, text: str) -> Any:
    """A duration option (`2h`, `PT30M`, `01:30:00`, seconds), or exit 2 naming the option."""
    from rompy_tasks.core.time import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise invalid(ConfigError.single(option, str(error))) from None
