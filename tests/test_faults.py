"""Faults while writing (issue 12): each error names its cause and what to do.

A lost database connection during the FiftyOne build gives DatabaseUnavailableError
with the URI (not a raw pymongo AutoReconnect). ``overwrite=True`` is atomic: a failure
anywhere leaves the old export byte for byte. A full disk (a real 8 MiB tmpfs, where
mounting is permitted) says "no space left on device" with the path, and a re-run after
freeing space completes with no duplicates and no losses.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from armory_datasets import open_export
from armory_datasets.store import ExportWriter
from armory_datasets.untrusted import DamagedExportError
from test_reading_support import digits_export

ROOT = Path(__file__).resolve().parent.parent

KILL_DURING_BUILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    from armory_datasets.database import DatabaseUnavailableError, PrivateMongod
    mongod = PrivateMongod()
    mongod.activate()
    from test_reading_support import digits_export
    path = digits_export(sys.argv[1], n=16, fiftyone=False, name="killed")
    from armory_datasets.database import import_fiftyone
    fo = import_fiftyone()
    import fiftyone.core.odm as foo
    insert = foo.insert_documents

    def insert_then_die(documents, *args, **kwargs):
        mongod.process.kill()
        mongod.process.wait()
        return insert(documents, *args, **kwargs)

    foo.insert_documents = insert_then_die
    from armory_datasets.store.fiftyone_import import build_fiftyone_dataset
    try:
        build_fiftyone_dataset(path)
    except DatabaseUnavailableError as error:
        print("ERROR", error)
    finally:
        mongod.stop()
""")


def test_a_database_killed_during_the_build_names_the_uri(tmp_path):
    result = subprocess.run([sys.executable, "-c", KILL_DURING_BUILD, str(tmp_path / "run")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "ERROR FiftyOne's database at mongodb://127.0.0.1:" in result.stdout, result.stderr[-3000:]
    assert "stopped answering while building FiftyOne dataset" in result.stdout
    assert "restart it" in result.stdout


# ------------------------------------------------------------------ overwrite, resume, disk full


def manual_export(path: Path, records: int, overwrite: bool = False, fail_at: int | None = None,
                  fiftyone: bool = False) -> None:
    """The user's own loop over ExportWriter: one record per batch; raise at ``fail_at``."""
    with ExportWriter(path, {"name": "manual"}, fiftyone=fiftyone, overwrite=overwrite,
                      rows_per_part=2) as writer:
        name = writer.register_exporter("manual", "Manual", None, {})
        for b in range(records):
            if b == fail_at:
                raise RuntimeError("the evaluation failed")
            writer.add(name, "benign", b, {"target": b % 10}, batch=b, position=0,
                       image=np.full((2, 2, 1), b, np.uint8))
            writer.end_batch()


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_failed_overwrite_leaves_the_old_export_intact(tmp_path):
    path = tmp_path / "run"
    manual_export(path, 5)
    (path / "notes.txt").write_text("mine")
    before = snapshot(path)
    with pytest.raises(RuntimeError, match="the evaluation failed"):
        manual_export(path, 9, overwrite=True, fail_at=7)
    assert snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no half-written sibling
    assert open_export(path).count() == 5


def test_a_failure_at_close_of_an_overwrite_restores_the_old_export(tmp_path, monkeypatch):
    from armory_datasets.store import finalize

    path = tmp_path / "run"
    manual_export(path, 3)
    before = snapshot(path)

    def fail(*_, **__):
        raise RuntimeError("counting failed")

    monkeypatch.setattr(finalize, "count_records", fail)
    with pytest.raises(RuntimeError, match="counting failed"):
        manual_export(path, 6, overwrite=True)
    assert snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_successful_overwrite_replaces_the_export_and_keeps_foreign_files(tmp_path):
    path = tmp_path / "run"
    manual_export(path, 3)
    old_id = open_export(path).export_id
    (path / "notes.txt").write_text("mine")
    manual_export(path, 6, overwrite=True)
    export = open_export(path)
    assert export.export_id != old_id and export.count() == 6
    assert (path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_overwrite_replaces_an_export_with_a_damaged_manifest(tmp_path):
    path = tmp_path / "run"
    manual_export(path, 3)
    (path / "manifest.json").write_text('{"manifest_version": 1, "tab')
    with pytest.raises(DamagedExportError, match="manifest.json: not a readable JSON manifest"):
        manual_export(path, 3)
    manual_export(path, 4, overwrite=True)
    assert open_export(path).count() == 4


def test_resuming_over_a_truncated_part_names_it_and_suggests_verify(tmp_path):
    path = tmp_path / "run"
    with pytest.raises(RuntimeError):
        manual_export(path, 6, fail_at=5)
    part = path / "table/part-00000.parquet"
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(DamagedExportError, match=f"{part}: cannot be read as Parquet.*verify"):
        manual_export(path, 6)
    from armory_datasets.verify import verify_export

    assert verify_export(path, repair=True).lost_records == ["benign/0", "benign/1"]
    manual_export(path, 6)
    keys = open_export(path).table().column("record_key").to_pylist()
    assert sorted(keys) == sorted(f"benign/{i}" for i in range(6))


def test_an_image_failing_in_the_background_never_reaches_a_finished_part(tmp_path, monkeypatch):
    """Images are written in a thread while the next batch is built: a failed write is
    raised at the next batch or part, no finished part names an image not written, and
    the export resumes to the full set."""
    from armory_datasets.store import media

    write_png = media.write_png

    def full_at_three(path, image, *args):
        if path.endswith("/00000003.png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        write_png(path, image, *args)

    monkeypatch.setattr(media, "write_png", full_at_three)
    path = tmp_path / "run"
    with pytest.raises(OSError, match=f"{path}: no space left on device while writing"):
        manual_export(path, 6)
    finished = [pq.read_table(p, columns=["record_key", "image_path"]) for p in
                sorted((path / "table").glob("part-*.parquet"))]
    named = [row for table in finished for row in table.to_pylist()]
    assert named and all((path / row["image_path"]).is_file() for row in named)
    assert "benign/3" not in {row["record_key"] for row in named}
    monkeypatch.undo()
    manual_export(path, 6)
    export = open_export(path)
    assert sorted(export.table().column("record_key").to_pylist()) == [f"benign/{i}" for i in range(6)]
    assert export.verify().problems == []


def test_images_are_the_callers_pixels_even_if_it_reuses_its_array(tmp_path, monkeypatch):
    """The writer copies a batch's pixels before its thread encodes them."""
    import threading

    from armory_datasets.store import media

    reused, write_png = threading.Event(), media.write_png

    def after_reuse(*args):
        assert reused.wait(30)
        write_png(*args)

    monkeypatch.setattr(media, "write_png", after_reuse)
    pixels = np.full((2, 4, 4, 3), 7, np.uint8)
    with ExportWriter(tmp_path / "run", {"name": "reuse"}, fiftyone=False) as writer:
        name = writer.register_exporter("manual", "Manual", None, {})
        writer.add_records(name, "benign", [0, 1], {"target": [0, 1]}, batch=0, positions=[0, 1],
                           images=pixels)
        pixels[:] = 0  # the caller's next batch
        reused.set()
    from PIL import Image

    for i in range(2):
        assert (np.asarray(Image.open(tmp_path / f"run/media/images/benign/{i:08d}.png")) == 7).all()


def test_a_forked_child_writes_its_export_after_its_parent_wrote_one(tmp_path):
    """The background threads are per process: a child forked after an export (as
    multiprocessing's fork start method does) does not wait on its parent's thread."""
    import os
    import signal
    import time

    manual_export(tmp_path / "parent", 3)
    child = os.fork()
    if child == 0:  # pragma: no cover -- the child reports through its exit status
        try:
            manual_export(tmp_path / "child", 3)
            os._exit(0 if open_export(tmp_path / "child").count() == 3 else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        pytest.fail("the forked child's export hung")
    assert os.waitstatus_to_exitcode(done[1]) == 0


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs (root only); skipped with the reason where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        reason = f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})"
        print(f"SKIPPED disk-full test: {reason}")
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("room", [20_000, 120_000, 260_000])  # fills up in media or in Parquet
def test_a_full_disk_names_the_cause_and_a_rerun_completes(small_disk, tmp_path, room):
    reference = open_export(digits_export(tmp_path / "reference", n=48, fiftyone=False,
                                          name="disk-full"))
    expected = sorted(reference.table().column("record_key").to_pylist())
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(bytes(free - room))
    path = small_disk / "run"
    with pytest.raises(OSError, match=f"{path}: no space left on device while writing") as caught:
        digits_export(path, n=48, fiftyone=False, name="disk-full")
    assert caught.value.errno == errno.ENOSPC
    filler.unlink()
    digits_export(path, n=48, fiftyone=False, name="disk-full")  # resumes
    export = open_export(path)
    keys = export.table().column("record_key").to_pylist()
    assert len(keys) == len(set(keys)), "duplicates"
    assert sorted(keys) == expected, "losses"
    assert export.verify().problems == []
    assert export.table(columns=["record_key", "target", "prediction"]).sort_by("record_key").equals(
        reference.table(columns=["record_key", "target", "prediction"]).sort_by("record_key"))
