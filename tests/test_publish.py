"""`publish`: a run's products uploaded to an S3-compatible store or a shared directory (issue 25.2)."""

import json
import os
import threading
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import shell_doc, write_yaml

SECRET = "pub-s3cr3t-never-shown"
PRODUCTS = "mkdir -p plots; printf 'grid %s' {{ config.parameters.version }} > out.nc; echo png > plots/hs.png"


def publishing_doc(tmp_path: Path, destination: str, version: int = 1, **publish) -> dict:
    doc = shell_doc(tmp_path, ["sh", "-c", PRODUCTS], run_id="fc1", parameters={"version": version})
    doc["postprocessor"] = [
        {"processor": "publish", "destination": destination, "files": ["*.nc", "plots/*"], **publish}
    ]
    return doc


def s3_objects(prefix: str) -> dict[str, bytes]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    return {path.removeprefix(prefix + "/"): fs.cat_file(path) for path in fs.find(prefix)}


def test_a_run_publishes_its_products_to_s3_with_secrets_by_reference(s3, prefect_api, tmp_path):
    env = {"PREFECT_API_URL": prefect_api, "PUB_KEY": "testing", "PUB_SECRET": SECRET}
    publish = {
        "storage_options": {"endpoint_url": s3["AWS_ENDPOINT_URL"]},
        "secret_options": {"key": "env:PUB_KEY", "secret": "env:PUB_SECRET"},
    }
    path = write_yaml(tmp_path / "p.yaml", publishing_doc(tmp_path, "s3://data/fc/{{ runtime.run_id }}", **publish))
    first = run_cli("run", str(path), env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    objects = s3_objects("data/fc/fc1")
    assert sorted(objects) == ["manifest.json", "out.nc", "plots/hs.png"]
    assert objects["out.nc"] == b"grid 1"
    manifest = json.loads(objects["manifest.json"])
    assert [(f["path"], f["size"]) for f in manifest["files"]] == [("out.nc", 6), ("plots/hs.png", 4)]
    assert "2 uploaded" in first.stderr

    again = run_cli("run", str(path), env=env)
    assert again.returncode == 0 and "0 uploaded" in again.stderr, again.stderr[-3000:]
    changed = write_yaml(
        tmp_path / "q.yaml", publishing_doc(tmp_path, "s3://data/fc/{{ runtime.run_id }}", 2, **publish)
    )
    third = run_cli("run", str(changed), env=env)
    assert third.returncode == 0 and "1 uploaded" in third.stderr, third.stderr[-3000:]
    assert s3_objects("data/fc/fc1")["out.nc"] == b"grid 2"

    run_dir = tmp_path / "runs" / "fc1"
    shown = first.stdout + first.stderr + third.stdout + third.stderr
    shown += "".join(p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file())
    assert SECRET not in shown, "the secret's value is in the output, a log or the manifest"


def test_the_manifest_is_written_last_and_a_rerun_hides_the_old_one_first(tmp_path):
    """A consumer that sees manifest.json sees complete files: it is the last write of a publish."""
    from helpers import shell_model_run

    from rompy_tasks.postprocess.publish import PublishConfig

    target = tmp_path / "products"
    run = shell_model_run(tmp_path / "runs", ["true"], parameters={"version": 1})
    (run.staging_dir / "a.nc").write_bytes(b"a" * 1000)
    (run.staging_dir / "b.nc").write_bytes(b"b" * 1000)
    publish = PublishConfig(destination=f"file://{target}", files=["*.nc"])
    assert publish.process(run)["uploaded"] == ["a.nc", "b.nc"]
    times = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    assert times["manifest.json"] >= max(times["a.nc"], times["b.nc"])

    (run.staging_dir / "b.nc").write_bytes(b"c" * 1000)
    seen_during_upload = []
    original = PublishConfig._retried

    def watching(self, call, shown):
        seen_during_upload.append((target / "manifest.json").exists())
        return original(self, call, shown)

    PublishConfig._retried = watching
    try:
        assert publish.process(run)["uploaded"] == ["b.nc"]
    finally:
        PublishConfig._retried = original
    # read the old manifest, remove it, upload b.nc (no manifest), write the new manifest
    assert seen_during_upload == [True, True, False, False]
    assert json.loads((target / "manifest.json").read_text())["files"][1]["sha256"] != "", "a fresh manifest"


def test_a_store_that_answers_late_is_retried(tmp_path, prefect_api):
    """A dropped or not-yet-reachable endpoint is a transient error: the upload is retried."""
    import importlib.util

    if importlib.util.find_spec("moto") is None:
        pytest.skip("moto is not installed (the dev extra installs it)")
    from services import free_port, s3_endpoint

    port = free_port()
    ready = threading.Event()
    env_box = {}

    def late_store() -> None:
        import time

        time.sleep(4)
        with s3_endpoint(tmp_path / "moto", port=port) as env:
            import s3fs

            credentials = {"key": env["AWS_ACCESS_KEY_ID"], "secret": env["AWS_SECRET_ACCESS_KEY"]}
            s3fs.S3FileSystem(skip_instance_cache=True, endpoint_url=env["AWS_ENDPOINT_URL"], **credentials).mkdir(
                "data"
            )
            env_box.update(env)
            ready.wait(120)

    store = threading.Thread(target=late_store, daemon=True)
    store.start()
    publish = {"storage_options": {"endpoint_url": f"http://127.0.0.1:{port}"}, "retry_delay_seconds": 2, "retries": 4}
    doc = publishing_doc(tmp_path, "s3://data/late", **publish)
    env = {
        "PREFECT_API_URL": prefect_api,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        result = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), env=env)
    finally:
        ready.set()
        store.join(30)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 uploaded" in result.stderr


@pytest.mark.parametrize(
    ("publish", "field", "message"),
    [
        ({"destination": "/etc/products"}, "destination", "inside the host's /etc"),
        ({"destination": "file:///tmp"}, "destination", "/tmp itself"),
        ({"destination": "s3://k:pw@data/x"}, "destination", "by reference (secret_options"),
        ({"storage_options": {"secret": "x"}}, "storage_options", "credentials go in secret_options"),
        ({"secret_options": {"secret": "plain-value"}}, "secret_options.secret", "must be a reference"),
        ({"files": ["../*.nc"]}, "files.0", "run directory"),
        ({"destination": "foo://bucket/x"}, "destination", "unknown URL scheme 'foo'"),
    ],
)
def test_a_bad_publish_section_is_exit_2_naming_the_field(tmp_path, publish, field, message):
    doc = publishing_doc(tmp_path, "s3://data/x")
    doc["postprocessor"][0].update(publish)
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"postprocessor[0].{field.replace('.0', '[0]')}: " in result.stderr, result.stderr
    assert message in result.stderr
    assert "plain-value" not in result.stderr and "pw@" not in result.stderr
    assert not (tmp_path / "runs").exists(), "nothing written"


def test_a_destination_rendered_into_a_system_directory_fails_the_stage(tmp_path):
    from helpers import shell_model_run

    from rompy_tasks.core.errors import StageError
    from rompy_tasks.postprocess.publish import PublishConfig

    run = shell_model_run(tmp_path / "runs", ["true"], parameters={"where": "/etc"})
    (run.staging_dir / "a.nc").write_bytes(b"a")
    publish = PublishConfig(destination="{{ config.parameters.where }}/products", files=["*.nc"])
    with pytest.raises(StageError, match="inside the host's /etc"):
        publish.process(run)
    assert not Path("/etc/products").exists()
    assert os.path.exists(run.staging_dir / "a.nc")
