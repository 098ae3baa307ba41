"""The operational setup end to end: scripts/operate (real `prefect server start`, process pool,
`prefect deploy` of deployments/prefect.yaml, a real worker), then runs triggered the three ways
users trigger them: `prefect deployment run --param` from the shell, a scheduled run created
through the API, and the UI's run form (rendered by headless Chromium)."""

import base64
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import process_gone
from helpers import wait_for
from operated import OPERATE, PREFECT, Operated

from rompy_tasks.forecast import cycle_id, floor_cycle

pytestmark = pytest.mark.e2e

TWELVE_HOURS = timedelta(hours=12)


@pytest.mark.veros
def test_pipeline_deployment_run_with_field_overrides(operated):
    ran = operated.deployment_run(
        "model-pipeline/veros-acc", 'overrides={"config.period.duration": "2d", "config.run_id": "from-the-shell"}'
    )
    assert ran.returncode == 0 and "Completed" in ran.stdout, ran.stdout[-1500:] + operated.worker_log()
    assert operated.flow_run_of(ran)["name"] == "from-the-shell", "the run is named after its overridden run id"
    staging = operated.runs / "from-the-shell"
    assert "runlen 172800" in (staging / "logs" / "run.log").read_text(), "the override reached the model"
    assert sorted(p.name for p in (staging / "plots").glob("*.png")) == ["acc.energy.k_m.png", "acc.snapshot.temp.png"]


@pytest.mark.veros
def test_the_scheduled_start_time_drives_the_cycle_then_a_shell_run_hot_starts_from_it(operated):
    deployment = operated.deployment("model-forecast/veros-acc-forecast")
    # the schedules from prefect.yaml: 00Z and 12Z, in UTC (the 00Z length is in the forecast itself)
    schedules = {s["schedule"]["cron"]: s for s in deployment["schedules"]}
    assert set(schedules) == {"0 0 * * *", "0 12 * * *"}
    assert all(s["schedule"]["timezone"] == "UTC" and s["active"] for s in schedules.values())
    assert deployment["parameters"]["forecast"]["forecast_length_by_hour"] == {"0": "72h"}
    limit = deployment["global_concurrency_limit"]
    assert limit["limit"] == 1 and deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    # the server's scheduler creates the coming runs: 00Z and 12Z
    deadline = time.monotonic() + 120
    while not (upcoming := _scheduled_runs(operated, deployment["id"])):
        assert time.monotonic() < deadline, "the scheduler created no runs (see the server log)"
        time.sleep(2)
    for run in upcoming:
        start = datetime.fromisoformat(run["expected_start_time"])
        assert (start.hour, start.minute, start.second) in {(0, 0, 0), (12, 0, 0)} and start > datetime.now(UTC)

    # a run scheduled 20 h ago (a late one the worker picks up at once): its cycle is that time,
    # floored to 12 h, not the wall clock
    scheduled = datetime.now(UTC) - timedelta(hours=20)
    cycle = floor_cycle(scheduled, TWELVE_HOURS)
    assert cycle != floor_cycle(datetime.now(UTC), TWELVE_HOURS)
    run = operated.api(
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": scheduled.isoformat()}}},
    )
    deadline = time.monotonic() + 300
    while (state := operated.api("GET", f"/flow_runs/{run['id']}")["state"]["type"]) not in {"COMPLETED", "FAILED"}:
        assert time.monotonic() < deadline and state not in {"CRASHED", "CANCELLED"}, state + operated.worker_log()
        time.sleep(2)
    assert state == "COMPLETED", operated.worker_log()
    flow_run = operated.api("GET", f"/flow_runs/{run['id']}")
    assert flow_run["name"] == f"acc-forecast-{cycle_id(cycle)}"
    forecast_dir = operated.runs / "acc-forecast"
    record = json.loads((forecast_dir / "cycles" / f"{cycle_id(cycle)}.json").read_text())
    assert record["status"] == "completed" and record["start"] == "cold"
    # the derived period: a cold start spins up for a day (spinup: 1d) and runs 48 h past the cycle (00Z: 72 h)
    assert datetime.fromisoformat(record["period_start"]) == cycle - timedelta(days=1)
    assert datetime.fromisoformat(record["period_end"]) == cycle + timedelta(hours=72 if cycle.hour == 0 else 48)
    assert (forecast_dir / cycle_id(cycle) / "plots" / "acc.snapshot.surface_taux.png").is_file()

    # the next cycle from the shell: it hot-starts from the scheduled one
    following = cycle + TWELVE_HOURS
    ran = operated.deployment_run("model-forecast/veros-acc-forecast", f"cycle={following.isoformat()}")
    assert ran.returncode == 0 and "Completed" in ran.stdout, ran.stdout[-1500:] + operated.worker_log()
    record = json.loads((forecast_dir / "cycles" / f"{cycle_id(following)}.json").read_text())
    assert (record["status"], record["start"], record["restart_cycle"]) == ("completed", "hot", cycle_id(cycle))
    assert (forecast_dir / cycle_id(following) / "acc.snapshot.nc").is_file()

    artifacts = operated.api(
        "POST",
        "/artifacts/filter",
        {"artifacts": {"key": {"any_": [f"forecast-acc-forecast-{cycle_id(following).lower()}"]}}},
    )
    assert artifacts and "hot start" in artifacts[0]["data"], "the per-cycle summary artifact"


def _scheduled_runs(operated: Operated, deployment_id: str) -> list[dict]:
    query = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}
    return [r for r in operated.api("POST", "/flow_runs/filter", query) if r["auto_scheduled"]]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-first-run",
    "--virtual-time-budget=20000",
    "--window-size=1400,2400",
]


@contextmanager
def logged_in_ui(operated: Operated, path: str) -> Iterator[str]:
    """A URL that opens the UI at `path` already logged in, as after the UI's login page.

    The UI keeps the auth string in its origin's localStorage; headless Chromium cannot type it,
    so a small same-origin proxy serves a page that stores it, then forwards to the real UI.
    """
    token = base64.b64encode(operated.auth.encode()).decode()

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/__login":
                body = f"<script>localStorage.setItem('prefect-password', '{token}');location='{path}'</script>"
                data, kind, code = body.encode(), "text/html", 200
            else:
                try:
                    accept = {"Accept": self.headers.get("Accept", "*/*")}  # HTML navigation gets the app
                    request = urllib.request.Request(operated.url + self.path, headers=accept)
                    with urllib.request.urlopen(request, timeout=30) as upstream:
                        data, kind, code = upstream.read(), upstream.headers["Content-Type"], upstream.status
                except urllib.error.HTTPError as error:
                    data, kind, code = error.read(), error.headers["Content-Type"], error.code
            self.send_response(code)
            self.send_header("Content-Type", kind or "application/octet-stream")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/__login"
    finally:
        server.shutdown()


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (scripts/test installs Debian's chromium as root)"
)
def test_the_ui_renders_the_forecast_run_form(operated, tmp_path):
    deployment = operated.deployment("model-forecast/veros-acc-forecast")
    with logged_in_ui(operated, f"/deployments/deployment/{deployment['id']}/run") as page:
        dom = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, "--dump-dom", page], capture_output=True, text=True, timeout=120
        )
        shot = tmp_path / "run-form.png"
        subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--screenshot={shot}", page], capture_output=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for label in [  # the locked deployment's narrowed form (issue 26.1): run controls, then its overrides
        "cycle (Optional)",
        "force (Optional)",
        "overrides",
        "Forecast Length (forecast_length)",
        "Forecast Length By Hour (forecast_length_by_hour.*)",
        "Keep Cycles (keep_cycles)",
        "Max Lateness (max_lateness)",
    ]:
        assert f">{label}" in dom.stdout, f"the run form has no field {label!r}"
    for label in ["Cycle Interval", "Spinup", "Lookback Cycles", "Bbox", "allowed_overrides"]:
        assert f">{label}" not in dom.stdout, f"the run form shows {label!r}, which no UI user may change"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_operate_remembers_its_port_and_stops_and_starts_only_the_worker(operated):
    """Issue 26.6: `status` in a new shell found the server down unless the port was set again;
    bringing only the worker back re-deployed (and reset hand-set schedules)."""
    shell = {k: v for k, v in operated.env.items() if k != "ROMPY_TASKS_PORT"}  # a new shell
    status = subprocess.run([OPERATE, "status"], env=shell, capture_output=True, text=True, timeout=60)
    assert f"server: up at http://127.0.0.1:{operated.port}/api" in status.stdout, status.stdout
    deployed_before = operated.deployment("model-pipeline/veros-acc")["updated"]
    stopped = subprocess.run([OPERATE, "stop", "worker"], env=shell, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0 and "stopped worker" in stopped.stderr, stopped.stderr
    status = subprocess.run([OPERATE, "status"], env=shell, capture_output=True, text=True, timeout=60)
    assert "server: up" in status.stdout and "worker: not running" in status.stdout, "the server stays"
    assert "run namer: running" in status.stdout, status.stdout
    _waiting_runs_carry_their_cycle_names(operated)
    started = subprocess.run([OPERATE, "start", "worker"], env=shell, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0 and "starting a worker" in started.stderr, started.stderr
    assert operated.deployment("model-pipeline/veros-acc")["updated"] == deployed_before, "nothing re-deployed"
    ran = operated.deployment_run("model-pipeline/veros-acc")
    assert "Completed" in ran.stdout, ran.stdout[-2000:] + operated.worker_log()[-2000:]


def _waiting_runs_carry_their_cycle_names(operated: Operated) -> None:
    """Issue 26.6, with no worker: the scheduler's coming runs and a late one (created as the
    scheduler does, due three days ago) take their cycle's name before any of them starts."""
    deployment = operated.deployment("model-forecast/veros-acc-forecast")
    due = floor_cycle(datetime.now(UTC), TWELVE_HOURS) - 6 * TWELVE_HOURS
    body = {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due.isoformat()}}}
    late = operated.api("POST", f"/deployments/{deployment['id']}/create_flow_run", body)["id"]
    query = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}

    def misnamed() -> list[tuple[str, str]] | None:
        runs = operated.api("POST", "/flow_runs/filter", query)
        if len(runs) < 3:
            return None  # the scheduler's runs are not all there yet
        expected = [f"acc-forecast-{cycle_id(datetime.fromisoformat(r['expected_start_time']))}" for r in runs]
        return [(r["name"], e) for r, e in zip(runs, expected, strict=True) if r["name"] != e]

    try:
        assert wait_for(lambda: misnamed() == [], 30, interval=1), misnamed()
        assert operated.api("GET", f"/flow_runs/{late}")["name"] == f"acc-forecast-{cycle_id(due)}"
    finally:  # it would run (as Skipped) when the worker is back: the other tests expect no such cycle
        operated.api("DELETE", f"/flow_runs/{late}")


def _runs_by_hand(operated: Operated, deployment_id: str) -> set[str]:
    query = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
    return {r["id"] for r in operated.api("POST", "/flow_runs/filter", query) if not r["auto_scheduled"]}


def _fill_until_it_holds(browser, changes: dict[str, str]) -> None:
    """Fill `changes` (label: value) and check a second later that the form kept them. Under load the UI
    can still be rendering the deployment's parameters into the fields after their labels show, over a
    fill (CI once submitted the deployed value); a user sees the edit vanish and types it again. Once
    the form is settled an edit holds (probed: 75 s unchanged)."""
    from browser import FIELD_VALUE, FILL_FIELD

    def held() -> bool:
        return all(
            browser.evaluate(f"({FIELD_VALUE})({json.dumps(label)})") == value for label, value in changes.items()
        )

    for _ in range(10):
        for label, value in changes.items():
            assert browser.evaluate(f"({FILL_FIELD})({json.dumps(label)}, {json.dumps(value)})") == "ok", label
        time.sleep(1)
        if held():
            return
    raise AssertionError(f"the form did not keep {changes}")


def _submit_form(
    browser, operated: Operated, deployment_id: str, page: str, changes: dict[str, str], ready: str = "(keep_cycles)"
) -> str:
    """Open the custom-run form logged in, fill `changes` (label: value), submit; the new run's id."""
    from browser import CLICK_BUTTON

    before = _runs_by_hand(operated, deployment_id)
    browser.navigate("about:blank")
    browser.wait_for("location.href === 'about:blank'")
    browser.navigate(page)
    # the form is built once the deployment and its schema have loaded: its overrides' fields show
    loaded = f"location.pathname.endsWith('/run') && document.body && document.body.innerText.includes({ready!r})"
    browser.wait_for(loaded)
    time.sleep(1)  # the form's values settle (Vue renders the deployment's parameters into it)
    created: set[str] = set()
    for attempt in range(5):  # SQLite answers 503 under the scheduler's and worker's load: a user waits, clicks again
        time.sleep(2 * attempt)
        _fill_until_it_holds(browser, changes)
        browser.failed_requests.clear()
        assert browser.evaluate(f"({CLICK_BUTTON})('Submit')")
        deadline = time.monotonic() + 30
        while not (created := _runs_by_hand(operated, deployment_id) - before) and time.monotonic() < deadline:
            if any(status == 503 for status, _, _ in browser.failed_requests):
                break
            browser.evaluate("1")  # reads the browser's events (failed requests)
            time.sleep(0.5)
        if created:
            break
    failed = [(status, url, browser.response_body(ident)[:500]) for status, url, ident in browser.failed_requests]
    assert len(created) == 1, f"the form created {len(created)} run(s); failed requests: {failed}"
    return created.pop()


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (scripts/test installs Debian's chromium as root)"
)
def test_the_forecast_run_form_submitted_as_a_user_does(operated):
    """Issue 26.2: the custom-run form of the locked forecast deployment, in headless Chromium:
    submitted unchanged and with one allowed change, each run completes; a disallowed change
    (only the API can send one now) is refused at once, or (a rule beyond the schema) shows the
    user one clear message on the run page."""
    from browser import Browser

    deployment = operated.deployment("model-forecast/veros-acc-forecast")
    form = f"/deployments/deployment/{deployment['id']}/run"
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time-budget")]
    with logged_in_ui(operated, form) as page, Browser(CHROMIUM, flags) as browser:
        unchanged = operated.final_flow_run(_submit_form(browser, operated, deployment["id"], page, {}))
        assert unchanged["state"]["type"] == "COMPLETED", operated.worker_log()
        change = {"Forecast Length (forecast_length)": "P1DT12H"}
        changed_id = _submit_form(browser, operated, deployment["id"], page, change)
        changed = operated.final_flow_run(changed_id)
        assert changed["state"]["type"] == "COMPLETED", operated.worker_log()
        assert changed["parameters"]["overrides"]["forecast_length"] == "P1DT12H", changed["parameters"]

        # a path outside the allowlist is refused by the API itself (the narrowed schema is enforced) ...
        create = f"/deployments/{deployment['id']}/create_flow_run"
        with pytest.raises(urllib.error.HTTPError) as outside:
            operated.api("POST", create, {"parameters": {"overrides": {"spinup": "1d"}}})
        assert outside.value.code == 409 and "spinup" in outside.value.read().decode()
        # ... and a lock rule beyond the schema (fewer cycles kept than deployed) by the flow, as Refused
        refused = operated.api("POST", create, {"parameters": {"overrides": {"keep_cycles": 1}}})
        assert operated.final_flow_run(refused["id"])["state"]["name"] == "Refused"
        browser.navigate(page.replace("/__login", "") + f"/runs/flow-run/{refused['id']}")
        seen = browser.wait_for(
            "document.body && document.body.innerText.includes('keep_cycles') && document.body.innerText"
        )  # the run's logs load after its state
        assert "Refused" in seen and "Traceback" not in seen, seen[:3000]


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (scripts/test installs Debian's chromium as root)"
)
@pytest.mark.parametrize(
    ("name", "label", "value", "path"),
    [
        ("model-pipeline/veros-acc", "Run Id (config.run_id)", "from-the-form", "config.run_id"),
        ("model-ensemble/veros-friction-ensemble", "Max Parallel (max_parallel)", "1", "max_parallel"),
    ],
)
def test_the_other_shipped_run_forms_submitted_as_a_user_does(operated, name, label, value, path):
    """Issue 26.2 for the pipeline and ensemble deployments: unchanged and with one allowed change."""
    from browser import Browser

    deployment = operated.deployment(name)
    ready = f"({path})"
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time-budget")]
    with (
        logged_in_ui(operated, f"/deployments/deployment/{deployment['id']}/run") as page,
        Browser(CHROMIUM, flags) as browser,
    ):
        unchanged = operated.final_flow_run(_submit_form(browser, operated, deployment["id"], page, {}, ready), 600)
        assert unchanged["state"]["type"] == "COMPLETED", operated.worker_log()
        changed_id = _submit_form(browser, operated, deployment["id"], page, {label: value}, ready)
        changed = operated.final_flow_run(changed_id, 600)
        assert changed["state"]["type"] == "COMPLETED", operated.worker_log()
        assert str(changed["parameters"]["overrides"][path]) == value, changed["parameters"]


# --- the deployment path (issue 37.2): a run forked from the worker's warm process ------------


def _warm_process_serving() -> bool:
    """The worker's warm process answers (it starts with the worker and takes a few seconds to import)."""
    import socket

    for path in (Path(os.environ["ROMPY_TASKS_DATA_DIR"]) / "rompy-tasks" / "commands").glob("*.sock"):
        with socket.socket(socket.AF_UNIX) as probe:
            if probe.connect_ex(str(path)) == 0:
                return True
    return False


def _start_deployment_run(operated, run_id: str, duration: str) -> str:
    """`prefect deployment run` without waiting, as an operator types it, on a ready worker; the flow run's id."""
    assert wait_for(_warm_process_serving, 90), "the worker starts its warm process (and restarts it within 30 s)"
    env = {**operated.client_env, "PREFECT_API_AUTH_STRING": operated.auth}
    overrides = json.dumps({"config.run_id": run_id, "config.period.duration": duration})
    ran = subprocess.run(
        [PREFECT, "deployment", "run", "model-pipeline/veros-acc", "--param", f"overrides={overrides}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    return re.search(r"UUID: ([0-9a-f-]{36})", ran.stdout).group(1)


def _processes_of_flow_run(flow_run_id: str) -> dict[int, str]:
    """pid -> command line of every process whose environment names the flow run."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
    return found


def _processes_in(directory: Path) -> list[int]:
    """The processes working in `directory` (a run's model and its launcher)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _flow_process(flow_run_id: str) -> tuple[int, dict[int, str]]:
    """The flow run's own process once its model runs (the parent of its guard), and the processes
    that carry the run's id (a forked process shows the environment it was started with in /proc,
    so the flow process itself is found through its children)."""
    processes: dict[int, str] = {}

    def guarded() -> bool:
        processes.update(_processes_of_flow_run(flow_run_id))
        return any("guard.py" in cmd for cmd in processes.values())

    assert wait_for(guarded, 60, interval=0.05), f"no guard of the run's models: {processes}"
    return _parent(next(pid for pid, cmd in processes.items() if "guard.py" in cmd)), processes


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.veros
def test_a_deployment_run_is_forked_from_the_workers_warm_process(operated):
    """Not a new interpreter importing Prefect (`python -m prefect.engine`): the worker starts
    `rompy-tasks engine <id>`, and the warm process it keeps forks the run with all imported."""
    flow_run_id = _start_deployment_run(operated, "forked", "2d")
    pid, processes = _flow_process(flow_run_id)
    assert "flows.warm" in _cmdline(pid), f"the flow process is a fork of the warm process: {_cmdline(pid)}"
    assert "flows.warm" in _cmdline(_parent(pid)), "forked by the warm process"
    assert any("flows.entry engine " + flow_run_id in cmd for cmd in processes.values()), processes
    assert not any("prefect.engine" in cmd for cmd in processes.values()), processes
    assert operated.final_flow_run(flow_run_id)["state"]["type"] == "COMPLETED", operated.worker_log()
    assert "runlen 172800" in (operated.runs / "forked" / "logs" / "run.log").read_text()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.veros
def test_a_forked_deployment_run_is_cancelled_with_its_model(operated):
    flow_run_id = _start_deployment_run(operated, "cancelled", "300d")
    _flow_process(flow_run_id)
    staging = operated.runs / "cancelled"
    assert wait_for(lambda: (staging / "logs" / "run.log").is_file() and _processes_in(staging), 60)
    env = {**operated.client_env, "PREFECT_API_AUTH_STRING": operated.auth}
    subprocess.run([PREFECT, "flow-run", "cancel", flow_run_id], env=env, check=True, capture_output=True, timeout=60)
    assert operated.final_flow_run(flow_run_id, 120)["state"]["type"] == "CANCELLED", operated.worker_log()
    assert wait_for(lambda: not [p for p in _processes_in(staging) if not process_gone(p)], 30), "the model is gone"
    assert (staging / "logs" / "run.log").is_file(), "a cancelled run keeps its logs"


@pytest.mark.veros
def test_a_killed_forked_deployment_run_is_crashed_and_its_model_stopped(operated):
    flow_run_id = _start_deployment_run(operated, "killed", "300d")
    pid, _ = _flow_process(flow_run_id)
    staging = operated.runs / "killed"
    assert wait_for(lambda: (staging / "logs" / "run.log").is_file() and _processes_in(staging), 60)
    os.kill(pid, signal.SIGKILL)  # the OOM killer's way
    assert operated.final_flow_run(flow_run_id, 120)["state"]["type"] == "CRASHED", operated.worker_log()
    assert wait_for(lambda: not [p for p in _processes_in(staging) if not process_gone(p)], 30), "the guard stopped it"
