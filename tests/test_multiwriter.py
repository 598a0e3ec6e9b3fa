"""Many writers, one export directory: stress, overlap, SIGKILL + resume, sharded engine.

* 2, 4 and 8 writer processes at once into one directory, 10 repetitions each:
  disjoint shards commit to exactly the records of a one-process export (sorted table
  equal, unique keys, one export id); overlapping shards fail clearly at commit
  (``DuplicateRecordsError`` naming the writers) with every record still on disk.
* A writer SIGKILLed mid-export: commit refuses; resumed with its writer id it redoes
  only what its journal does not vouch for (also a part renamed but never journaled);
  the committed export has 0 duplicates and 0 losses in Parquet and in FiftyOne.
* ``EvaluationEngine(shard=(rank, world_size))`` + ``armory-datasets commit`` equals
  a one-process run; ``torchrun --nproc-per-node 2`` on the gloo backend too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from multiwriter_support import (
    BATCHES,
    RECORDS,
    comparable,
    one_process_export,
    run_writers,
    write_shard,
)

from armory_datasets import cli
from armory_datasets.database import import_fiftyone
from armory_datasets.store.commit import DuplicateRecordsError, commit_export, read_journals
from armory_datasets.store.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
REPETITIONS = 10


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = one_process_export(tmp_path_factory.mktemp("one") / "export")
    return comparable(ds.dataset(path / "table", format="parquet").to_table())


def committed_table(export_dir: Path):
    manifest = read_manifest(export_dir)
    parts = [str(export_dir / "table" / name) for name in manifest["table"]["parts"]]
    return manifest, ds.dataset(parts, format="parquet").to_table()


@pytest.mark.parametrize("writers", [2, 4, 8])
def test_disjoint_shards_commit_to_the_one_process_export(tmp_path, reference, writers):
    for repetition in range(REPETITIONS):
        export_dir = tmp_path / f"run{repetition}"
        assert run_writers(export_dir, [range(k, BATCHES, writers) for k in range(writers)]) \
            == [0] * writers
        assert read_manifest(export_dir)["table"]["parts"] == []  # nothing visible before commit
        manifest = commit_export(export_dir)
        assert manifest["status"] == "complete" and manifest["counts"]["records"] == RECORDS
        listed = {name for j in read_journals(export_dir / "table").values() for name in j["parts"]}
        assert set(manifest["table"]["parts"]) == listed
        _, table = committed_table(export_dir)
        keys = table.column("record_key").to_pylist()
        assert len(keys) == len(set(keys)) == RECORDS
        assert set(table.column("export_id").to_pylist()) == {manifest["export_id"]}
        assert comparable(table).equals(reference), f"repetition {repetition}"
        schemas = {pq.read_schema(export_dir / "table" / p).remove_metadata()
                   for p in manifest["table"]["parts"]}
        assert len(schemas) == 1  # plain readers meet one schema


@pytest.mark.parametrize("writers", [2, 4, 8])
def test_overlapping_shards_fail_clearly_and_lose_nothing(tmp_path, writers):
    for repetition in range(REPETITIONS):
        export_dir = tmp_path / f"run{repetition}"
        shards = [sorted({*range(k, BATCHES, writers), (k + 1) % writers}) for k in range(writers)]
        assert run_writers(export_dir, shards) == [0] * writers
        with pytest.raises(DuplicateRecordsError, match="written by more than one writer") as caught:
            commit_export(export_dir)
        assert set(caught.value.duplicates["benign/0"]) == {"w0", f"w{writers - 1}"}
        manifest = read_manifest(export_dir)
        assert manifest["status"] == "writing" and manifest["table"]["parts"] == []
        table = ds.dataset(export_dir / "table", format="parquet").to_table()
        assert len(set(table.column("record_key").to_pylist())) == RECORDS  # nothing lost


SLOW_SHARD = """
    import sys, time
    import multiwriter_support as support

    def halfway(k):
        if k == 5:  # 6 batches in: some parts finished and journaled, one open
            print("HALFWAY", flush=True)
            time.sleep(600)

    export_dir, writer_id, batches = sys.argv[1:4]
    support.write_shard(export_dir, writer_id, [int(b) for b in batches.split(",")],
                        fiftyone=True, after_batch=halfway)
"""


def test_sigkill_of_one_writer_then_resume_loses_and_duplicates_nothing(tmp_path, reference):
    export_dir = tmp_path / "killed"
    shard0 = list(range(0, BATCHES, 2))
    victim = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SLOW_SHARD), str(export_dir), "w1",
         ",".join(map(str, range(1, BATCHES, 2)))], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"})
    try:
        assert victim.stdout.readline().strip() == "HALFWAY"
        write_shard(export_dir, "w0", shard0, fiftyone=True)  # the other writer finishes meanwhile
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    journals = read_journals(export_dir / "table")
    assert journals["w0"]["status"] == "done" and journals["w1"]["status"] == "writing"
    with pytest.raises(RuntimeError, match="writer.s. w1 have not finished"):
        commit_export(export_dir)
    # The worst moment: w1's last part was renamed into place, its journal not yet updated.
    journal_file = export_dir / "table" / "_writers" / "w1.json"
    journal = json.loads(journal_file.read_text())
    orphan = journal["parts"].pop()
    journal_file.write_text(json.dumps(journal))

    write_shard(export_dir, "w1", range(1, BATCHES, 2), fiftyone=True)  # resume
    resumed = read_journals(export_dir / "table")["w1"]["parts"]
    assert orphan not in resumed and len(resumed) > len(journal["parts"])
    manifest = commit_export(export_dir)
    assert not (export_dir / "table" / orphan).exists()  # never vouched for: removed
    _, table = committed_table(export_dir)
    keys = table.column("record_key").to_pylist()
    assert len(keys) == len(set(keys)) == RECORDS
    assert comparable(table).equals(reference)
    dataset = import_fiftyone().load_dataset(manifest["fiftyone"]["dataset"])
    fo_keys = dataset.values("record_key")
    assert len(fo_keys) == len(set(fo_keys)) == RECORDS and set(fo_keys) == set(keys)


def tiny_evaluation():
    import torch

    from armory_datasets import criteria as C
    from armory_datasets.evaluation import Evaluation
    from armory_datasets.export import ImageClassificationExporter

    rng = np.random.default_rng(0)
    batches = [(rng.random((4 if b < 6 else 2, 1, 3, 3), dtype=np.float32), rng.integers(0, 2, 4 if b < 6 else 2))
               for b in range(7)]
    evaluation = Evaluation("sharded", "tiny model", "me")
    evaluation.use_dataset(batches)
    weights = torch.tensor([[1.0], [-1.0]])
    evaluation.use_model(lambda x: (x.flatten(1).mean(1, keepdim=True) - 0.5) @ weights.T)
    evaluation.use_exporters(ImageClassificationExporter(criterion=C.always()))
    return evaluation


def test_sharded_engine_then_cli_commit_equals_one_process(tmp_path, capsys):
    from armory_datasets.engine import EvaluationEngine

    single = EvaluationEngine(tiny_evaluation(), export_dir=tmp_path / "one", quiet=True,
                              fiftyone=False).run()
    for rank in (1, 0):
        result = EvaluationEngine(tiny_evaluation(), export_dir=tmp_path / "sharded", quiet=True,
                                  fiftyone=False, shard=(rank, 2)).run()
        assert result.dataset_name is None
    assert read_manifest(tmp_path / "sharded")["status"] == "writing"
    assert cli.main(["commit", str(tmp_path / "sharded")]) == 0
    assert "committed" in capsys.readouterr().out
    expected = comparable(ds.dataset(single.export_dir / "table", format="parquet").to_table())
    _, table = committed_table(tmp_path / "sharded")
    assert comparable(table).equals(expected)
    with pytest.raises(ValueError, match="shard: got"):
        EvaluationEngine(tiny_evaluation(), export_dir=tmp_path / "x", shard=(2, 2))


TORCHRUN_SCRIPT = """
    import sys
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    from test_multiwriter import tiny_evaluation
    from armory_datasets.engine import EvaluationEngine

    dist.init_process_group("gloo")
    result = EvaluationEngine(tiny_evaluation(), export_dir=sys.argv[1], quiet=True,
                              fiftyone=False).run()
    with open(f"{sys.argv[1]}.rank{dist.get_rank()}", "w") as out:
        out.write(str(result.counts["benign"]))
    dist.destroy_process_group()
"""


def test_torchrun_two_ranks_equal_one_process(tmp_path):
    from armory_datasets.engine import EvaluationEngine

    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(TORCHRUN_SCRIPT))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(_free_port()), str(script), str(tmp_path / "ranks"), str(ROOT / "tests")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
             "TMPDIR": str(tmp_path)})  # torchrun's torchelastic_* folders go with the test's
    assert done.returncode == 0, done.stderr[-3000:]
    counts = [(tmp_path / f"ranks.rank{rank}").read_text() for rank in (0, 1)]
    assert counts == ["14", "12"]  # batches 0,2,4,6 (4+4+4+2) and 1,3,5 (4+4+4)
    manifest, table = committed_table(tmp_path / "ranks")
    assert manifest["status"] == "complete"
    single = EvaluationEngine(tiny_evaluation(), export_dir=tmp_path / "one", quiet=True,
                              fiftyone=False).run()
    expected = comparable(ds.dataset(single.export_dir / "table", format="parquet").to_table())
    assert comparable(table).equals(expected)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


FAILED_COMMIT_SCRIPT = """
    import sys
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    import armory_datasets.store.commit as commit
    from test_multiwriter import tiny_evaluation
    from armory_datasets.engine import EvaluationEngine

    def broken_commit(export_dir):
        raise OSError("disk went away during the commit")

    dist.init_process_group("gloo")
    if dist.get_rank() == 0:
        commit.commit_export = broken_commit
    try:
        EvaluationEngine(tiny_evaluation(), export_dir=sys.argv[1], quiet=True, fiftyone=False).run()
        said = "finished"
    except Exception as error:
        said = f"{type(error).__name__}: {error}"
    with open(f"{sys.argv[1]}.rank{dist.get_rank()}", "w") as out:
        out.write(said)
    dist.destroy_process_group()
"""


def test_a_failed_commit_on_rank_0_stops_every_rank_and_leaves_a_resumable_export(tmp_path):
    """No rank hangs at the barrier; each says why; the export stays uncommitted until
    ``armory-datasets commit`` completes it, equal to a one-process run."""
    from armory_datasets.cli import main
    from armory_datasets.engine import EvaluationEngine
    from armory_datasets.store.manifest import read_manifest

    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(FAILED_COMMIT_SCRIPT))
    export_dir = tmp_path / "ranks"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(_free_port()), str(script), str(export_dir), str(ROOT / "tests")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
             "TMPDIR": str(tmp_path)})  # torchrun's torchelastic_* folders go with the test's
    assert done.returncode == 0, done.stderr[-3000:]
    said = [(tmp_path / f"ranks.rank{rank}").read_text() for rank in (0, 1)]
    assert said[0] == "OSError: disk went away during the commit"
    assert said[1].startswith("RuntimeError:") and "armory-datasets commit" in said[1]
    assert read_manifest(export_dir)["status"] != "complete"

    assert main(["commit", str(export_dir)]) == 0
    manifest, table = committed_table(export_dir)
    assert manifest["status"] == "complete"
    single = EvaluationEngine(tiny_evaluation(), export_dir=tmp_path / "one", quiet=True,
                              fiftyone=False).run()
    expected = comparable(ds.dataset(single.export_dir / "table", format="parquet").to_table())
    assert comparable(table).equals(expected)
