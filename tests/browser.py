"""Headless Chromium driven through its DevTools protocol: a UI form filled and submitted as a user does.

Debian's chromium, no driver package: the browser prints its DevTools websocket address, and
each step is one protocol command (`Page.navigate`, `Runtime.evaluate`) over websockets.
"""

import itertools
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect


class Browser:
    """One headless Chromium with one page; `evaluate` runs JavaScript in it and returns the value."""

    def __init__(self, chromium: str, flags: list[str]):
        self.profile = tempfile.TemporaryDirectory(prefix="rt-chromium-")
        self.process = subprocess.Popen(
            [chromium, *flags, "--remote-debugging-port=0", f"--user-data-dir={self.profile.name}", "about:blank"],
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if match := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                port = int(match.group(1))
        assert port is not None, "Chromium did not start its DevTools endpoint"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.loads(response.read()) if t["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.ids = itertools.count(1)
        self.failed_requests: list[tuple[int, str, str]] = []  # (status, url, request id) seen while waiting
        self.send("Network.enable")

    def send(self, method: str, **params: Any) -> dict:
        ident = next(self.ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == ident:
                assert "error" not in message, message["error"]
                return message.get("result", {})
            if message.get("method") == "Network.responseReceived":
                response = message["params"]["response"]
                if response["status"] >= 400:
                    self.failed_requests.append((response["status"], response["url"], message["params"]["requestId"]))

    def evaluate(self, script: str) -> Any:
        result = self.send("Runtime.evaluate", expression=script, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, script: str, seconds: float = 60) -> Any:
        """Poll `script` until it returns something truthy; that value."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(script)
            except AssertionError as err:  # the page navigated (a redirect, the app's router) mid-evaluation
                if "navigated or closed" not in str(err):
                    raise
                value = None
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for: {script}; page text: {self.text()[:2000]}")

    def response_body(self, request_id: str) -> str:
        try:
            return self.send("Network.getResponseBody", requestId=request_id).get("body", "")
        except AssertionError:  # the browser has let it go
            return ""

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def close(self) -> None:
        """Kill Chromium and every helper process it started (they write into the profile until
        they die: removing it before failed with "Directory not empty"), then remove the profile."""
        self.socket.close()
        group = self.process.pid  # its own session: the renderers, GPU and crash handlers are in it
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        deadline = time.monotonic() + 10
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.profile.cleanup()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _group_alive(group: int) -> bool:
    """Any live (not zombie) process in process group `group`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


# JavaScript helpers for Prefect's forms (plain DOM: the UI is Vue, which listens to input events)
CLICK_BUTTON = """(label) => {
  const button = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === label);
  if (!button) return false;
  button.click();
  return true;
}"""
FIND_FIELD = """(label) => {
  const node = [...document.querySelectorAll('label, legend, span, p')].find(n => n.innerText.trim().startsWith(label));
  if (!node) return null;
  let box = node.closest('.p-label, .p-form-group, fieldset, div');
  let input = null;
  for (let up = 0; box && !input && up < 6; up++, box = box.parentElement) input = box.querySelector('input, textarea');
  return input;
}"""
FIELD_VALUE = f"""(label) => {{
  const input = ({FIND_FIELD})(label);
  return input ? input.value : null;
}}"""
FILL_FIELD = f"""(label, value) => {{
  const input = ({FIND_FIELD})(label);
  if (!input) return 'no input';
  const setter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(input), 'value').set;
  setter.call(input, value);
  input.dispatchEvent(new Event('input', {{bubbles: true}}));
  input.dispatchEvent(new Event('change', {{bubbles: true}}));
  input.dispatchEvent(new Event('blur', {{bubbles: true}}));
  return 'ok';
}}"""
