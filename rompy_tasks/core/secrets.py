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


# Names of URL query parameters and fsspec options whose values are credentials (S3 and Azure keys,
# SAS signatures, tokens, connection strings).
CREDENTIAL_NAME = re.compile(
    r"(key|secret|password|passphrase|token|credential|connection_string|sas|sig|signature|auth)", re.IGNORECASE
)
CREDENTIALS_ELSEWHERE = (
    "credentials belong where the fetching process reads them (AWS_* or ~/.aws for S3, fsspec's FSSPEC_HTTP "
    "for HTTP headers, ~/.netrc for OPeNDAP), or by reference (secret_options, env:NAME), never in the config: "
    "it is kept in the run's record and the Prefect API"
)


def inline_credentials(url: str) -> str | None:
    """What of `url` is a credential written inline (a password, a token in its query); None if nothing."""
    if "://" not in url:
        return None
    parts = urlsplit(url)
    if parts.password is not None:
        return "a password"
    if named := sorted(
        {key for key, _ in parse_qsl(parts.query, keep_blank_values=True) if CREDENTIAL_NAME.search(key)}
    ):
        return f"credentials in its query ({', '.join(named)})"
    return None


def inline_credential_options(options: Mapping[str, object]) -> list[str]:
    """The fsspec options that hold credentials inline: by name (key, secret, sas, connection_string,
    ...), or a URL value with credentials (an endpoint_url with a password)."""
    return sorted(
        name
        for name, value in options.items()
        if CREDENTIAL_NAME.search(name) or (isinstance(value, str) and inline_credentials(value))
    )


def redact_urls(data: object) -> object:
    """JSON data with every URL in it redacted (`redact_url`): the one redaction of what a run records,
    whichever field (forcing, inputs, data blocks, publish) holds the URL."""
    if isinstance(data, dict):
        return {key: redact_urls(value) for key, value in data.items()}
    if isinstance(data, list):
        return [redact_urls(value) for value in data]
    if isinstance(data, str) and "://" in data:
        return redact_url(data)
    return data
