"""Static inputs by URI (rompy's DataBlob): fetched once into a shared cache, linked into each run.

A bathymetry or grid file that every member of an ensemble and every cycle of a forecast needs
is fetched once per version of its source: the cache (`<data dir>/cache`, `cache_dir` or
ROMPY_TASKS_CACHE_DIR) keeps each file's content under its sha256 (`blobs/<sha256>`, read-only),
and for each source URI and version (its ETag, else its mtime and size) which content it had
(`sources/<key>.json`). Concurrent runs wait for one fetch (a lock per source version). The
checksum is computed while the file streams in and checked against a given `sha256`; at each
use the blob's size and mtime must still be what was recorded, else it is fetched again, never
used. Each run directory gets its own read-only copy (a reflink where the filesystem shares
blocks copy-on-write, else an in-kernel copy), never a hardlink nor a symbolic link: the run may
write what is in its directory (a model opening its input for update, root ignoring modes), and
a shared inode would hand the changed bytes to every later run, member and cycle while their
manifests claim the pinned sha256. A directory source is cached file by file: its version is
its listing (names, sizes, ETags or mtimes), its checksum the sha256 of its files' names, sizes
and sha256s, and the run directory gets the same tree of read-only copies.
"""

import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rompy_tasks.core.errors import ConfigError, StageError
from rompy_tasks.core.records import read_record, write_json_atomically
from rompy_tasks.core.secrets import redact_url
from rompy_tasks.core.templates import inside
from rompy_tasks.data.sources import SourceUrl
from rompy_tasks.data_dir import private_dir

CHUNK_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_BYTES = 20 * 1024**3  # the cache's bound (ROMPY_TASKS_CACHE_MAX_GB); least recently used go first
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
FICLONE = 0x40049409  # linux/fs.h: share the source's blocks copy-on-write


class StaticInput(BaseModel):
    """A file by URI placed in the run directory under its own name (rompy's DataBlob keys)."""

    model_config = ConfigDict(extra="forbid")

    model_type: Literal["data_blob", "data_link"] | None = Field(None, description="rompy's: data_link links")
    id: str = Field("data", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="rompy's DataBlob id")
    source: SourceUrl = Field(
        description="A local path or an fsspec URL (https://, s3://, ...) of a file or a directory"
    )
    link: bool = Field(
        False,
        description="rompy's: link rather than copy. Here every input is the run's own read-only copy of the "
        "cached file (a reflink where the filesystem allows), never a link a model could write the cache through",
    )
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="The file's checksum, checked at fetch")

    @field_validator("source")
    @classmethod
    def _has_a_name(cls, value: str) -> str:
        name = PurePosixPath(urlparse(value).path if "://" in value else value).name
        if not value.strip() or name in ("", ".", ".."):
            raise ValueError(f"{redact_url(value)} names no file")
        return value

    @property
    def name(self) -> str:
        """The file's name in the run directory: the source's base name, as in rompy."""
        return PurePosixPath(urlparse(self.source).path if "://" in self.source else self.source).name

    @property
    def shown(self) -> str:
        return redact_url(self.source)


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]  # a blob's name: a record naming a path is refused


class CachedBlob(BaseModel):
    """One file of a directory source: where it goes under the directory, and its blob."""

    path: str
    sha256: Sha256
    size: int
    mtime_ns: int

    @field_validator("path")
    @classmethod
    def _stays_under_the_directory(cls, value: str) -> str:
        relative = PurePosixPath(value)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"{value!r} leaves the directory")
        return value


class CachedFile(BaseModel):
    """What one source version resolved to: its content's sha256 and the blob's size and mtime;
    for a directory, its files (`sha256` then covers their names, sizes and checksums, `size`
    their total)."""

    uri: str
    version: str
    sha256: Sha256
    size: int
    mtime_ns: int
    files: list[CachedBlob] | None = None
    fetched: datetime
    used: datetime

    def blobs(self) -> list[CachedBlob]:
        """The blobs this entry needs: a file's one, or a directory's files."""
        if self.files is not None:
            return self.files
        return [CachedBlob(path="", sha256=self.sha256, size=self.size, mtime_ns=self.mtime_ns)]


def cache_dir_problem(path: Path) -> str | None:
    """Why a cache directory may not be used: every later run trusts what it holds, so only its
    user may change it (as the data directory, data_dir.py): not a link, ours, not writable by
    group or others. None if it may be used (or does not exist yet: it is made 0700)."""
    try:
        info = os.lstat(path.expanduser())
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        why = "is a link"
    elif not stat.S_ISDIR(info.st_mode):
        why = "is not a directory"
    elif info.st_uid != os.geteuid():
        why = f"is owned by uid {info.st_uid}"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = "is writable by its group or by everyone"
    else:
        return None
    return f"{path} {why}, so another user could change the inputs later runs trust: use a directory of your own"


def cache_dir(configured: Path | None = None) -> Path:
    """The cache: `configured`, else ROMPY_TASKS_CACHE_DIR, else the user's private data directory;
    one another user could change is refused (ConfigError naming `cache_dir`)."""
    if configured is not None or os.environ.get("ROMPY_TASKS_CACHE_DIR"):
        path = Path(configured or os.environ["ROMPY_TASKS_CACHE_DIR"]).expanduser()
        where = "cache_dir" if configured is not None else "ROMPY_TASKS_CACHE_DIR"
        if problem := cache_dir_problem(path):
            raise ConfigError.single(where, problem)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        if problem := cache_dir_problem(path):  # made by someone else between the check and the mkdir
            raise ConfigError.single(where, problem)
        return path
    return private_dir("cache")


@contextmanager
def _waiting_lock(path: Path) -> Iterator[None]:
    """One fetch of a source version at a time; the others wait for it, then use its result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _version(info: dict[str, Any]) -> str:
    """What says the source changed: its ETag, else its modification time and size."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag:{str(etag).strip(chr(34))}"
    when = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created")
    return f"mtime:{when}:size:{info.get('size')}"


def _intact(cache: Path, entry: CachedFile) -> bool:
    for blob in entry.blobs():
        try:
            found = os.stat(cache / "blobs" / blob.sha256)
        except OSError:
            return False
        if found.st_size != blob.size or found.st_mtime_ns != blob.mtime_ns:
            return False
    return True


def tree_checksum(files: list[CachedBlob]) -> str:
    """A directory's checksum: the sha256 of its files' names, sizes and sha256s, by name."""
    lines = "".join(f"{f.path}\0{f.size}\0{f.sha256}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(lines.encode()).hexdigest()


def _directory_listing(item: StaticInput, fs: Any, path: str) -> dict[str, dict[str, Any]]:
    """The directory's files by relative path; a name that would leave the directory is refused."""
    root = path.rstrip("/")
    listing = {}
    for name, info in sorted(fs.find(root, detail=True).items()):
        relative = PurePosixPath(name[len(root) :].lstrip("/")) if name.startswith(root) else None
        if relative is None or not relative.parts or relative.is_absolute() or ".." in relative.parts:
            raise StageError(f"input {item.id!r}: {item.shown} lists {name!r}, outside the directory")
        listing[relative.as_posix()] = info
    if not listing:
        raise StageError(f"input {item.id!r}: {item.shown} is an empty directory")
    return listing


def fetch(item: StaticInput, cache: Path) -> CachedFile:
    """The cached file for `item`'s source as it is now: fetched (once) if the cache lacks it."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(item.source)
        info = fs.info(path)
    except (OSError, ValueError, ImportError) as err:
        raise StageError(f"input {item.id!r}: cannot reach {item.shown}: {redact_url(str(err))}") from None
    listing = None
    # an HTTP server's directory is a page of links: a source ending in / is read as one
    if info.get("type") == "directory" or (item.source.endswith("/") and fs.isdir(path)):
        listing = _directory_listing(item, fs, path)
        version = (
            "tree:"
            + hashlib.sha256(
                "".join(f"{name}\0{_version(file_info)}\n" for name, file_info in listing.items()).encode()
            ).hexdigest()
        )
    else:
        version = _version(info)
    key = hashlib.sha256(f"{item.source}\0{version}".encode()).hexdigest()
    record = cache / "sources" / f"{key}.json"
    with _waiting_lock(cache / "locks" / key):
        data = read_record(record)
        try:
            entry = CachedFile.model_validate(data) if data else None
        except ValueError:  # a record this version cannot read: fetch again
            entry = None
        if entry is None or not _intact(cache, entry) or (item.sha256 and entry.sha256 != item.sha256):
            entry = _download_tree(item, fs, path, listing, version, cache) if listing else None
            entry = entry or _download(item, fs, path, version, cache)
        entry.used = datetime.now(UTC)
        write_json_atomically(record, json.loads(entry.model_dump_json()), durable=False)
    return entry


def _download(item: StaticInput, fs: Any, path: str, version: str, cache: Path) -> CachedFile:
    """Stream the source into the cache, hashing as it comes; a wrong checksum keeps nothing."""
    blob = _stream_blob(item, fs, path, cache)
    return _checked_entry(item, [blob], blob.sha256, version, cache, files=None)


def _download_tree(
    item: StaticInput, fs: Any, path: str, listing: dict[str, dict[str, Any]], version: str, cache: Path
) -> CachedFile:
    """Every file of a directory source into the cache."""
    root = path.rstrip("/")
    files = [
        _stream_blob(item, fs, f"{root}/{relative}", cache).model_copy(update={"path": relative})
        for relative in listing
    ]
    return _checked_entry(item, files, tree_checksum(files), version, cache, files=files)


def _checked_entry(
    item: StaticInput, blobs: list[CachedBlob], checksum: str, version: str, cache: Path, files: list | None
) -> CachedFile:
    """The cache entry of what was fetched; a checksum other than the one given keeps none of its
    blobs (those another entry shares stay)."""
    if item.sha256 and checksum != item.sha256:
        for blob in blobs:
            _drop_unused_blob(cache, blob)
        raise StageError(f"input {item.id!r}: {item.shown} has sha256 {checksum}, not the {item.sha256} given")
    now = datetime.now(UTC)
    return CachedFile(
        uri=item.shown,
        version=version,
        sha256=checksum,
        size=sum(blob.size for blob in blobs),
        mtime_ns=blobs[0].mtime_ns if files is None else 0,
        files=files,
        fetched=now,
        used=now,
    )


def _stream_blob(item: StaticInput, fs: Any, path: str, cache: Path) -> CachedBlob:
    """One remote file into `blobs/<sha256>` (read-only), hashed as it streams."""
    (cache / "blobs").mkdir(parents=True, exist_ok=True)
    (cache / "tmp").mkdir(parents=True, exist_ok=True)
    # a name of its own: two fetches in one process (ensemble members in threads, two sources with
    # the same path on different hosts) never write into one temporary file
    handle, name = tempfile.mkstemp(dir=cache / "tmp", prefix=f"{os.getpid()}-")
    partial = Path(name)
    digest = hashlib.sha256()
    try:
        # no read-ahead cache: each byte is asked for once (HTTP's default cache fetched 1.5x the file)
        with fs.open(path, "rb", cache_type="none") as source, os.fdopen(handle, "wb") as target:
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
                target.write(chunk)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise StageError(f"input {item.id!r}: fetching {item.shown} failed: {redact_url(str(err))}") from None
    sha = digest.hexdigest()
    blob = cache / "blobs" / sha
    os.chmod(partial, READ_ONLY)
    os.replace(partial, blob)
    done = os.stat(blob)
    return CachedBlob(path="", sha256=sha, size=done.st_size, mtime_ns=done.st_mtime_ns)


def _drop_unused_blob(cache: Path, blob: CachedBlob) -> None:
    """Remove a blob no cached entry uses (a fetch that failed its checksum)."""
    if not any(blob.sha256 in {b.sha256 for b in e.blobs()} for _, e in cached_entries(cache)):
        (cache / "blobs" / blob.sha256).unlink(missing_ok=True)


def place(item: StaticInput, entry: CachedFile, cache: Path, staging_dir: Path) -> Path:
    """The cached file (or directory tree) in the run directory under its name: the run's own
    read-only copies, so nothing the run does reaches the cache."""
    target = staging_dir / item.name
    inside(staging_dir, target)
    if entry.files is None:
        _copy_blob(cache / "blobs" / entry.sha256, target)
        return target
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    for blob in entry.files:
        destination = inside(staging_dir, target / blob.path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        _copy_blob(cache / "blobs" / blob.sha256, destination)
    return target


def _copy_blob(blob: Path, target: Path) -> None:
    """`blob` as a new read-only file at `target`: no inode shared with the cache."""
    target.unlink(missing_ok=True)
    with open(blob, "rb") as source, open(target, "xb") as copy:
        try:  # copy-on-write where the filesystem shares blocks (btrfs, xfs): instant, no extra space
            fcntl.ioctl(copy.fileno(), FICLONE, source.fileno())
            cloned = True
        except OSError:  # ext4, overlayfs, across filesystems
            cloned = False
    if not cloned:
        shutil.copyfile(blob, target)  # the kernel copies (sendfile), the bytes never pass through Python
    os.chmod(target, READ_ONLY)


def stage_inputs(items: list[StaticInput], staging_dir: Path, configured_cache: Path | None = None) -> list[dict]:
    """Fetch (once) and place every input; what the manifest records of each (URI, sha256, file)."""
    if not items:
        return []
    cache = cache_dir(configured_cache)
    placed = []
    for item in items:
        entry = fetch(item, cache)
        target = place(item, entry, cache, staging_dir)
        placed.append({"id": item.id, "uri": item.shown, "sha256": entry.sha256, "path": target.name})
    prune(cache, max_cache_bytes(), keep={item["sha256"] for item in placed})
    return placed


def max_cache_bytes() -> int:
    gigabytes = os.environ.get("ROMPY_TASKS_CACHE_MAX_GB")
    return int(float(gigabytes) * 1024**3) if gigabytes else DEFAULT_MAX_BYTES


def cached_entries(cache: Path) -> list[tuple[Path, CachedFile]]:
    """Every source version the cache knows, least recently used first."""
    entries = []
    for record in (cache / "sources").glob("*.json"):
        data = read_record(record)
        try:
            entries.append((record, CachedFile.model_validate(data)))
        except ValueError:  # empty, from another version, or naming a path rather than a blob: never acted on
            continue
    return sorted(entries, key=lambda pair: pair[1].used)


def prune(cache: Path, max_bytes: int, keep: set[str] = frozenset()) -> list[CachedFile]:
    """Remove least recently used entries until the blobs fit in `max_bytes` (never those in `keep`).

    Run directories keep their inputs: each holds its own copy. Only blobs are removed, by their
    checksum's name in `blobs/` (a record is validated first), never through a link."""
    for part in ("blobs", "sources"):
        if (cache / part).is_symlink():
            raise StageError(f"{cache / part} is a link: the cache is not pruned through it")
    entries = cached_entries(cache)
    sizes = {blob.sha256: blob.size for _, e in entries for blob in e.blobs()}
    total = sum(sizes.values())
    removed = []
    for record, entry in entries:
        if total <= max_bytes:
            break
        if entry.sha256 in keep:
            continue
        record.unlink(missing_ok=True)
        still_used = {blob.sha256 for r, e in entries if r.exists() for blob in e.blobs()}
        for blob in entry.blobs():
            if blob.sha256 not in still_used and blob.sha256 in sizes:  # no other source has it
                (cache / "blobs" / blob.sha256).unlink(missing_ok=True)
                total -= sizes.pop(blob.sha256)
        removed.append(entry)
    return removed
