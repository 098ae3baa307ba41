"""The documentation site: built strictly by the user's command, its reference generated from the
code (every field of every registered config model), its YAML examples valid, its pages rendered.
"""

import base64
import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`scripts/docs` in a fresh process (mkdocs build --strict: no broken link, every page in the nav)."""
    out = tmp_path_factory.mktemp("docs") / "site"
    built = subprocess.run(
        [str(REPO / "scripts" / "docs")], env={**os.environ, "SITE_DIR": str(out)}, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def page_text(site: Path, page: str) -> str:
    return (site / page / "index.html").read_text()


def test_every_field_of_every_registered_config_model_is_in_the_reference(site):
    from rompy_tasks.ensemble import EnsembleConfig
    from rompy_tasks.forecast import ForecastConfig
    from rompy_tasks.pipeline_config import PipelineBase
    from rompy_tasks.plugins import available

    pages = {
        "reference/models": list(available("config").values()),
        "reference/backends": list(available("run").values()),
        "reference/postprocessors": list(available("postprocess").values()),
        "reference/pipeline": [PipelineBase],
        "reference/ensemble": [EnsembleConfig],
        "reference/forecast": [ForecastConfig],
    }
    missing = []
    for page, models in pages.items():
        text = page_text(site, page)
        for model in models:
            if f'id="{model.__name__.lower()}"' not in text:
                missing.append(f"{page}: section {model.__name__}")
            missing += [
                f"{page}: {model.__name__}.{name}" for name in model.model_fields if f"<code>{name}</code>" not in text
            ]
    assert not missing, missing


def test_every_command_and_deployment_is_in_the_reference(site):
    import typer

    from flows.cli.root import app

    cli = html.unescape(page_text(site, "reference/cli"))
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        names = command.commands if hasattr(command, "commands") else {"": command}
        for sub in names:
            assert f"rompy-tasks {name} {sub}".strip() in cli, f"rompy-tasks {name} {sub}"
    deployments = page_text(site, "reference/deployments")
    for name in ("veros-acc", "veros-friction-ensemble", "veros-acc-forecast", "veros-acc-docker"):
        assert name in deployments


def yaml_examples() -> list[tuple[str, str]]:
    return [
        (f"{path.relative_to(DOCS)}:{text[: match.start()].count(chr(10)) + 1}", match.group(1))
        for path in sorted(DOCS.rglob("*.md"))
        for text in [path.read_text()]
        for match in re.finditer(r"```yaml\n(.*?)```", text, re.S)
    ]


@pytest.mark.parametrize(("where", "example"), yaml_examples(), ids=[w for w, _ in yaml_examples()])
def test_every_yaml_example_in_the_docs_validates(where, example, tmp_path):
    """A fragment (a `backend:`, a `data:` list, an ensemble's keys) validates inside the shipped
    example it belongs to."""
    from rompy_tasks.core.loader import load_document
    from rompy_tasks.ensemble import validate_ensemble
    from rompy_tasks.forecast import validate_forecast
    from rompy_tasks.pipeline import validate_data

    shutil.copytree(REPO / "examples", tmp_path / "examples")  # `!include ../backends/...` as beside the examples
    path = tmp_path / "examples" / "veros-acc" / "example.yaml"
    path.write_text(example)
    doc = load_document(path)
    if "cycle_interval" in doc:
        validate_forecast(doc)
    elif {"members", "max_parallel", "run_id_template"} & set(doc):
        base = load_document(REPO / "examples" / "veros-ensemble" / "ensemble.yaml")
        validate_ensemble({**base, **doc})
    else:
        base = load_document(REPO / "examples" / "veros-acc" / "pipeline.yaml")
        validate_data({**base, **doc})


def test_a_reference_page_renders_its_tables_in_a_browser(site, tmp_path):
    from browser import Browser
    from test_operate import CHROMIUM, CHROMIUM_FLAGS

    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (scripts/test installs Debian's chromium as root)")
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time-budget")]
    with Browser(CHROMIUM, [*flags, "--window-size=1280,1600"]) as browser:
        browser.navigate((site / "reference" / "backends" / "index.html").as_uri())
        rows = browser.wait_for("document.querySelectorAll('article table tbody tr').length")
        assert rows >= 30, "every backend's fields, one row each"
        assert browser.evaluate("document.querySelector('#localconfig') !== null")
        shot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
        browser.navigate((site / "index.html").as_uri())  # a diagram, drawn by the vendored mermaid (no CDN here)
        # the diagram is drawn in a closed shadow root: an undrawn one (no mermaid) has no height
        drawn = "(document.querySelector('div.mermaid') || {getBoundingClientRect: () => ({height: 0})})"
        assert browser.wait_for(f"{drawn}.getBoundingClientRect().height > 50", 30)
    (tmp_path / "backends.png").write_bytes(shot)
    assert shot.startswith(b"\x89PNG") and len(shot) > 30_000, "a rendered page, not a blank one"


def test_serving_on_a_port_another_process_holds_is_a_clear_error():
    """Issue 36 (the docs server's fixed port): on a shared host another user may hold 8000 first;
    what they serve there is not this site, so serve refuses rather than point the user at it."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        ran = subprocess.run(
            [REPO / "scripts" / "docs", "serve"], env={**os.environ, "ROMPY_TASKS_DOCS_PORT": str(port)},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        holder.close()
    assert ran.returncode == 1 and f"127.0.0.1:{port} is taken by another process" in ran.stderr, ran.stderr
