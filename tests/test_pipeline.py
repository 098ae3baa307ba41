"""The pipeline flow against a real Prefect API, with real Veros and shell models."""

import hashlib
import json
import sys

import pytest
import xarray as xr

from rompy_tasks.core.errors import ModelRunError, StageError
from rompy_tasks.pipeline import MANIFEST_NAME, validate_data

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def veros_pipeline(output_dir, run_id="veros-test", duration="2d", model=None, **overrides):
    data = {
        "config": {
            "run_id": run_id,
            "output_dir": str(output_dir),
            "delete_existing": True,
            "period": {"start": "2026-01-01", "duration": duration, "interval": "1d"},
            "config": {
                "model_type": "veros",
                "setup": "acc",
                "diagnostics": {
                    "energy": {"output_frequency": 43200, "sampling_frequency": 43200},
                    "snapshot": 86400,
                },
                **(model or {}),
            },
        },
        "backend": {"type": "local", "timeout": 600, "env_vars": {"SECRET_TOKEN": "hunter2"}},
        "postprocessor": [
            "noop",
            {"processor": "analyze", "variables": ["temp", "k_m"]},
            {
                "processor": "visualize",
                "plots": [
                    {"file": "acc.snapshot.nc", "variable": "temp", "kind": "map"},
                    {"file": "acc.energy.nc", "variable": "k_m", "kind": "series"},
                ],
            },
            {"processor": "archive", "format": "zip"},
        ],
    }
    data.update(overrides)
    return validate_data(data)


def shell_pipeline(output_dir, command, run_id="shell-test", **overrides):
    data = {
        "config": {
            "run_id": run_id,
            "output_dir": str(output_dir),
            "period": {"start": "2026-01-01", "duration": "1h"},
            "config": {"model_type": "shell", "command": command, "outputs": ["out*.txt"]},
        },
        "postprocessor": ["noop"],
    }
    data.update(overrides)
    return validate_data(data)


@pytest.fixture(scope="module")
def veros_result(prefect_api, tmp_path_factory):
    from flows.pipeline import model_pipeline

    pipeline = veros_pipeline(tmp_path_factory.mktemp("veros"))
    return pipeline, model_pipeline(pipeline=pipeline)


@pytest.mark.veros
def test_veros_pipeline_runs_every_stage(veros_result):
    pipeline, result = veros_result
    staging = pipeline.config.staging_dir
    assert result.status == "completed"
    assert result.stages_completed == ["generate", "run", "postprocess"]
    assert result.run.exit_code == 0 and result.run.duration_seconds > 0
    assert set(result.postprocess) == {"noop", "analyze", "visualize", "archive"}
    for name in ["acc.py", "rompy_tasks_setup.py", "acc.snapshot.nc", "acc.energy.nc", "acc_0004.restart.h5"]:
        assert (staging / name).is_file(), name
    log = (staging / "logs" / "run.log").read_text()
    assert "Integration done" in log and "runlen 172800" in log


@pytest.mark.veros
def test_veros_outputs_and_analysis_are_physically_sane(veros_result):
    pipeline, _ = veros_result
    staging = pipeline.config.staging_dir
    summary = json.loads((staging / "analysis" / "summary.json").read_text())
    temp = summary["acc.snapshot.nc"]["temp"]
    assert temp["units"] == "deg C"
    # seawater: not below freezing (about -1.9 degC), not above the 15 degC initial maximum + margin
    assert -2.5 <= temp["min"] < temp["mean"] < temp["max"] <= 16.0
    with xr.open_dataset(staging / "acc.snapshot.nc") as ds:
        assert abs(float(ds.temp.max()) - temp["max"]) < 1e-9
    energy = summary["acc.energy.nc"]["k_m"]
    assert len(energy["series"]["mean"]) == 4, "energy every 12 h over 2 days"
    series = energy["series"]["mean"]
    # wind-driven spin-up from rest: kinetic energy starts at 0 and grows
    assert series[0] >= 0 and series[-1] > 0
    assert all(b > a for a, b in zip(series, series[1:], strict=False))


@pytest.mark.veros
def test_veros_plots_and_archive_manifest(veros_result):
    import zipfile

    pipeline, result = veros_result
    staging = pipeline.config.staging_dir
    plots = sorted((staging / "plots").glob("*.png"))
    assert [p.name for p in plots] == ["acc.energy.k_m.png", "acc.snapshot.temp.png"]
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_MAGIC and plot.stat().st_size > 5000
    manifest = json.loads((staging / "archive" / "manifest.json").read_text())
    entries = {e["path"]: e for e in manifest["files"]}
    snapshot = entries["acc.snapshot.nc"]
    assert snapshot["sha256"] == hashlib.sha256((staging / "acc.snapshot.nc").read_bytes()).hexdigest()
    assert snapshot["size"] == (staging / "acc.snapshot.nc").stat().st_size
    with zipfile.ZipFile(staging / "archive" / "veros-test.zip") as zf:
        names = set(zf.namelist())
    assert "veros-test/acc.snapshot.nc" in names and "veros-test/manifest.json" in names


@pytest.mark.veros
def test_run_manifest_hides_secrets(veros_result):
    pipeline, _ = veros_result
    text = (pipeline.config.staging_dir / MANIFEST_NAME).read_text()
    assert "hunter2" not in text
    data = json.loads(text)
    assert data["pipeline"]["backend"]["env_vars"] == {"SECRET_TOKEN": "***"}
    assert data["result"]["stages_completed"] == ["generate", "run", "postprocess"]


@pytest.mark.veros
def test_model_lines_and_artifacts_reach_the_prefect_api(veros_result):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )

    async def query():
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["veros-test"]))
            )
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])), limit=200
            )
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="veros-test")), limit=20
            )
            return logs, arts

    logs, artifacts = asyncio.run(query())
    assert any("Integration done" in log.message for log in logs), "model output reached the run logger"
    keys = {a.key for a in artifacts}
    assert {"pipeline-veros-test", "analyze-veros-test", "visualize-veros-test-md"} <= keys
    summary = next(a for a in artifacts if a.key == "pipeline-veros-test")
    assert "Stages completed | generate, run, postprocess" in summary.data
    assert "hunter2" not in summary.data


@pytest.mark.veros
def test_rerun_postprocess_only_on_existing_outputs(veros_result):
    from flows.pipeline import model_pipeline

    pipeline, _ = veros_result
    staging = pipeline.config.staging_dir
    model_mtime = (staging / "acc.snapshot.nc").stat().st_mtime
    (staging / "plots" / "acc.snapshot.temp.png").unlink()
    result = model_pipeline(pipeline=pipeline, first_stage="postprocess")
    assert result.stages_completed == ["postprocess"]
    assert (staging / "plots" / "acc.snapshot.temp.png").exists()
    assert (staging / "acc.snapshot.nc").stat().st_mtime == model_mtime, "the model did not run again"


def test_generate_only_writes_inputs_not_outputs(prefect_api, tmp_path):
    from flows.pipeline import model_pipeline

    pipeline = veros_pipeline(tmp_path)
    result = model_pipeline(pipeline=pipeline, last_stage="generate")
    staging = pipeline.config.staging_dir
    assert result.stages_completed == ["generate"]
    assert (staging / "rompy_tasks_setup.py").exists()
    assert not list(staging.glob("*.nc"))


def test_run_stage_requires_generated_inputs(prefect_api, tmp_path):
    from flows.pipeline import model_pipeline

    pipeline = shell_pipeline(tmp_path, "true")
    with pytest.raises(StageError, match="generate stage first"):
        model_pipeline(pipeline=pipeline, first_stage="run")


def test_failed_model_raises_and_keeps_inputs_and_logs(prefect_api, tmp_path):
    from flows.pipeline import model_pipeline

    command = [
        sys.executable,
        "-c",
        "open('out1.txt','w').write('x'); print('about to fail'); raise SystemExit(7)",
    ]
    pipeline = shell_pipeline(tmp_path, command)
    with pytest.raises(ModelRunError) as info:
        model_pipeline(pipeline=pipeline)
    assert info.value.exit_code == 7
    assert any("about to fail" in line for line in info.value.log_tail)
    staging = pipeline.config.staging_dir
    assert (staging / "logs" / "run.log").exists()
    assert (staging / "out1.txt").exists(), "outputs kept unless cleanup_on_failure"
    manifest = json.loads((staging / MANIFEST_NAME).read_text())
    assert manifest["result"]["status"] == "failed"
    assert manifest["result"]["stages_completed"] == ["generate"]


def test_cleanup_on_failure_removes_outputs_but_keeps_inputs_and_logs(prefect_api, tmp_path):
    from flows.pipeline import model_pipeline

    template = tmp_path / "tpl"
    template.mkdir()
    (template / "input.nml").write_text("n = {{ config.parameters.n }}\n")
    command = [sys.executable, "-c", "open('out1.txt','w').write('x'); raise SystemExit(1)"]
    pipeline = shell_pipeline(tmp_path / "runs", command)
    pipeline.config.config.outputs = ["*"]  # even a catch-all output pattern spares the inputs
    pipeline.config.config.template = template
    pipeline.config.config.parameters = {"n": 5}
    with pytest.raises(ModelRunError):
        model_pipeline(pipeline=pipeline, cleanup_on_failure=True)
    staging = pipeline.config.staging_dir
    assert not (staging / "out1.txt").exists()
    assert (staging / "input.nml").read_text() == "n = 5\n"
    assert (staging / "logs" / "run.log").exists()


def test_run_retries_apply_to_the_run_stage(prefect_api, tmp_path):
    from flows.pipeline import model_pipeline

    # Fails on the first attempt, succeeds on the second (a counter file in the run dir).
    code = (
        "import pathlib; c = pathlib.Path('attempts'); n = int(c.read_text()) + 1 if c.exists() else 1; "
        "c.write_text(str(n)); open('out.txt','w').write(str(n)); raise SystemExit(0 if n > 1 else 5)"
    )
    pipeline = shell_pipeline(tmp_path, [sys.executable, "-c", code], run_retries=1, run_retry_delay_seconds=0)
    result = model_pipeline(pipeline=pipeline)
    staging = pipeline.config.staging_dir
    assert result.status == "completed"
    assert (staging / "attempts").read_text() == "2"
    assert (staging / "logs" / "run.log").read_text().count("started in") == 2


@pytest.mark.veros
def test_veros_hot_start_continues_model_time_from_a_restart(prefect_api, tmp_path):
    from flows.pipeline import model_pipeline

    daily_energy = {"energy": {"output_frequency": 86400, "sampling_frequency": 43200}}

    def one_day(run_id, **model):
        return veros_pipeline(
            tmp_path, run_id, duration="1d", model={"diagnostics": daily_energy, **model}, postprocessor=[]
        )

    cold = one_day("cold")
    model_pipeline(pipeline=cold, last_stage="run")
    restart = next(cold.config.staging_dir.glob("acc_*.restart.h5"))
    hot = one_day("hot", restart_input=str(restart))
    model_pipeline(pipeline=hot, last_stage="run")
    log = (hot.config.staging_dir / "logs" / "run.log").read_text()
    # the restart is copied into the run directory, so the run directory holds all the model reads
    copied = hot.config.staging_dir / "restart" / restart.name
    assert copied.read_bytes() == restart.read_bytes()
    assert f"Reading restart data from restart/{restart.name}" in log
    assert f"restart/{restart.name}" in (hot.config.staging_dir / "logs" / "generate.log").read_text()
    with xr.open_dataset(cold.config.staging_dir / "acc.energy.nc", decode_times=False) as ds:
        assert ds.Time.values.tolist() == [1.0]
    with xr.open_dataset(hot.config.staging_dir / "acc.energy.nc", decode_times=False) as ds:
        assert ds.Time.values.tolist() == [2.0], "model time continued from the restart"


@pytest.mark.veros
def test_plotting_a_diagnostic_with_no_output_times_is_a_clear_error(veros_result):
    from rompy_tasks.postprocess.visualize import VisualizeConfig

    pipeline, _ = veros_result
    empty = VisualizeConfig(plots=[{"file": "acc.averages.nc", "variable": "temp", "kind": "map"}])
    with pytest.raises(StageError, match="no output times in acc.averages.nc"):
        empty.process(pipeline.config)
