"""Issue 27.2 and 27.4: a shared host (an HPC login node), with a second local user.

The local Prefect server requires an auth string and keeps its database in 0700 directories;
a data directory another user made first is refused, so the CLI never talks to their socket
and never signals a pid they name.
"""

import json
import os
import pwd
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import CLI, REPO, process_gone

from rompy_tasks.backends.guard import api_headers

OTHER = "rt-other"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a second local user is created as root")


@pytest.fixture(scope="session")
def other_user() -> pwd.struct_passwd:
    """A second, unprivileged local user (created once; left for later sessions)."""
    try:
        return pwd.getpwnam(OTHER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", OTHER], check=True)  # noqa: S607
        return pwd.getpwnam(OTHER)


def as_other(user: pwd.struct_passwd, code: str, **kwargs) -> subprocess.Popen:
    """Python `code` run as the other user (no groups of ours, their own home)."""
    env = {"HOME": user.pw_dir, "PATH": "/usr/bin:/bin"}
    command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    return subprocess.Popen([*command, sys.executable, "-I", "-c", code], env=env, cwd="/", **kwargs)  # noqa: S603


@pytest.fixture
def shared_dir():
    """A directory every user can enter, as a home or a project directory often is (0755)."""
    path = Path(tempfile.mkdtemp(prefix="rt-shared-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)  # noqa: S607 - the other user's files too


def cli(*args: str, data: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    full.update(ROMPY_TASKS_DATA_DIR=str(data), PYTHONPATH=str(REPO), PREFECT_SERVER_ANALYTICS_ENABLED="false", **env)
    return subprocess.run([*CLI, *args], env=full, cwd=data, capture_output=True, text=True, timeout=300)


def test_the_local_server_needs_its_auth_string_and_its_database_is_private(other_user, shared_dir):
    started = cli("server", "start", data=shared_dir)
    assert started.returncode == 0, started.stderr[-2000:]
    home = shared_dir / "rompy-tasks"
    try:
        state = json.loads((home / "server" / "server.json").read_text())
        api = f"http://127.0.0.1:{state['port']}/api"
        for directory in (home, home / "server", home / "server" / "prefect-home"):
            assert directory.stat().st_mode & 0o777 == 0o700, directory
        auth = home / "server" / "auth"
        assert auth.stat().st_mode & 0o777 == 0o600 and "UI login" in started.stdout
        assert str(auth) in started.stdout and auth.read_text().strip() not in started.stdout + started.stderr

        # the other user: no database, no API without the auth string (Secret blocks included)
        probe = f"""
import json, urllib.request, urllib.error
db = {str(home / "server" / "prefect-home" / "prefect.db")!r}
try:
    open(db, "rb").read(1); print("db: read")
except OSError as e:
    print("db:", type(e).__name__)
for path, body in (("/flow_runs/filter", {{}}), ("/block_documents/filter", {{"include_secrets": True}})):
    request = urllib.request.Request({api!r} + path, data=json.dumps(body).encode(), method="POST",
                                     headers={{"Content-Type": "application/json"}})
    try:
        urllib.request.urlopen(request, timeout=10); print(path, 200)
    except urllib.error.HTTPError as e:
        print(path, e.code)
"""
        seen = as_other(other_user, probe, stdout=subprocess.PIPE, text=True).communicate(timeout=60)[0]
        assert seen.splitlines() == [
            "db: PermissionError",
            "/flow_runs/filter 401",
            "/block_documents/filter 401",
        ], seen
        # its owner's commands send it: a run through the CLI is in the server's history
        pipeline = shared_dir / "p.yaml"
        pipeline.write_text(
            yaml.safe_dump(
                {
                    "config": {
                        "run_id": "private",
                        "output_dir": str(shared_dir / "runs"),
                        "period": {"start": "2026-01-01", "duration": "1h"},
                        "config": {"model_type": "shell", "command": "true"},
                    },
                    "postprocessor": [],
                }
            )
        )
        ran = cli("run", str(pipeline), data=shared_dir, ROMPY_TASKS_WARM="0")
        assert ran.returncode == 0, ran.stderr[-2000:]
        request = urllib.request.Request(
            f"{api}/flow_runs/filter", data=b"{}", method="POST", headers=api_headers(auth.read_text().strip())
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert "private" in {run["name"] for run in json.loads(response.read())}
    finally:
        cli("server", "stop", data=shared_dir)


def test_a_data_directory_another_user_made_first_is_never_trusted(other_user, shared_dir, prefect_api):
    """Their socket gets nothing of ours; their pid file makes us signal nothing; we say why."""
    shared_dir.chmod(0o1777)  # like /tmp: anyone may create the rompy-tasks directory first
    commands = shared_dir / "rompy-tasks" / "commands"
    key = subprocess.run(
        [sys.executable, "-c", "from flows.command_socket import environment_key; print(environment_key())"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    victim = subprocess.Popen(["sleep", "120"], start_new_session=True)  # noqa: S607 - a process of ours
    trap = f"""
import fcntl, os, socket, sys
os.makedirs({str(commands)!r}, mode=0o777, exist_ok=True)
os.chmod({str(shared_dir / "rompy-tasks")!r}, 0o777); os.chmod({str(commands)!r}, 0o777)
lock = open({str(commands / (key + ".lock"))!r}, "w"); fcntl.flock(lock, fcntl.LOCK_EX)
open({str(commands / (key + ".pid"))!r}, "w").write("{victim.pid}\\n")
listener = socket.socket(socket.AF_UNIX); listener.bind({str(commands / (key + ".sock"))!r})
os.chmod({str(commands / (key + ".sock"))!r}, 0o777); listener.listen(1); listener.settimeout(60)
print("ready", flush=True)
try:
    connection, _ = listener.accept(); print("received", len(connection.recv(1 << 16)), flush=True)
except TimeoutError:
    print("nothing", flush=True)
"""
    attacker = as_other(other_user, trap, stdout=subprocess.PIPE, text=True)
    try:
        assert attacker.stdout.readline().strip() == "ready"
        pipeline = shared_dir / "p.yaml"
        pipeline.write_text(
            yaml.safe_dump(
                {
                    "config": {
                        "run_id": "mine",
                        "output_dir": str(Path(tempfile.mkdtemp(prefix="rt-runs-"))),
                        "period": {"start": "2026-01-01", "duration": "1h"},
                        "config": {"model_type": "shell", "command": "true"},
                    },
                    "postprocessor": [],
                }
            )
        )
        ran = cli("run", str(pipeline), data=shared_dir, PREFECT_API_URL=prefect_api, SECRET_TOKEN="s3cr3t")
        assert ran.returncode == 0, ran.stderr[-2000:]  # it ran here, not in their "warm process"

        stop = cli("server", "stop", data=shared_dir)
        assert stop.returncode == 1 and f"owned by uid {other_user.pw_uid}" in stop.stderr
        assert "ROMPY_TASKS_DATA_DIR" in stop.stderr
        time.sleep(0.5)
        assert not process_gone(victim.pid), "the pid their file named was not signalled"
    finally:
        attacker.kill()
        seen = attacker.communicate(timeout=30)[0]
        victim.kill()
        victim.wait()
    assert "received" not in seen, "our environment and terminal never reached their socket"
