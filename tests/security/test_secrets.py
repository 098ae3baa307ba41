"""Secrets are referenced by name and reach only the model's environment (issue 11.6).

Before, a `${TOKEN}` expanded into a config landed in the manifest, the API's flow-run
parameters, and log lines; a config had no way to name a secret without holding it.
"""

import json
import urllib.request
import uuid

import pytest
from conftest import run_cli
from helpers import python_script, shell_doc, write_yaml

MODEL = """
    import os, pathlib
    pathlib.Path("seen.txt").write_text(os.environ["TOKEN"] + "\\n" + os.environ["BLOCK_TOKEN"])
    print("model ran with", len(os.environ["TOKEN"]), "characters of token")
"""


def api_dump(api_url: str) -> str:
    """Everything the API holds about runs: flow runs (parameters), task runs, logs, artifacts."""
    texts = []
    for route in ("flow_runs", "task_runs", "logs", "artifacts"):
        request = urllib.request.Request(
            f"{api_url}/{route}/filter",
            data=json.dumps({"limit": 200}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            texts.append(response.read().decode())
    return "\n".join(texts)


def everything_under(path) -> str:
    return "\n".join(f.read_text(errors="replace") for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def test_a_referenced_secret_reaches_the_model_and_nothing_else(prefect_api, tmp_path):
    from prefect.blocks.system import Secret

    env_secret, block_secret = f"env-{uuid.uuid4().hex}", f"block-{uuid.uuid4().hex}"
    Secret(value=block_secret).save("rt-test-token", overwrite=True)
    backend = {
        "type": "local",
        "timeout": 120,
        "secret_env": {"TOKEN": "env:RT_TEST_TOKEN", "BLOCK_TOKEN": "prefect-secret:rt-test-token"},
    }
    doc = shell_doc(tmp_path, python_script(tmp_path, MODEL), run_id="secret", backend=backend)
    path = write_yaml(tmp_path / "p.yaml", doc)
    result = run_cli("run", str(path), env={"PREFECT_API_URL": prefect_api, "RT_TEST_TOKEN": env_secret})
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "secret"
    assert (run_dir / "seen.txt").read_text() == f"{env_secret}\n{block_secret}"
    (run_dir / "seen.txt").unlink()  # the model's own file: the only place the values may be
    manifest = (run_dir / "rompy_tasks_run.json").read_text()
    assert "env:RT_TEST_TOKEN" in manifest and "prefect-secret:rt-test-token" in manifest  # references only
    for where, text in {
        "run directory": everything_under(run_dir),
        "CLI output": result.stdout + result.stderr,
        "Prefect API": api_dump(prefect_api),
    }.items():
        assert env_secret not in text and block_secret not in text, f"a secret value is in the {where}"


def test_a_missing_secret_fails_the_run_naming_the_reference_only(prefect_api, tmp_path):
    backend = {"type": "local", "timeout": 120, "secret_env": {"TOKEN": "env:RT_TEST_UNSET_TOKEN"}}
    doc = shell_doc(tmp_path, "true", run_id="nosecret", backend=backend)
    result = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "backend.secret_env.TOKEN: cannot read the secret env:RT_TEST_UNSET_TOKEN" in result.stdout + result.stderr
    assert "RT_TEST_UNSET_TOKEN is not set where the model starts" in result.stdout + result.stderr


def test_a_secret_value_is_not_a_valid_reference(tmp_path):
    backend = {"type": "local", "secret_env": {"TOKEN": "hunter2-the-value-itself"}}
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, "true", backend=backend))))
    assert result.returncode == 2
    assert "backend.secret_env.TOKEN: Value error, must be a reference, where a secret's value lives" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    backend["secret_env"] = {"1X": "env:A"}
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", shell_doc(tmp_path, "true", backend=backend))))
    assert result.returncode == 2 and "not environment variable names" in result.stderr


@pytest.mark.parametrize(
    ("section", "entry", "path"),
    [
        ("forcing", {"name": "wind", "url": "https://user:pa55word@127.0.0.1:9/wind.nc", "variables": []}, "url"),
        ("forcing", {"name": "wind", "url": "https://127.0.0.1:9/wind.nc?token=pa55word", "variables": []}, "url"),
        ("forcing", {"name": "wind", "url": ["/data/a.nc", "dap2://user:pa55word@127.0.0.1/w.nc"]}, "url"),
        ("inputs", {"id": "bathy", "source": "https://user:pa55word@127.0.0.1:9/bathy.nc"}, "source"),
        ("inputs", {"id": "bathy", "source": "https://127.0.0.1:9/b.nc?X-Amz-Signature=pa55word"}, "source"),
        (
            "data",
            {
                "model_type": "grid",
                "id": "grid",
                "source": {"model_type": "file", "uri": "s3://k:pa55word@bucket/g.nc"},
            },
            "source.uri",
        ),
    ],
)
def test_credentials_inline_in_a_url_are_refused_before_anything_is_recorded(tmp_path, section, entry, path):
    """Issue 36.5: a password or token in a source URL was kept in rompy_tasks_run.json and the API's
    flow-run parameters (and dap2:// became http://user:pw@ in errors). Now refused: exit 2, the field
    named, the value never repeated, nothing written."""
    doc = shell_doc(tmp_path, "true", run_id="url")
    doc[section] = [entry]
    for verb in ("validate", "run"):
        result = run_cli(verb, str(write_yaml(tmp_path / "p.yaml", doc)))
        assert result.returncode == 2, result.stdout + result.stderr[-3000:]
        assert f"{section}[0].{path}: " in result.stderr and "never in the config" in result.stderr, result.stderr
        assert "pa55word" not in result.stdout + result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "options",
    [
        {"endpoint_url": "https://user:pa55word@127.0.0.1:9000"},
        {"connection_string": "DefaultEndpointsProtocol=https;AccountKey=pa55word"},
        {"sas_token": "sv=2024&sig=pa55word"},
        {"account_key": "pa55word"},
    ],
)
def test_credentials_in_publish_storage_options_are_refused(tmp_path, options):
    doc = shell_doc(tmp_path, "true")
    doc["postprocessor"] = [
        {"processor": "publish", "destination": "s3://data/x", "files": ["*"], "storage_options": options}
    ]
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 2 and "postprocessor[0].storage_options: " in result.stderr, result.stderr
    assert "pa55word" not in result.stderr


def test_every_url_a_run_records_is_redacted_in_its_manifest(prefect_api, tmp_path):
    """One redaction for the whole record: an input's query (here a version, no credential) is hidden as
    a forcing URL's is."""
    source = tmp_path / "bathy.nc"
    source.write_bytes(b"depths")
    doc = shell_doc(tmp_path, "true", run_id="url")
    doc["inputs"] = [{"id": "bathy", "source": f"file://{source}?version=pa55word"}]
    result = run_cli("validate", str(write_yaml(tmp_path / "p.yaml", doc)))
    assert result.returncode == 0, result.stderr[-2000:]
    from rompy_tasks.pipeline import redacted, validate_data

    assert "pa55word" not in json.dumps(redacted(validate_data(doc)))


def test_the_api_auth_string_never_reaches_a_models_environment(prefect_api, tmp_path):
    """Issue 36.3: the CLI, a worker's flow run and a SLURM worker job hold the API's auth string (and
    perhaps its database URL); the model they start gets neither."""
    auth = f"rompy:{uuid.uuid4().hex}"
    doc = shell_doc(tmp_path, ["sh", "-c", "env > env.txt"])
    doc["backend"]["env_vars"] = {"KEPT": "yes"}
    env = {
        "PREFECT_API_URL": prefect_api,
        "PREFECT_API_AUTH_STRING": auth,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://prefect:{auth}@127.0.0.1/prefect",
    }
    ran = run_cli("run", str(write_yaml(tmp_path / "p.yaml", doc)), env=env)
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = (tmp_path / "runs" / "r" / "env.txt").read_text()
    assert "KEPT=yes" in seen and "PREFECT_API_URL=" in seen
    assert auth not in seen and "PREFECT_API_AUTH_STRING" not in seen
