"""kedro-viz draws the pipelines as labelled groups, served live and as a static build.

The registry puts each pipeline's nodes in a namespace (pipeline_registry.grouped), so
the default view of ``__default__`` is a handful of collapsed groups whose labels must
be drawn, not hidden or covered, at the zoom kedro-viz picks; with only the groups
shown (``?types=nodes``, docs/visualisation.md) the labels must be legible.

Headless Debian ``chromium`` driven by Playwright (``playwright install`` downloads a
browser and fails offline, so the system one is used). Both commands run in a copy of
the project: ``kedro viz`` writes ``.viz/`` and ``kedro viz build`` writes ``build/``
into the project folder. The demo env is used throughout (``--env`` for ``run``,
``KEDRO_ENV`` for ``build``, which has no ``--env``): base's Hugging Face dataset makes
``kedro viz build`` try the Hub for a minute where it is unreachable.

``kedro viz run`` serves from a ``multiprocessing`` spawn child: ending the ``kedro``
process alone leaves that child listening. The server is started in a process group
of its own and the whole group is ended (and waited for).
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.checkout import copy_clean_checkout

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PIPELINES = ("data_processing", "training", "evaluation", "deployment")
SERVER_START_SECONDS = 120


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KEDRO_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        COLUMNS="200",  # readable rich tracebacks in the failure message
    )
    return env


def _free_port() -> int:
    """A free port below 49152: kedro-viz refuses the OS's ephemeral range above it."""
    for port in random.Random().sample(range(20_000, 49_000), 50):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 49000 on 127.0.0.1")


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(
            f"{CHROMIUM} not found: install Debian's chromium "
            "(apt-get install -y chromium) to run the kedro-viz browser test"
        )
    pytest.importorskip("playwright", reason="playwright is not installed")
    return CHROMIUM


@pytest.fixture(scope="module")
def project_copy(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("viz_project")
    copy_clean_checkout(project_root, copy)
    return copy


@pytest.fixture(scope="module")
def default_groups(project_root: Path) -> set[str]:
    """The groups the default view draws, from Kedro itself: the top-level namespaces
    of ``__default__`` (the offline pipelines; the Azure and Databricks targets need a
    service and are left out). kedro-viz draws each collapsed, as one modular-pipeline
    node labelled with its name, and nested namespaces inside it."""
    from kedro.framework.project import configure_project, pipelines

    configure_project("llm_finetuning")
    missing = [name for name in PIPELINES if name not in pipelines]
    assert not missing, f"pipelines not registered: {missing}"
    nodes = pipelines["__default__"].nodes
    loose = sorted(n.name for n in nodes if not n.namespace)
    assert not loose, f"nodes outside every group, drawn one by one: {loose}"
    groups = {n.namespace.split(".")[0] for n in nodes}
    assert set(PIPELINES) <= groups, f"__default__ groups: {sorted(groups)}"
    return groups


def _group_members(pgid: int) -> list[psutil.Process]:
    """Running (not zombie) processes of process group ``pgid``."""
    members = []
    for process in psutil.process_iter():
        try:
            if (
                os.getpgid(process.pid) == pgid
                and process.status() != psutil.STATUS_ZOMBIE
            ):
                members.append(process)
        except (OSError, psutil.Error):
            pass
    return members


def _stop_group(server: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the server's whole group, SIGKILL after ``timeout``; wait for all of it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while _group_members(server.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _group_members(server.pid):
            break
    server.wait(timeout)


@contextmanager
def _viz_server(project_copy: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``kedro viz run`` on a free port of 127.0.0.1 in a group of its own, ended on exit."""
    port = _free_port()
    log = project_copy / f"kedro-viz-{port}.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "kedro", "viz", "run", "--no-browser"]
            + ["--host", "127.0.0.1", "--port", str(port), "--env", "demo"],
            cwd=project_copy,
            env=_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its spawn child joins the group, not the tests'
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"kedro viz run exited:\n{log.read_text()[-12000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/main", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"kedro viz run did not answer:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url, server
    finally:
        _stop_group(server)


@pytest.fixture(scope="module")
def viz_url(project_copy: Path) -> Iterator[str]:
    """``kedro viz run`` on a free port of 127.0.0.1, stopped after the tests."""
    with _viz_server(project_copy) as (url, _):
        yield url


def test_kedro_viz_run_leaves_no_process_when_stopped(project_copy: Path) -> None:
    """No browser needed: the server, its spawn child, then nothing."""
    with _viz_server(project_copy) as (url, server):
        members = _group_members(server.pid)
        assert len(members) >= 2, [m.cmdline() for m in members]  # kedro + its child
        port = int(url.rsplit(":", 1)[1])
    assert not any(m.is_running() and m.status() != "zombie" for m in members)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "still listening"


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def _dismiss_pop_ups(page: Any) -> None:
    """Close the release banner and the feature-hints tour that cover the graph.

    The tour appears a moment after the page, so look for both for a few seconds.
    """
    pop_ups = [
        page.get_by_role("button", name="Dismiss"),  # "Kedro-Viz <version> is here!"
        page.locator(".feature-hints__close"),  # "1 of 6: Workflow run status"
    ]
    for _ in range(6):
        page.wait_for_timeout(500)  # also lets the layout fade in
        for pop_up in pop_ups:
            if pop_up.count() and pop_up.first.is_visible():
                pop_up.first.click()
    farewell = page.get_by_text("You can revisit these hints")  # a toast that fades
    if farewell.count():
        farewell.first.wait_for(state="hidden", timeout=10_000)


# For each group node: its label, the label's height on screen, its opacity (with its
# ancestors'), and whether the label's centre hits the node (nothing covers it).
GROUP_LABELS_JS = """
nodes => nodes.map(node => {
  const text = node.querySelector('text.pipeline-node__text');
  const box = text.getBoundingClientRect();
  let opacity = 1;
  for (let el = text; el && el instanceof Element; el = el.parentElement) {
    opacity *= Number(getComputedStyle(el).opacity);
  }
  const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
  return {
    name: text.textContent,
    height: box.height,
    opacity: opacity,
    uncovered: hit !== null && node.contains(hit),
  };
})
"""
GROUP_NODES = "g.pipeline-node--modularPipeline"
LEGIBLE_PX = 12  # label height on screen from which the overview counts as legible


def _group_labels(page: Any) -> dict[str, dict[str, Any]]:
    return {
        label["name"]: label
        for label in page.eval_on_selector_all(GROUP_NODES, GROUP_LABELS_JS)
    }


def _check_default_view(
    browser: Any, url: str, groups: set[str], screenshot: Path | None = None
) -> None:
    """Open kedro-viz at ``url`` as a user does: every group drawn collapsed and its
    label visible at the default zoom; then the groups-only overview, legible."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(url, wait_until="networkidle")
        page.wait_for_selector(GROUP_NODES, timeout=60_000)
        _dismiss_pop_ups(page)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        zoom = page.locator(".pipeline-minimap-toolbar__scale").inner_text()
        labels = _group_labels(page)
        seen = f"at zoom {zoom}: {labels}"
        assert set(labels) == groups, seen
        assert all(label["opacity"] > 0.99 for label in labels.values()), seen
        assert all(label["uncovered"] for label in labels.values()), seen
        assert all(label["height"] > 0 for label in labels.values()), seen
        assert page.locator("g.pipeline-node--task").count() == 0, "nodes not grouped"

        # The overview docs/visualisation.md links: groups only, big enough to read.
        page.goto(f"{url.rstrip('/')}/?pid=__default__&types=nodes")
        page.wait_for_selector(GROUP_NODES, timeout=60_000)
        try:
            page.wait_for_function(
                f"""() => {{
                  const t = [...document.querySelectorAll(
                    '{GROUP_NODES} text.pipeline-node__text')];
                  return t.length === {len(groups)} && t.every(
                    e => e.getBoundingClientRect().height >= {LEGIBLE_PX});
                }}""",
                timeout=20_000,
            )
        except Exception:  # noqa: BLE001 - the measured labels say more
            pytest.fail(f"overview labels below {LEGIBLE_PX}px: {_group_labels(page)}")
    finally:
        page.close()


def test_kedro_viz_run_draws_the_groups_labelled_at_the_default_zoom(
    browser: Any, viz_url: str, default_groups: set[str], project_root: Path
) -> None:
    with urllib.request.urlopen(f"{viz_url}/api/main", timeout=10) as response:
        graph = json.load(response)
    served = {pipeline["id"] for pipeline in graph["pipelines"]}
    assert set(PIPELINES) <= served, f"kedro-viz serves {sorted(served)}"

    screenshot = project_root / "test-artifacts" / "kedro-viz.png"
    _check_default_view(browser, viz_url, default_groups, screenshot)
    assert screenshot.stat().st_size > 10_000


def test_kedro_viz_build_for_an_env_makes_a_static_site_of_the_groups(
    browser: Any, project_copy: Path, default_groups: set[str]
) -> None:
    """``kedro viz build`` has no ``--env``: KEDRO_ENV picks the environment, as
    docs/visualisation.md says."""
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=project_copy,
        env={**_environment(), "KEDRO_ENV": "demo"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    site = project_copy / "build"
    assert (site / "index.html").is_file()
    graph = json.loads((site / "api" / "main").read_text())
    assert set(PIPELINES) <= {pipeline["id"] for pipeline in graph["pipelines"]}
    # The demo's catalog, not base's (a Hugging Face dataset there).
    raw = [node for node in graph["nodes"] if node["name"] == "raw_reviews"]
    assert raw and "PartitionedDataset" in raw[0]["dataset_type"], raw

    # Serve the folder as any static host would, and look at it.
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _check_default_view(
            browser, f"http://127.0.0.1:{server.server_port}/", default_groups
        )
    finally:
        server.shutdown()
        server.server_close()
