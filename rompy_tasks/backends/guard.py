"""A watchdog that takes an orchestrator's models down with it, even after SIGKILL.

`PR_SET_PDEATHSIG` reaches only the model's direct child; a model started through a wrapper
(`sh -c 'a & b & wait'`, an `mpirun`, a launcher script) would leave its children running
beside a re-run in the same directory. So each orchestrator process starts one guard: a
small stdlib-only Python process, in its own session (terminal signals do not reach it),
that reads what to watch from a pipe only the orchestrator holds:

    +group <pgid>    -group <pgid>     a model's process group (local backend, SLURM worker)
    +run <tag> <cgroup or ->  -run ...  a model run's containment: every process of its cgroup, and
                                       every process whose environment carries its tag
    +slurm <name>    -slurm <name>     SLURM jobs named <name> (one ensemble's worker jobs)
    +container <name>  -container <name>   a model's Docker container
    +flowrun <id> <api url>  -flowrun <id>   a Prefect flow run this process orchestrates
    +record <task run id> <time> <path>   a task run (an ensemble member) that has ended once <path>
                                       is written after <time> (the member's submission)

A model's descendants may leave its process group (`setsid`: MPI launchers, daemonising
wrappers), so each model run is also contained: in a cgroup of its own where cgroup v2 is
writable (killed at once with `cgroup.kill`), and always by a tag in its environment
(ROMPY_TASKS_RUN_TAG), which every descendant inherits unless it clears its environment.

When the pipe ends (the orchestrator exited or died, however) or the guard is sent SIGTERM (a
SLURM job being cancelled), it SIGKILLs every group and contained run still listed, cancels
every SLURM job still listed, kills every container still listed (the next docker run removes
it) and marks each listed flow run that is not yet final, its unfinished subflow runs and their
unfinished task runs Crashed, so the UI does not show a dead run Running forever. A flow run
that ended normally is taken off the list (after its state events were delivered: the API may
still report a finished member as Running while its Completed event is in flight, and a forced
Crashed would win), and a task run whose completion record is on disk is never marked Crashed.
The guard runs this file as a script (`python -I -S guard.py`), so it imports nothing of ours;
`watch`/`unwatch` are the orchestrator's side.
"""

import os
import signal
import subprocess
import sys
import threading
import time

_lock = threading.Lock()
_pipe: tuple[int, int] | None = None  # (pid of the orchestrator that started the guard, write end)
_guard: subprocess.Popen | None = None


def _send(line: str) -> None:
    """Tell this process's guard one line, starting the guard first if this process has none."""
    global _pipe, _guard
    with _lock:
        if _pipe is None or _pipe[0] != os.getpid():  # none yet, or inherited through a fork
            read_end, write_end = os.pipe()  # both ends close-on-exec: no model inherits them
            _guard = subprocess.Popen(  # noqa: S603 - our own script, no shell
                [sys.executable, "-I", "-S", __file__],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            os.close(read_end)
            _pipe = (os.getpid(), write_end)
        try:
            os.write(_pipe[1], (line + "\n").encode())
        except BrokenPipeError:  # someone killed the guard: the next line starts a new one
            os.close(_pipe[1])
            _pipe = None


def watch(kind: str, value: object) -> None:
    """Kill this (`group` pgid) or cancel these (`slurm` job name) if this process dies."""
    _send(f"+{kind} {value}")


def watch_flow_run(flow_run_id: object, api_url: str) -> None:
    """Mark this flow run (and its unfinished children) Crashed if this process dies before it ends."""
    _send(f"+flowrun {flow_run_id} {api_url}")


def watch_record(task_run_id: object, record: object) -> None:
    """Never mark this task run Crashed once `record` is written (it ended; its state may be in flight).

    Call it when the task run is submitted: a record written before then is an earlier run's."""
    _send(f"+record {task_run_id} {time.time()} {record}")


def release_flow_run(flow_run_id: object) -> None:
    """This flow run ended normally: leave it and its children to their own final states."""
    _send(f"-flowrun {flow_run_id}")


def unwatch(kind: str, value: object) -> None:
    """Forget what `watch` registered (it ended normally)."""
    _send(f"-{kind} {value}")


RUN_TAG = "ROMPY_TASKS_RUN_TAG"
CGROUP_PREFIX = "rompy-tasks-run-"


def run_cgroup(tag: str) -> str | None:
    """A new cgroup v2 for one model run, beside this process's own; None where none can be made.

    Made under this process's cgroup in the writable cgroup2 hierarchy (a container, a root
    service, a SLURM job's step with delegation); elsewhere the tag alone contains the run.
    """
    try:
        own = next(line[3:].strip() for line in open("/proc/self/cgroup") if line.startswith("0::"))
        mounts = [line.split(" - ") for line in open("/proc/self/mountinfo")]
        mount = next(fields[0].split()[4] for fields in mounts if len(fields) == 2 and fields[1].startswith("cgroup2 "))
        path = os.path.join(mount, own.lstrip("/"), CGROUP_PREFIX + tag)
        os.mkdir(path, 0o755)
    except (OSError, StopIteration, IndexError):
        return None
    return path


def kill_run(tag: str, cgroup: str | None) -> int:
    """SIGKILL every process of one model run: its cgroup, then anything carrying its tag. How many."""
    killed = 0
    if cgroup:
        try:
            with open(os.path.join(cgroup, "cgroup.procs")) as procs:
                killed += len(procs.read().split())
            with open(os.path.join(cgroup, "cgroup.kill"), "w") as kill:
                kill.write("1")
        except OSError:
            pass
    killed += _kill_tagged(f"{RUN_TAG}={tag}".encode())
    if cgroup:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.rmdir(cgroup)  # only once empty (dying processes leave it within milliseconds)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    return killed


def _kill_tagged(marker: bytes) -> int:
    """SIGKILL the processes (of this user; any as root) whose environment has `marker`, until none."""
    killed = 0
    for _ in range(10):  # a process may fork while we look: look again until nothing is found
        found = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as environ:
                    if marker + b"\0" not in environ.read() + b"\0":
                        continue
                os.kill(int(entry), signal.SIGKILL)
                found += 1
            except OSError:
                continue
        killed += found
        if not found:
            break
    return killed


class _Terminated(Exception):
    pass


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def main() -> None:
    runs: set[tuple[str, str | None]] = set()
    signal.signal(signal.SIGTERM, _terminated)
    groups: set[int] = set()
    slurm_names: set[str] = set()
    containers: set[str] = set()
    flow_runs: dict[str, str] = {}
    records: dict[str, tuple[str, float]] = {}  # task run id: (record path, when it was listed)
    try:
        for line in sys.stdin:
            op, _, arg = line.strip().partition(" ")
            if op in ("+group", "-group") and arg.isdigit():
                (groups.add if op == "+group" else groups.discard)(int(arg))
            elif op in ("+run", "-run") and " " in arg:
                tag, cgroup = arg.split(" ", 1)
                (runs.add if op == "+run" else runs.discard)((tag, None if cgroup == "-" else cgroup))
            elif op in ("+slurm", "-slurm") and arg:
                (slurm_names.add if op == "+slurm" else slurm_names.discard)(arg)
            elif op in ("+container", "-container") and arg:
                (containers.add if op == "+container" else containers.discard)(arg)
            elif op == "+flowrun" and " " in arg:
                run_id, api_url = arg.split(" ", 1)
                flow_runs[run_id] = api_url
            elif op == "-flowrun" and arg:
                flow_runs.pop(arg, None)
            elif op == "+record" and arg.count(" ") >= 2:
                task_run_id, since, path = arg.split(" ", 2)
                records[task_run_id] = (path, float(since))
    except _Terminated:  # SIGTERM: clean up now, as if the orchestrator had gone
        pass
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    for tag, cgroup in runs:
        kill_run(tag, cgroup)
    for name in slurm_names:
        # only our own jobs of that name (as root, another user's job may share it)
        mine = ["scancel", "--name", name, "--user", str(os.getuid())]
        subprocess.run(mine, check=False, capture_output=True)  # noqa: S603, S607
    for name in containers:
        try:
            kill_container(name)
        except OSError:  # the engine is gone too: it stopped the container itself
            pass
    for run_id, api_url in flow_runs.items():
        try:
            crash_unfinished(api_url, run_id, ended={t for t, r in records.items() if _written_since(*r)})
        except OSError:  # the API is gone too: nothing to correct
            pass


def _written_since(path: str, since: float) -> bool:
    """True if `path` was written after `since` (a record left by an earlier run does not count).

    A second of slack: file times come from the kernel's coarse clock, a little behind time.time()."""
    try:
        return os.stat(path).st_mtime >= since - 1
    except OSError:
        return False


def kill_container(name: str) -> None:
    """SIGKILL a container through the Docker engine's API at DOCKER_HOST (unix socket or plain tcp)."""
    import http.client
    import socket
    import urllib.parse

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    where = urllib.parse.urlparse(host)
    if where.scheme == "unix":

        class UnixConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(self.timeout)
                self.sock.connect(where.path)

        connection: http.client.HTTPConnection = UnixConnection("localhost", timeout=30)
    elif where.scheme in ("tcp", "http"):
        connection = http.client.HTTPConnection(where.hostname or "localhost", where.port or 2375, timeout=30)
    else:
        return  # TLS engines: the next run's leftover cleanup removes it
    connection.request("POST", f"/containers/{urllib.parse.quote(name)}/kill")
    connection.getresponse().read()
    connection.close()


UNFINISHED = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"]
CRASH_MESSAGE = "the process orchestrating this run died (its guard marked it Crashed)"
CANCEL_MESSAGE = "cancelled: the process orchestrating this run ended while it was being cancelled"


def api_headers(auth_string: str | None = None) -> dict[str, str]:
    """Headers for a raw Prefect REST call, authenticated as Prefect's client would be.

    `auth_string` (the server's auth string), else PREFECT_API_AUTH_STRING or PREFECT_API_KEY.
    """
    import base64

    headers = {"Content-Type": "application/json"}
    if auth := auth_string or os.environ.get("PREFECT_API_AUTH_STRING"):
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    elif key := os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _api(api_url: str, method: str, path: str, body: dict | None = None, auth: str | None = None) -> object:
    import json
    import urllib.request

    headers = api_headers(auth)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(api_url.rstrip("/") + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the orchestrator's API URL
        return json.loads(response.read() or b"null")


def list_flow_runs(api_url: str, query: dict, auth: str | None = None) -> list[dict]:
    """Every flow run `query` (a /flow_runs/filter body) matches."""
    return _filtered(api_url, "/flow_runs/filter", query, auth)


def _filtered(api_url: str, path: str, query: dict, auth: str | None) -> list[dict]:
    """Every object a filter endpoint matches, page by page (the API returns at most 200 at once)."""
    found: list[dict] = []
    while page := _api(api_url, "POST", path, {**query, "offset": len(found), "limit": 200}, auth):
        found += page
        if len(page) < 200:
            break
    return found


def crash_unfinished(api_url: str, flow_run_id: str, ended: set[str] = frozenset(), auth: str | None = None) -> None:
    """Mark the flow run, its subflow runs and all their task runs Crashed where not yet final.

    Task runs in `ended` finished (their records are on disk): their final states may still be
    on the way to the API, so they are left alone. A flow run being cancelled (Cancelling) ends
    Cancelled, not Crashed: its process ended because it was asked to (a Crashed would show, and
    alert, until the worker's Cancelled replaced it)."""
    crashed = {"state": {"type": "CRASHED", "name": "Crashed", "message": CRASH_MESSAGE}, "force": True}
    cancelled = {"state": {"type": "CANCELLED", "name": "Cancelled", "message": CANCEL_MESSAGE}, "force": True}
    children = list_flow_runs(api_url, {"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}}, auth)
    flow_ids = [flow_run_id] + [run["id"] for run in children]
    for run_id in flow_ids:
        state_type = _api(api_url, "GET", f"/flow_runs/{run_id}", auth=auth)["state_type"]
        if state_type in UNFINISHED:
            final = cancelled if state_type == "CANCELLING" else crashed
            _set_state(api_url, f"/flow_runs/{run_id}/set_state", final, auth)
    tasks = _filtered(
        api_url,
        "/task_runs/filter",
        {"flow_runs": {"id": {"any_": flow_ids}}, "task_runs": {"state": {"type": {"any_": UNFINISHED}}}},
        auth,
    )
    for task_run in tasks:
        if task_run["id"] not in ended:
            _set_state(api_url, f"/task_runs/{task_run['id']}/set_state", crashed, auth)


def _set_state(api_url: str, path: str, body: dict, auth: str | None = None) -> None:
    """One state change; a run that vanished or refuses does not stop the others."""
    import urllib.error

    try:
        _api(api_url, "POST", path, body, auth)
    except urllib.error.HTTPError:
        pass


if __name__ == "__main__":
    main()
