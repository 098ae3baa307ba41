"""`archive`: pack the run directory into tar.gz or zip, with a manifest of sizes and sha256."""

import hashlib
import json
import tarfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from rompy_tasks.core.config import RunDirGlob
from rompy_tasks.core.model_run import files_matching
from rompy_tasks.core.run_files import real_dir, replacing, write_text
from rompy_tasks.postprocess.base import BasePostprocessorConfig

if TYPE_CHECKING:
    from rompy_tasks.core.model_run import ModelRun

ARCHIVE_DIR = "archive"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ArchiveConfig(BasePostprocessorConfig):
    processor: Literal["archive"] = "archive"
    format: Literal["tar.gz", "zip"] = "tar.gz"
    include: list[RunDirGlob] = Field(default_factory=lambda: ["**/*"], description="Glob patterns to pack")
    exclude: list[RunDirGlob] = Field(default_factory=list, description="Glob patterns to leave out")

    def _selected(self, staging: Path) -> list[Path]:
        chosen = set(files_matching(staging, self.include))
        for pattern in [*self.exclude, f"{ARCHIVE_DIR}/**/*"]:
            chosen.difference_update(staging.glob(pattern))
        return sorted(chosen)

    def process(self, run: "ModelRun") -> dict[str, Any]:
        staging = run.staging_dir
        out_dir = real_dir(staging / ARCHIVE_DIR)
        files = self._selected(staging)
        entries = [
            {"path": f.relative_to(staging).as_posix(), "size": f.stat().st_size, "sha256": sha256_of(f)} for f in files
        ]
        manifest_path = out_dir / "manifest.json"
        manifest = {"run_id": run.run_id, "format": self.format, "files": entries}
        write_text(manifest_path, json.dumps(manifest, indent=2))
        archive_path = out_dir / f"{run.run_id}.{'tar.gz' if self.format == 'tar.gz' else 'zip'}"
        members = [(f, f"{run.run_id}/{f.relative_to(staging).as_posix()}") for f in files]
        members.append((manifest_path, f"{run.run_id}/manifest.json"))
        with replacing(archive_path, binary=True) as handle:
            if self.format == "tar.gz":
                with tarfile.open(fileobj=handle, mode="w:gz") as tar:
                    for f, name in members:
                        tar.add(f, arcname=name)
            else:
                with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                    for f, name in members:
                        zf.write(f, arcname=name)
        total = sum(e["size"] for e in entries)
        return {
            "success": True,
            "message": f"archived {len(entries)} file(s), {total} bytes",
            "archive": str(archive_path),
            "manifest": str(manifest_path),
            "files": [str(archive_path), str(manifest_path)],
            "markdown": f"Archive `{archive_path.name}`: {len(entries)} files, {total} bytes "
            f"(manifest `{manifest_path.name}` with sha256 of each).",
        }
