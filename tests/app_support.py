"""Shared by the App tests (no tests here): run `armory-datasets app`, talk HTTP to it.

``serving(export_dir, port)`` runs the command in a subprocess (it inherits the
session's private mongod and ``ARMORY_DATASETS_APP_DIR``), waits for its URL line and
stops it with Ctrl-C afterwards (SIGKILL to its own process group if it hangs).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 180.0


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


def run_app(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`armory-datasets app ARGS` to completion (for commands that exit at once)."""
    return subprocess.run([sys.executable, "-m", "armory_datasets.cli", "app", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class Served:
    process: subprocess.Popen[str]
    line: str
    port: int

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}/"


@contextlib.contextmanager
def serving(export_dir: Path, port: int, *args: str) -> Iterator[Served]:
    """The running `app` command on ``export_dir``; stopped with Ctrl-C at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "armory_datasets.cli", "app", str(export_dir), "--port", str(port), *args],
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
        yield Served(process, line, port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group this test started
                process.wait()
