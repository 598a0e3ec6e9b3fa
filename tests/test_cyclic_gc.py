"""The cyclic garbage collector is paused while a FiftyOne dataset is built, and only then.

Example: ``./dev test tests/test_cyclic_gc.py -q``
"""

from __future__ import annotations

import gc
import os
import threading

import numpy as np

from armory_datasets.store import ExportWriter, build_fiftyone_dataset
from armory_datasets.store.cyclic_gc import paused_cyclic_gc


def test_the_collector_stays_paused_until_the_last_thread_leaves():
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with paused_cyclic_gc():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(10)
    with paused_cyclic_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread is still inside
    release.set()
    thread.join()
    assert gc.isenabled()


def test_a_process_that_turned_the_collector_off_keeps_it_off():
    gc.disable()
    try:
        with paused_cyclic_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_child_forked_while_paused_gets_the_collector_back():
    with paused_cyclic_gc():
        pid = os.fork()
        if pid == 0:
            os._exit(0 if gc.isenabled() else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_building_thousands_of_documents_runs_no_collection(tmp_path, monkeypatch):
    # Without the pause, the insert batch of 2,048 live documents starts dozens of
    # collections, and enough of them a full one over every object of the process.
    import armory_datasets.store.fiftyone_import as fi

    path = tmp_path / "e"
    with ExportWriter(path, {"name": "gc"}, fiftyone=False) as writer:
        name = writer.register_exporter("clf", "Manual", None, {})
        for first in range(0, 3000, 500):
            indices = np.arange(first, first + 500)
            writer.add_records(name, "benign", indices, {"target": indices % 10}, batch=first // 500,
                               positions=indices - first, images=np.zeros((500, 2, 2, 1), np.uint8))
            writer.end_batch()
    build_fiftyone_dataset(path, name="gc-paused", overwrite=True)  # imports FiftyOne (their collections)
    building, collections = [False], []
    build = fi._build

    def timed_build(*args, **kwargs):
        building[0] = True
        try:
            return build(*args, **kwargs)
        finally:
            building[0] = False

    def note(phase: str, info: dict) -> None:
        if phase == "start" and building[0]:
            collections.append(info["generation"])

    monkeypatch.setattr(fi, "_build", timed_build)
    gc.callbacks.append(note)
    try:
        dataset = build_fiftyone_dataset(path, name="gc-paused", overwrite=True)
    finally:
        gc.callbacks.remove(note)
    assert dataset.count() == 3000
    assert collections == []
    assert gc.isenabled()
