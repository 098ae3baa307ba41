"""Ensembles against a real Prefect API, with real Veros and shell members."""

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import REPO, process_gone, run_cli, start_cli
from helpers import shell_ensemble_doc

from rompy_tasks.core.errors import ConfigError, StageError
from rompy_tasks.ensemble import EnsembleConfig, load_ensemble, parse_indexes, resolve_members


def write(tmp_path: Path, doc: dict, name: str = "ensemble.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


# --- validation and member expansion ---------------------------------------------------------------


def test_matrix_and_seeded_members_expand(tmp_path):
    matrix = EnsembleConfig.model_validate(
        shell_ensemble_doc(
            tmp_path,
            "true",
            {"matrix": {"config.config.parameters.a": [1, 2, 3], "config.config.parameters.b": ["x", "y"]}},
        )
    )
    members = resolve_members(matrix)
    assert len(members) == 6 and [m.run_id for m in members][:2] == ["m_m000", "m_m001"]
    assert members[5].pipeline.config.config.parameters == {"a": 3, "b": "y"}
    assert len({m.config_hash for m in members}) == 6
    seeded = resolve_members(
        EnsembleConfig.model_validate(shell_ensemble_doc(tmp_path, "true", {"n": 4, "seed_start": 10}))
    )
    assert [m.pipeline.config.config.parameters["seed"] for m in seeded] == [10, 11, 12, 13]
    assert all(m.pipeline.config.output_dir == tmp_path / "runs" / "ens" for m in seeded)


@pytest.mark.parametrize(
    ("members", "extra", "message"),
    [
        ({"overrides": []}, {}, "at least 1"),
        ({"n": 0}, {}, "greater than or equal to 1"),
        ({"matrix": {"config.config.parameters.a": []}}, {}, "without values"),
        ({"overrides": [{"config.config.nonsense": 1}]}, {}, "members[0].config.config.nonsense"),
        ({"overrides": [{"config.period.duration": "soon"}]}, {}, "members[0].config.period.duration"),
        ({"overrides": [{"config.run_id": "same"}, {"config.run_id": "same"}]}, {}, "repeats member 0"),
        ({"n": 3}, {"indexes": [5]}, "outside 0..2"),
        ({"n": 3}, {"run_id_template": "{run_id}_fixed"}, "must contain {index}"),
        ({"n": 3}, {"run_id_template": "{run_id}_{index}_{user}"}, "not user"),
    ],
)
def test_invalid_ensembles_are_config_errors_naming_the_member(tmp_path, members, extra, message):
    path = write(tmp_path, shell_ensemble_doc(tmp_path, "true", members, **extra))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_ensemble(path)


def test_cli_rejects_invalid_ensembles_with_exit_2(tmp_path):
    path = write(tmp_path, shell_ensemble_doc(tmp_path, "true", {"overrides": [{"config.config.nonsense": 1}]}))
    result = run_cli("ensemble", str(path))
    assert result.returncode == 2 and "members[0].config.config.nonsense" in result.stderr
    good = write(tmp_path, shell_ensemble_doc(tmp_path, "true", {"n": 2}), "good.yaml")
    result = run_cli("ensemble", str(good), "--indexes", "0,7")
    assert result.returncode == 2 and "--indexes" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_parse_indexes():
    assert parse_indexes("0,3-5, 9") == [0, 3, 4, 5, 9]
    with pytest.raises(ConfigError):
        parse_indexes("1,x")


def artifact_markdown(key: str) -> str:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def latest():
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return sorted(found, key=lambda a: a.created)[-1].data

    return asyncio.run(latest())


# --- execution -----------------------------------------------------------------------------------------


@pytest.mark.veros
def test_veros_ensemble_members_differ_and_stats_are_the_member_mean(prefect_api, tmp_path):
    from flows.ensemble import model_ensemble

    doc = yaml.safe_load((REPO / "examples" / "veros-ensemble" / "ensemble.yaml").read_text())
    doc["pipeline"]["config"]["output_dir"] = str(tmp_path)
    doc["pipeline"]["config"]["period"]["duration"] = "2d"
    ensemble = EnsembleConfig.model_validate(doc)
    result = model_ensemble(ensemble=ensemble)
    assert [m.status for m in result.members] == ["completed"] * 3
    base = tmp_path / "acc-friction"
    temps = []
    for run_id in ("acc_m000", "acc_m001", "acc_m002"):
        with xr.open_dataset(base / run_id / "acc.snapshot.nc", decode_times=False) as ds:
            temps.append(ds.temp.values)
    assert not np.array_equal(temps[0], temps[2]), "different friction gives different oceans"
    with xr.open_dataset(base / "stats" / "ensemble_stats.nc", decode_times=False) as stats:
        np.testing.assert_allclose(stats.temp_mean.values, np.mean(temps, axis=0), rtol=1e-12)
        np.testing.assert_allclose(stats.temp_spread.values, np.std(temps, axis=0), rtol=1e-9, atol=1e-15)
        assert "psi_mean" in stats
    assert (base / "stats" / "ensemble_stats.temp.png").stat().st_size > 5000


def test_concurrency_never_exceeds_max_parallel_and_starts_are_staggered(prefect_api, tmp_path):
    from flows.ensemble import model_ensemble

    times = tmp_path / "times"
    times.mkdir()
    command = [
        "sh",
        "-c",
        f"date +%s.%N > {times}/{{{{ runtime.run_id }}}}.start; sleep 1.5; "
        f"date +%s.%N > {times}/{{{{ runtime.run_id }}}}.end; touch out.txt",
    ]
    ensemble = EnsembleConfig.model_validate(
        shell_ensemble_doc(tmp_path, command, {"n": 6}, max_parallel=2, stagger_seconds=0.3)
    )
    result = model_ensemble(ensemble=ensemble)
    assert result.count("completed") == 6
    spans = sorted(
        (float((times / f"m_m{i:03d}.start").read_text()), float((times / f"m_m{i:03d}.end").read_text()))
        for i in range(6)
    )
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert overlap == 2, f"at most (and, with 6 members, exactly) 2 at once, got {overlap}"
    starts = [s for s, _ in spans]
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 0.25, "starts are staggered"


def api_runs(kind: str, names: list[str]) -> list:
    """Flow runs or task runs with these names, from the session's Prefect API."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, TaskRunFilter, TaskRunFilterName

    async def read():
        async with get_client() as client:
            if kind == "flow":
                return await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=names)))
            return await client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=names)))

    return asyncio.run(read())


def test_members_are_task_runs_named_by_run_id_not_flow_runs(prefect_api, tmp_path):
    from flows.ensemble import model_ensemble

    doc = shell_ensemble_doc(tmp_path, "touch out.txt", {"n": 3}, name="ens-tasks")
    doc["pipeline"]["config"]["run_id"] = "tr"
    result = model_ensemble(ensemble=EnsembleConfig.model_validate(doc))
    assert result.count("completed") == 3
    names = [f"tr_m{i:03d}" for i in range(3)]
    deadline = time.monotonic() + 30  # task-run states reach the API as events, a moment later
    tasks = api_runs("task", names)
    while len(tasks) < 3 or not all(t.state_name == "Completed" for t in tasks):
        assert time.monotonic() < deadline, [(t.name, t.state_name) for t in tasks]
        time.sleep(0.5)
        tasks = api_runs("task", names)
    assert sorted(t.name for t in tasks) == names
    assert api_runs("flow", names) == [], "no member is a flow run"
    member_dir = tmp_path / "runs" / "ens-tasks" / "tr_m001"
    assert (member_dir / "rompy_tasks_run.json").is_file() and (member_dir / "logs" / "run.log").is_file()


def test_sigterm_to_the_cli_stops_every_running_member(prefect_api, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    command = ["sh", "-c", f"echo $$ > {pids}/{{{{ runtime.run_id }}}}; sleep 300"]
    path = write(tmp_path, shell_ensemble_doc(tmp_path, command, {"n": 4}, max_parallel=2))
    proc = start_cli("ensemble", str(path), api_url=prefect_api)
    try:
        deadline = time.monotonic() + 120
        while len([p for p in pids.iterdir() if p.read_text().strip()]) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        running = [int(p.read_text()) for p in pids.iterdir()]
        assert len(running) == 2, "two members running"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
        assert time.monotonic() - started < 30, "the models did not hold the ensemble up"
        deadline = time.monotonic() + 20
        while not all(process_gone(pid) for pid in running) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(process_gone(pid) for pid in running), "every running member's model was stopped"
        assert len(list(pids.iterdir())) == 2, "no further member started"
    finally:
        proc.kill()
        proc.wait()


def test_retries_failures_and_allow_failures(prefect_api, tmp_path):
    from flows.ensemble import model_ensemble

    # member 0 fails once then succeeds; member 1 always fails; member 2 succeeds
    command = [
        "sh",
        "-c",
        "n=$(cat ../n{{ config.parameters.seed }} 2>/dev/null || echo 0); n=$((n+1)); "
        "echo $n > ../n{{ config.parameters.seed }}; touch out.txt; "
        "if [ {{ config.parameters.seed }} = 1 ]; then exit 3; fi; "
        "if [ {{ config.parameters.seed }} = 0 ] && [ $n = 1 ]; then exit 3; fi",
    ]
    doc = shell_ensemble_doc(tmp_path, command, {"n": 3}, retries=1, allow_failures=1)
    result = model_ensemble(ensemble=EnsembleConfig.model_validate(doc))
    by_index = {m.index: m for m in result.members}
    assert (by_index[0].status, by_index[0].attempts) == ("completed", 2)
    assert (by_index[1].status, by_index[1].attempts, by_index[1].exit_code) == ("failed", 2, 3)
    assert (by_index[2].status, by_index[2].attempts) == ("completed", 1)
    summary = artifact_markdown("ensemble-ens")
    assert "| 1 | m_m001 | `config.config.parameters.seed=1` | failed | 2 |" in summary
    assert "1 failed" in summary.splitlines()[0]

    doc["allow_failures"] = 0
    doc["name"] = "ens-strict"
    for f in (tmp_path / "runs").glob("ens/n*"):
        f.unlink()
    with pytest.raises(RuntimeError, match="more than allow_failures=0"):
        model_ensemble(ensemble=EnsembleConfig.model_validate(doc))


def test_pre_and_post_batch_commands(prefect_api, tmp_path):
    from flows.ensemble import model_ensemble

    doc = shell_ensemble_doc(
        tmp_path,
        "touch out.txt",
        {"n": 1},
        pre_batch=["sh -c 'echo pre > pre.txt'"],
        post_batch=["sh -c 'ls records > post.txt'"],
    )
    model_ensemble(ensemble=EnsembleConfig.model_validate(doc))
    where = tmp_path / "runs" / "ens"
    assert (where / "pre.txt").read_text() == "pre\n"
    assert "m_m000.json" in (where / "post.txt").read_text()

    doc.update(name="ens-broken", pre_batch=["sh -c 'echo cannot stage forcing; exit 4'"])
    with pytest.raises(StageError, match="pre_batch command .* failed with exit code 4"):
        model_ensemble(ensemble=EnsembleConfig.model_validate(doc))
    assert not (tmp_path / "runs" / "ens-broken" / "m_m000").exists(), "no member ran"


def test_changed_member_config_reruns_only_that_member(prefect_api, tmp_path):
    from flows.ensemble import model_ensemble

    doc = shell_ensemble_doc(tmp_path, "sh -c 'echo {{ config.parameters.seed }} > out.txt'", {"n": 3})
    first = model_ensemble(ensemble=EnsembleConfig.model_validate(doc))
    assert first.count("completed") == 3
    doc["members"] = {"n": 3, "seed_start": 0}
    doc["pipeline"]["config"]["config"]["parameters"] = {"extra": 1}  # changes every member's config
    doc["indexes"] = [1]
    second = model_ensemble(ensemble=EnsembleConfig.model_validate(doc))
    assert [(m.index, m.status) for m in second.members] == [(1, "completed")]
    doc["indexes"] = None
    third = model_ensemble(ensemble=EnsembleConfig.model_validate(doc))
    assert [m.status for m in third.members] == ["completed", "skipped", "completed"]


def test_resume_after_sigkill_loses_and_duplicates_nothing(prefect_api, tmp_path):
    completions = tmp_path / "completions.log"
    command = ["sh", "-c", f"sleep 1; echo {{{{ runtime.run_id }}}} >> {completions}; touch out.txt"]
    path = write(tmp_path, shell_ensemble_doc(tmp_path, command, {"n": 6}, max_parallel=2))
    records = tmp_path / "runs" / "ens" / "records"
    proc = start_cli("ensemble", str(path), api_url=prefect_api)
    deadline = time.monotonic() + 120
    while len(list(records.glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in records.glob("*.json")}
    assert 2 <= len(done_before) < 6, "killed in the middle"
    time.sleep(1.5)  # anything the kill left running would finish (and be seen) by now

    result = run_cli("ensemble", str(path), env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stderr[-2000:]
    history = (records / "history.log").read_text().split("\n")
    recorded = [line.split()[1] for line in history if line]
    assert sorted(recorded) == [f"m_m{i:03d}" for i in range(6)], "each member recorded complete exactly once"
    ran = completions.read_text().split()
    for run_id in done_before:
        assert ran.count(run_id) == 1, f"{run_id} completed before the kill and did not run again"
    assert set(ran) == {f"m_m{i:03d}" for i in range(6)}
    summary = json.loads((records / "m_m005.json").read_text())
    assert summary["status"] == "completed" and len(summary["config_hash"]) == 64


def test_a_completion_whose_history_line_a_kill_cut_off_is_added_and_not_run_again(prefect_api, tmp_path):
    """A kill between a member's record and its history line (the resume above hit it once in
    about five runs): the next run adds the line from the record and runs nothing again."""
    completions = tmp_path / "completions.log"
    command = ["sh", "-c", f"echo {{{{ runtime.run_id }}}} >> {completions}; touch out.txt"]
    path = write(tmp_path, shell_ensemble_doc(tmp_path, command, {"n": 2}))
    assert run_cli("ensemble", str(path), env={"PREFECT_API_URL": prefect_api}).returncode == 0
    history = tmp_path / "runs" / "ens" / "records" / "history.log"
    lines = history.read_text().splitlines()
    cut = next(line for line in lines if " m_m001 " in line)
    history.write_text("".join(f"{line}\n" for line in lines if line != cut))  # as the kill left it

    again = run_cli("ensemble", str(path), env={"PREFECT_API_URL": prefect_api})
    assert again.returncode == 0, again.stderr[-2000:]
    assert "member m_m001: its completion was missing from history.log" in again.stderr, again.stderr[-2000:]
    assert sorted(history.read_text().splitlines()) == sorted(lines), "the same completions, each once"
    assert sorted(completions.read_text().split()) == ["m_m000", "m_m001"], "nothing ran again"


def test_deployment_overrides_change_single_fields_and_are_validated(tmp_path):
    from rompy_tasks.ensemble import apply_ensemble_overrides

    base = EnsembleConfig.model_validate(shell_ensemble_doc(tmp_path, "true", {"n": 2}))
    changed = apply_ensemble_overrides(base, {"max_parallel": 5, "pipeline.config.period.duration": "2h"})
    assert changed.max_parallel == 5 and changed.pipeline.config.period.seconds == 7200
    assert base.max_parallel is None, "the original is untouched"
    with pytest.raises(ConfigError) as caught:
        apply_ensemble_overrides(base, {"max_parallel": 0, "members.n": "many"})
    assert {p.loc for p in caught.value.problems} >= {"max_parallel", "members.n"}


def test_a_member_whose_manifest_could_not_be_written_says_so_and_the_next_run_writes_it(prefect_api, tmp_path):
    """Issue 28.5: was recorded completed silently (the failure logged at debug level)."""
    runs_log = tmp_path / "model-runs.log"
    block = "mkdir -p rompy_tasks_run.json"  # the manifest's name taken by a directory: it cannot be written
    command = ["sh", "-c", f"echo {{{{ runtime.run_id }}}} >> {runs_log}; {block}; touch out.txt"]
    path = write(tmp_path, shell_ensemble_doc(tmp_path, command, {"n": 2}))
    env = {"PREFECT_API_URL": prefect_api}
    first = run_cli("ensemble", str(path), env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "its manifest could not be written" in first.stderr, "a warning the user sees"
    records = tmp_path / "runs" / "ens" / "records"
    assert json.loads((records / "m_m000.json").read_text())["manifest_missing"] is True
    for member in ("m_m000", "m_m001"):
        (tmp_path / "runs" / "ens" / member / "rompy_tasks_run.json").rmdir()  # the disk has room again

    second = run_cli("ensemble", str(path), env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert sorted(runs_log.read_text().split()) == ["m_m000", "m_m001"], "no model ran again"
    manifest = json.loads((tmp_path / "runs" / "ens" / "m_m000" / "rompy_tasks_run.json").read_text())
    assert manifest["result"]["status"] == "completed"
    record = json.loads((records / "m_m000.json").read_text())
    assert record["manifest_missing"] is False and record["status"] == "completed"
    assert "wrote its missing manifest" in second.stderr
