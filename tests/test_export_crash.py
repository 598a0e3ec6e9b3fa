"""An export SIGKILLed mid-way and re-run: no duplicate and no lost record, in Parquet and FiftyOne.

Example: ``./dev test tests/test_export_crash.py -q``
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow.dataset as ds
import pytest
from PIL import Image

from armory_datasets.database import import_fiftyone
from armory_datasets.store import part_paths, read_manifest, unified_schema

BATCHES, SIZE = 8, 5

CHILD = textwrap.dedent(f"""
    import sys, time
    import numpy as np
    from armory_datasets import criteria as C
    from armory_datasets.data import Images, ImageClassificationBatch
    from armory_datasets.export import ImageClassificationExporter
    from armory_datasets.store import ExportWriter

    export_dir, pause = sys.argv[1], float(sys.argv[2])
    with ExportWriter(export_dir, {{"name": "crash"}}, rows_per_part={SIZE}) as writer:
        everything = ImageClassificationExporter(name="all", criterion=C.always())
        odd = ImageClassificationExporter(name="odd", criterion=C.col("sample_index") % 2 == 1)
        for exporter in (everything, odd):
            exporter.setup(writer=writer)
        for chain in ("benign", "fgsm"):
            for b in range({BATCHES}):
                rng = np.random.default_rng(b + 100 * len(chain))
                batch = ImageClassificationBatch(
                    Images(rng.integers(0, 256, ({SIZE}, 3, 6, 6), dtype=np.uint8)),
                    rng.integers(0, 4, {SIZE}), predictions=rng.normal(size=({SIZE}, 4)),
                    global_indices=np.arange(b * {SIZE}, (b + 1) * {SIZE}), chain=chain)
                everything.export(b, batch)
                odd.export(b, batch)
                writer.end_batch()
                time.sleep(pause)
""")


def run_child(export_dir, pause: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(export_dir), str(pause)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killed_export_resumes_without_duplicates_or_losses(tmp_path):
    export_dir = tmp_path / "e"
    child = run_child(export_dir, pause=0.3)
    deadline = time.monotonic() + 120
    while len(part_paths(export_dir / "table")) < 3:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child wrote no parts in time"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert read_manifest(export_dir)["status"] == "writing"
    finished = len(part_paths(export_dir / "table"))
    assert finished < 2 * BATCHES, "killed too late to test resuming"

    rerun = run_child(export_dir, pause=0.0)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err

    expected = sorted(f"{c}/{i}" for c in ("benign", "fgsm") for i in range(BATCHES * SIZE))
    table = ds.dataset(export_dir / "table", schema=unified_schema(export_dir / "table")).to_table()
    keys = table.column("record_key").to_pylist()
    assert sorted(keys) == expected  # no duplicate, no loss
    exporters = dict(zip(keys, table.column("exporters").to_pylist()))
    assert all(exporters[k] == (["all", "odd"] if int(k.split("/")[1]) % 2 else ["all"]) for k in keys)
    manifest = read_manifest(export_dir)
    assert manifest["status"] == "complete"
    assert manifest["counts"]["per_exporter"] == {"all": len(expected), "odd": len(expected) // 2}
    assert len(set(table.column("export_id").to_pylist())) == 1

    dataset = import_fiftyone().load_dataset(manifest["fiftyone"]["dataset"])
    assert sorted(dataset.values("record_key")) == expected
    for path in dataset.values("filepath"):
        assert np.asarray(Image.open(path)).shape == (6, 6, 3)
    assert not list(export_dir.rglob("*.tmp"))
