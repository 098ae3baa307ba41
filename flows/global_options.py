"""rompy's common options, taken anywhere on the command line (as rompy users type them, after the verb).

`-v` shows INFO records of every run on the terminal (ensemble members' lines too) and the
traceback of a failure; `-vv` DEBUG as well. `--version`, `--log-dir DIR` (`ROMPY_LOG_DIR`: the
command's log records, DEBUG and up, also to a file there), `--show-warnings/--hide-warnings`,
`--ascii-only/--unicode` (`ROMPY_ASCII_ONLY`), `--simple-logs/--detailed-logs`
(`ROMPY_SIMPLE_LOGS`: messages without time and logger), `--config-from-env` (the file's
content from `ROMPY_CONFIG`) and `ROMPY_LOG_LEVEL` mean what they mean in rompy.

Stdlib only: the `rompy-tasks` client (flows/entry.py) skips them to find the command.
"""

import os
from dataclasses import dataclass

LEVELS = {"DEBUG": 2, "INFO": 1, "WARNING": 0, "ERROR": 0, "CRITICAL": 0}
FLAGS = {
    "--show-warnings": ("show_warnings", True),
    "--hide-warnings": ("show_warnings", False),
    "--ascii-only": ("ascii_only", True),
    "--unicode": ("ascii_only", False),
    "--simple-logs": ("simple_logs", True),
    "--detailed-logs": ("simple_logs", False),
    "--config-from-env": ("config_from_env", True),
    "--version": ("version", True),
}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class GlobalOptions:
    verbosity: int = 0
    log_dir: str | None = None
    show_warnings: bool = False
    ascii_only: bool = False
    simple_logs: bool = False
    config_from_env: bool = False
    version: bool = False

    @classmethod
    def from_environment(cls) -> "GlobalOptions":
        level = os.environ.get("ROMPY_LOG_LEVEL", "").strip().upper()
        return cls(
            verbosity=LEVELS.get(level, 0),
            log_dir=os.environ.get("ROMPY_LOG_DIR") or None,
            ascii_only=_env_true("ROMPY_ASCII_ONLY"),
            simple_logs=_env_true("ROMPY_SIMPLE_LOGS"),
        )


def split_global_options(argv: list[str]) -> tuple[list[str], GlobalOptions]:
    """The command line without the global options, and the options (over the environment's).

    Only whole tokens before a `--` are taken; an option's value (`--set a=-v`) is never one.
    """
    options = GlobalOptions.from_environment()
    rest: list[str] = []
    count = 0  # -v / -vv / --verbose given: they replace ROMPY_LOG_LEVEL
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            rest += [token, *tokens]
            break
        if token == "--verbose":
            count += 1
        elif len(token) > 1 and token[0] == "-" and set(token[1:]) == {"v"}:
            count += len(token) - 1
        elif token in FLAGS:
            name, value = FLAGS[token]
            setattr(options, name, value)
        elif token == "--log-dir":
            options.log_dir = next(tokens, None)
        elif token.startswith("--log-dir="):
            options.log_dir = token.split("=", 1)[1]
        else:
            rest.append(token)
            if token == "--set":
                rest.append(next(tokens, ""))  # its value, whatever it looks like
    if count:
        options.verbosity = count
    return rest, options
