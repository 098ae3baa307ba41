"""`publish`: upload a run's products to where others fetch them (an object store, a shared disk).

The destination is any fsspec URL (`s3://bucket/fc/{{ runtime.run_id }}`, `file:///data/products`,
`sftp://host/path`, or a plain path), templated like a command. Files go first, the manifest
(sha256 and size of each) last, so a consumer that sees `manifest.json` sees complete files; a
re-run removes the old manifest before it changes anything and skips files whose checksum the
previous manifest records and whose size the destination still shows. A forecast can remove old
cycles' products (`keep_published_cycles`): the manifest first, then the files it lists. Transient errors are
retried. Credentials are references (`secret_options: {key: env:AWS_ACCESS_KEY_ID}`), resolved
only while publishing: never in the config, the manifest, the logs or the API.
"""

import json
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

from rompy_tasks.core.config import RunDirGlob
from rompy_tasks.core.errors import StageError
from rompy_tasks.core.host_paths import host_access_problem
from rompy_tasks.core.model_run import files_matching
from rompy_tasks.core.secrets import SecretRef, inline_credential_options, redact_url, resolve_secrets
from rompy_tasks.core.templates import referenced_fields, render_string
from rompy_tasks.data.sources import SourceUrl, is_remote, local_path
from rompy_tasks.postprocess.archive import sha256_of
from rompy_tasks.postprocess.base import BasePostprocessorConfig

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun

MANIFEST = "manifest.json"
# not worth retrying: the same call fails the same way
_PERMANENT = (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError)
T = TypeVar("T")


class PublishConfig(BasePostprocessorConfig):
    """Upload the run's products to `destination`, the manifest last."""

    processor: Literal["publish"] = "publish"
    destination: SourceUrl = Field(
        description="fsspec URL or path of the directory to publish into; a template "
        "(`{{ runtime.run_id }}`, `{{ runtime.period.start.strftime('%Y%m%dT%H') }}`)"
    )
    files: list[RunDirGlob] = Field(min_length=1, description="Glob patterns (in the run directory) of the products")
    storage_options: dict[StrictStr, StrictStr | StrictInt | StrictFloat | StrictBool] = Field(
        default_factory=dict, description="fsspec options of the destination (endpoint_url, region, ...), no secrets"
    )
    secret_options: dict[StrictStr, SecretRef] = Field(
        default_factory=dict, description="fsspec options whose values are secrets, by reference (env:NAME)"
    )
    retries: int = Field(3, ge=0, le=10, description="Retries of a transiently failing upload")
    retry_delay_seconds: float = Field(2.0, ge=0, le=300, description="First retry delay; doubles each time")

    @field_validator("destination")
    @classmethod
    def _destination_usable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("destination must not be empty")
        if "://" in value and urlsplit(value).query:
            raise ValueError("credentials go in secret_options by reference, not in the destination URL")
        referenced_fields(value)  # a syntax error shows when the run checks its templates
        if not referenced_fields(value) and (local := _local_path(value)) and (problem := host_access_problem(local)):
            raise ValueError(f"{value} cannot be a destination: {problem}")
        return value

    @field_validator("storage_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        if named := inline_credential_options(value):
            raise ValueError(f"{', '.join(named)}: credentials go in secret_options, by reference (env:NAME)")
        return value

    def process(self, run: "ModelRun") -> dict[str, Any]:
        destination = self.rendered_destination(run)
        shown = redact_url(destination)
        files = files_matching(run.staging_dir, self.files)
        if not files:
            raise StageError(f"publish: no file in {run.staging_dir} matches {self.files}")
        fs, root = self._filesystem(destination)
        relative = [f.relative_to(run.staging_dir).as_posix() for f in files]
        if (local := _local_path(destination)) is not None:
            for path in [MANIFEST, *relative]:
                if problem := link_below(local, path):
                    raise StageError(f"publish to {shown}: {problem}; nothing is written through a link")
        previous = self._retried(lambda: _read_manifest(fs, f"{root}/{MANIFEST}"), shown)
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # hashlib releases the GIL
            hashing = pool.map(sha256_of, files)
            if previous is None:  # nothing published there yet: every file goes, uploaded while it is hashed
                self._retried(lambda: _put(fs, [str(f) for f in files], [f"{root}/{r}" for r in relative]), shown)
            sums = list(hashing)
        entries = [
            {"path": path, "size": f.stat().st_size, "sha256": sha}
            for f, path, sha in zip(files, relative, sums, strict=True)
        ]
        manifest = {"run_id": run.run_id, "files": entries}
        if previous is None:
            self._retried(lambda: fs.pipe_file(f"{root}/{MANIFEST}", json.dumps(manifest, indent=2).encode()), shown)
            return self._result(shown, entries, uploaded=entries)
        known = {e["path"]: e for e in previous.get("files", [])}
        changed = [e for e in entries if not _still_there(fs, root, e, known.get(e["path"]))]
        if not changed and previous == manifest:
            return self._result(shown, entries, uploaded=[])
        # from here until the new manifest, consumers see no manifest at all
        self._retried(lambda: fs.rm_file(f"{root}/{MANIFEST}"), shown)
        if changed:  # one batch: fsspec's async stores (s3, gcs, http) upload the files concurrently
            local = [str(run.staging_dir / e["path"]) for e in changed]
            remote = [f"{root}/{e['path']}" for e in changed]
            self._retried(lambda: _put(fs, local, remote), shown)
        body = json.dumps(manifest, indent=2).encode()
        self._retried(lambda: fs.pipe_file(f"{root}/{MANIFEST}", body), shown)
        return self._result(shown, entries, uploaded=changed)

    def rendered_destination(self, run: "ModelRun") -> str:
        """The destination for this run; a local one is checked again once rendered."""
        reads = referenced_fields(self.destination)
        text = self.destination
        if reads:
            text = render_string(text, run.config.template_context(run, reads), where="publish.destination").strip()
            if (local := _local_path(text)) and (problem := host_access_problem(local)):
                raise StageError(f"publish: {text} cannot be a destination: {problem}")
        return text.rstrip("/")

    def unpublish(self, destination: str) -> list[str]:
        """Remove what a publish put at `destination`: its manifest first (consumers stop taking
        the products), then the files it lists. Nothing else there is touched."""
        shown = redact_url(destination)
        fs, root = self._filesystem(destination)
        local = _local_path(destination)
        if local is not None and (problem := link_below(local, MANIFEST)):
            raise StageError(f"unpublish at {shown}: {problem}; nothing is removed through a link")
        manifest = self._retried(lambda: _read_manifest(fs, f"{root}/{MANIFEST}"), shown)
        if manifest is None:
            return []
        self._retried(lambda: fs.rm_file(f"{root}/{MANIFEST}"), shown)
        removed = []
        for entry in manifest.get("files", []):
            relative = PurePosixPath(str(entry.get("path", "")))
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                continue  # a manifest changed at the destination names nothing outside it
            if local is not None and link_below(local, str(relative)):
                continue  # nor, through a link planted there, anything outside it
            self._retried(lambda path=f"{root}/{relative}": _remove(fs, path), shown)
            removed.append(str(relative))
        return removed

    def _filesystem(self, destination: str) -> tuple[Any, str]:
        import fsspec

        if (local := _local_path(destination)) is not None and (problem := destination_owner_problem(local)):
            raise StageError(f"publish: {redact_url(destination)} cannot be a destination: {problem}")

        options = {**self.storage_options, **resolve_secrets(self.secret_options, "publish.secret_options")}
        try:
            fs, root = fsspec.core.url_to_fs(destination, **options)
        except (ImportError, ValueError, TypeError) as err:
            raise StageError(f"publish: cannot use {redact_url(destination)}: {redact_url(str(err))}") from None
        return fs, root.rstrip("/")

    def _retried(self, call: Callable[[], T], shown: str) -> T:
        """`call`, retried on transient errors (a dropped connection, a throttled store)."""
        delay = self.retry_delay_seconds
        for attempt in range(self.retries + 1):
            try:
                return call()
            except _PERMANENT as err:
                raise StageError(f"publish to {shown} failed: {redact_url(str(err))}") from None
            except _transient_errors() as err:
                if attempt == self.retries:
                    raise StageError(
                        f"publish to {shown} failed after {attempt + 1} attempt(s): {redact_url(str(err))}"
                    ) from None
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _result(self, shown: str, entries: list[dict], uploaded: list[dict]) -> dict[str, Any]:
        sent = sum(e["size"] for e in uploaded)
        return {
            "success": True,
            "destination": shown,
            "message": f"published {len(entries)} file(s) to {shown}: {len(uploaded)} uploaded ({sent} bytes), "
            f"{len(entries) - len(uploaded)} unchanged",
            "files": [e["path"] for e in entries],
            "uploaded": [e["path"] for e in uploaded],
        }


def _transient_errors() -> tuple[type[BaseException], ...]:
    """What a retry may cure: OS and network errors, and those of the clients fsspec uses, which
    are not OSErrors (botocore's EndpointConnectionError, aiohttp's ClientError)."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        errors += [BotoConnectionError, HTTPClientError]
    except ImportError:
        pass
    try:
        from aiohttp import ClientError

        errors.append(ClientError)
    except ImportError:
        pass
    return tuple(errors)


def _local_path(destination: str) -> Path | None:
    """The directory a local destination names (a path or file://), None for a remote one."""
    return None if is_remote(destination) else local_path(destination).absolute()


def destination_owner_problem(root: Path) -> str | None:
    """Why a local destination could be changed under us by another user: it (or, until it is made,
    its nearest existing directory) is a link, another user's, or writable by everyone (unless
    sticky, as /tmp). None if it is safe to write into."""
    existing = next(p for p in (root, *root.parents) if p.exists() or p.is_symlink())
    info = os.lstat(existing)
    if stat.S_ISLNK(info.st_mode):
        return f"{existing} is a link"
    owners = {os.geteuid()} if existing == root else {os.geteuid(), 0}
    if info.st_uid not in owners:
        return f"{existing} is owned by uid {info.st_uid}, who could plant links in it"
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        return f"{existing} is writable by everyone, who could plant links in it"
    return None


def link_below(root: Path, relative: str) -> str | None:
    """A link at or below `root` on the way to `relative` (planted to write or delete elsewhere), or None."""
    path = root
    for part in PurePosixPath(relative).parts:
        path = path / part
        if path.is_symlink():
            return f"{path} is a link"
    return None


def _read_manifest(fs: Any, path: str) -> dict | None:
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None
    except ValueError:  # not ours, or cut short: publish everything again
        return {}


def _still_there(fs: Any, root: str, entry: dict, known: dict | None) -> bool:
    """The destination holds this content already: the last manifest has its checksum, the store its size."""
    if known is None or known.get("sha256") != entry["sha256"]:
        return False
    try:
        return fs.info(f"{root}/{entry['path']}").get("size") == entry["size"]
    except OSError:
        return False


def _remove(fs: Any, path: str) -> None:
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def _put(fs: Any, local: list[str], remote: list[str]) -> None:
    for parent in sorted({path.rsplit("/", 1)[0] for path in remote}):
        fs.makedirs(parent, exist_ok=True)
    fs.put(local, remote)
