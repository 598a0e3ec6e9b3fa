"""`armory-datasets app`: the headless App server answers on localhost and serves the export.

Runs the command in a subprocess (it inherits the session's private mongod), waits for
its URL line, checks the App HTML, the server's version endpoint and its GraphQL
dataset list, takes a headless-chromium screenshot when chromium is installed, then
stops the command with Ctrl-C and checks the server goes away.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from armory_datasets import open_export
from armory_datasets.reading_fiftyone import dataset_name
from test_reading_support import digits_export

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0
SCREENSHOT_DIR = os.environ.get("ARMORY_APP_SCREENSHOT_DIR")
"""Set it to keep the screenshot (it is written to a temporary directory otherwise)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read().decode()


def answering(url: str) -> bool:
    try:
        http(url, timeout=2)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return open_export(digits_export(tmp_path_factory.mktemp("app") / "export", n=32,
                                     name="digits-app"))


@pytest.fixture
def app(export):
    """The running `app` command: (process, first stdout line, port)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "armory_datasets.cli", "app", str(export.path), "--port", str(port),
         "--where", "~correct"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        deadline, line = time.monotonic() + START_TIMEOUT, ""
        while not line.startswith("FiftyOne App:"):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"`app` printed no URL within {START_TIMEOUT:.0f} s: "
                            f"{process.stderr.read() if process.poll() is not None else 'running'}")
        yield process, line, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group this test started
                process.wait()


def test_app_serves_the_export(app, export, tmp_path):
    process, line, port = app
    url = f"http://localhost:{port}/"
    assert line.startswith(f"FiftyOne App: {url} (dataset {dataset_name(export)!r}, ")
    assert f"{export.count('~correct')} samples)" in line

    status, html = http(url)
    assert status == 200 and "<html" in html.lower() and "FiftyOne" in html
    version = json.loads(http(url + "fiftyone")[1])["version"]
    assert version.startswith("1.")
    query = {"query": "query Q($search: String) { datasets(search: $search, first: 100) "
                      "{ edges { node { name } } } }", "variables": {"search": ""}}
    edges = json.loads(http(url + "graphql", query)[1])["data"]["datasets"]["edges"]
    names = [edge["node"]["name"] for edge in edges]
    assert dataset_name(export) in names
    query = {"query": f'{{ dataset(name: "{dataset_name(export)}") {{ name mediaType }} }}'}
    assert json.loads(http(url + "graphql", query)[1])["data"]["dataset"] == {
        "name": dataset_name(export), "mediaType": "image"}

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        screenshot = Path(SCREENSHOT_DIR or tmp_path) / "app.png"
        profile = tmp_path / "chromium-profile"
        try:
            subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={profile}", "--window-size=1400,900", "--virtual-time-budget=20000",
                 f"--screenshot={screenshot}", f"{url}datasets/{dataset_name(export)}"],
                capture_output=True, timeout=180, check=False)
            assert screenshot.is_file() and screenshot.stat().st_size > 10_000
        except subprocess.TimeoutExpired:  # a slow machine: the HTTP checks above are the test
            warnings.warn("headless chromium took over 180 s; no screenshot taken")

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    deadline = time.monotonic() + 30
    while answering(url + "fiftyone") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not answering(url + "fiftyone"), "the App server outlived the command"
