"""Secrets referenced by name, resolved only where the model starts (issue 11.6).

A config never holds a secret's value: `secret_env: {TOKEN: "env:CMEMS_TOKEN"}` names where
the value lives, and only that reference reaches the manifest, the Prefect API, records and
logs. The value is read at the moment the model's environment is built, in the process that
starts it, and goes nowhere but that environment.

Sources: `env:NAME` (the orchestrating process's environment: the CLI's, the Prefect worker's,
or the SLURM job's) and `prefect-secret:BLOCK` (a Prefect Secret block, registered by the
Prefect-aware layer through `register_secret_source`, since `core` does not import Prefect).
"""

import os
import re
from collections.abc import Callable, Mapping
from typing import Annotated
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from pydantic import AfterValidator

from rompy_tasks.core.errors import StageError

SECRET_REF_HELP = "where a secret's value lives: env:VARIABLE or prefect-secret:BLOCK-NAME (never the value)"
_REF = re.compile(r"(env:[A-Za-z_][A-Za-z0-9_]*|prefect-secret:[a-z0-9][a-z0-9-]*)")


def _check_ref(value: str) -> str:
    if not _REF.fullmatch(value):  # the message never repeats the value: it may be the secret itself
        raise ValueError(f"must be a reference, {SECRET_REF_HELP}")
    return value


SecretRef = Annotated[str, AfterValidator(_check_ref)]
REDACTED = "***"

_SOURCES: dict[str, Callable[[str], str]] = {}


def register_secret_source(scheme: str, read: Callable[[str], str]) -> None:
    """Make `scheme:NAME` references resolvable by `read(NAME)`."""
    _SOURCES[scheme] = read


def _from_environment(name: str) -> str:
    if name not in os.environ:
        raise KeyError(f"environment variable {name} is not set where the model starts")
    return os.environ[name]


register_secret_source("env", _from_environment)


def resolve_secrets(refs: Mapping[str, str], field: str) -> dict[str, str]:
    """The values behind `refs` (variable name -> reference); a failure names the field, never a value."""
    values = {}
    for variable, ref in refs.items():
        scheme, _, name = ref.partition(":")
        read = _SOURCES.get(scheme)
        if read is None:
            raise StageError(f"{field}.{variable}: {scheme}: references resolve only inside a Prefect flow")
        try:
            values[variable] = read(name)
        except Exception as err:  # any source failure: say which reference, not more
            raise StageError(f"{field}.{variable}: cannot read the secret {ref}: {err}") from None
    return values


def redact_url(url: str) -> str:
    """`url` with a password and every query value hidden, for logs, records and file attributes."""
    parts = urlsplit(url)
    if not parts.scheme or (parts.password is None and not parts.query):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:{REDACTED}@{netloc.rpartition('@')[2]}"
    query = urlencode([(key, REDACTED) for key, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment).geturl()
