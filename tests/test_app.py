"""`armory-datasets app`: serves the export on localhost, refuses a busy port, lists servers.

The command runs in a subprocess (it inherits the session's private mongod). The HTTP
checks read the App HTML, the server's version endpoint and its GraphQL dataset list;
tests/test_app_browser.py drives the App itself in a real browser.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest
from app_support import answering, http, run_app, serving

from armory_datasets import open_export
from armory_datasets.app import PortInUseError, check_port_free, free_port
from armory_datasets.reading_fiftyone import dataset_name
from test_reading_support import digits_export


@pytest.fixture(autouse=True)
def app_registry(tmp_path_factory, monkeypatch):
    """A registry folder of this module's own (the subprocesses inherit it)."""
    folder = tmp_path_factory.getbasetemp() / "app-registry"
    monkeypatch.setenv("ARMORY_DATASETS_APP_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return open_export(digits_export(tmp_path_factory.mktemp("app") / "export", n=32,
                                     name="digits-app"))


def test_app_serves_the_export_and_stops_on_ctrl_c(export):
    with serving(export.path, free_port(), "--where", "~correct") as app:
        assert app.line.startswith(f"FiftyOne App: {app.url} (dataset {dataset_name(export)!r}, ")
        assert f"{export.count('~correct')} samples)" in app.line
        status, html = http(app.url)
        assert status == 200 and "<html" in html.lower() and "FiftyOne" in html
        assert json.loads(http(app.url + "fiftyone")[1])["version"].startswith("1.")
        query = {"query": "query Q($search: String) { datasets(search: $search, first: 100) "
                          "{ edges { node { name } } } }", "variables": {"search": ""}}
        edges = json.loads(http(app.url + "graphql", query)[1])["data"]["datasets"]["edges"]
        assert dataset_name(export) in [edge["node"]["name"] for edge in edges]
        query = {"query": f'{{ dataset(name: "{dataset_name(export)}") {{ name mediaType '
                          f'appConfig {{ colorScheme {{ colorBy }} sidebarGroups {{ name }} }} }} }}'}
        dataset = json.loads(http(app.url + "graphql", query)[1])["data"]["dataset"]
        assert dataset["mediaType"] == "image" and dataset["appConfig"]["colorScheme"]["colorBy"] == "value"
        assert [g["name"] for g in dataset["appConfig"]["sidebarGroups"]][1:5] == [
            "labels", "heatmaps", "metrics", "keys"]
        app.process.send_signal(signal.SIGINT)
        assert app.process.wait(timeout=30) == 0
        deadline = time.monotonic() + 30
        while answering(app.url + "fiftyone") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not answering(app.url + "fiftyone"), "the App server outlived the command"


def test_a_busy_port_is_refused_and_the_first_server_keeps_it(export):
    with serving(export.path, free_port()) as first:
        listed = run_app("--list")
        assert listed.returncode == 0, listed.stderr
        assert f"{first.url}  pid {first.process.pid}  dataset {dataset_name(export)!r} (64 samples)" \
            in listed.stdout and str(export.path) in listed.stdout

        second = run_app(str(export.path), "--port", str(first.port), "--where", "correct")
        assert second.returncode == 1
        assert f"port {first.port} on localhost is in use: armory-datasets app (pid " \
               f"{first.process.pid}) serves {dataset_name(export)!r} there" in second.stderr
        assert "FiftyOne App:" not in second.stdout
        assert first.process.poll() is None  # still serving its own view, not the second's
        state = json.loads(http(first.url + "fiftyone")[1])
        assert state["version"].startswith("1.")
        assert run_app("--list").stdout.count(first.url) == 1
    deadline = time.monotonic() + 30
    while run_app("--list").stdout and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run_app("--list").stdout == ""  # the note went away with the server


def test_a_port_held_by_another_program_is_refused_naming_it():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is in use: another "
                                                 f"program listens there; expected a free port"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again once closed


def test_list_drops_notes_of_dead_servers_and_ignores_junk(app_registry):
    app_registry.mkdir(parents=True, exist_ok=True)
    (app_registry / "1.json").write_text(json.dumps({"pid": 2 ** 22 + 7, "port": free_port()}))
    (app_registry / "2.json").write_text("{not json")
    listed = run_app("--list")
    assert (listed.returncode, listed.stdout) == (0, "")
    assert "no armory-datasets app is serving" in listed.stderr
    assert not (app_registry / "1.json").exists()


@pytest.mark.parametrize("args, message", [
    ((), "expected an export directory (or --list)"),
    (("some/export", "--list"), "--list takes no export directory"),
])
def test_app_usage_errors(args, message):
    result = run_app(*args)
    assert result.returncode == 2 and message in result.stderr
