"""Shared builders for the multi-writer tests (no tests here).

``write_shard(dir, writer_id, batches)`` writes the given batches of one fixed
synthetic evaluation (two chains, a short last batch, a dynamic column) as one writer;
``one_process_export(dir)`` writes all of them as a single writer, the reference a
committed multi-writer export must equal.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from armory_datasets.store import ExportWriter

BATCHES = 24
BATCH_SIZE = 5
LAST_BATCH = 3  # a short last batch
CHAINS = ("benign", "fgsm")
RECORDS = len(CHAINS) * ((BATCHES - 1) * BATCH_SIZE + LAST_BATCH)


def batch_indices(batch: int) -> np.ndarray:
    size = LAST_BATCH if batch == BATCHES - 1 else BATCH_SIZE
    return np.arange(batch * BATCH_SIZE, batch * BATCH_SIZE + size)


def write_batches(writer: ExportWriter, batches: Iterable[int],
                  after_batch: Callable[[int], None] | None = None) -> None:
    name = writer.register_exporter("clf", "Manual", "always()", {})
    writer.set_class_names([str(c) for c in range(10)])
    for k, batch in enumerate(batches):
        indices = batch_indices(batch)
        for chain in CHAINS:
            target = indices % 10
            prediction = np.where((indices % 3 == 0) & (chain == "fgsm"), (target + 1) % 10, target)
            fields = {"target": target, "prediction": prediction, "correct": prediction == target,
                      "confidence": (indices % 7) / 7.0}
            if chain == "fgsm":
                fields["fgsm_epsilon"] = np.full(len(indices), 0.03)
            writer.add_records(name, chain, indices, fields, batch=batch,
                               positions=np.arange(len(indices)),
                               images=np.full((len(indices), 2, 2, 1), batch, np.uint8))
            writer.end_batch()
        if after_batch is not None:
            after_batch(k)


def write_shard(export_dir: Path, writer_id: str | None, batches: Sequence[int],
                fiftyone: bool = False, after_batch: Callable[[int], None] | None = None) -> None:
    with ExportWriter(export_dir, {"name": "multi"}, fiftyone=fiftyone, writer_id=writer_id,
                      rows_per_part=8) as writer:
        write_batches(writer, batches, after_batch)


def one_process_export(export_dir: Path) -> Path:
    write_shard(export_dir, None, range(BATCHES))
    return export_dir


def run_writers(export_dir: Path, shards: Sequence[Sequence[int]]) -> list[int]:
    """Write each shard in its own forked process at once; return their exit codes."""
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=write_shard, args=(export_dir, f"w{k}", list(shard)))
                 for k, shard in enumerate(shards)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    return [p.exitcode for p in processes]


def comparable(table: pa.Table) -> pa.Table:
    """The table without its export id, in record-key order."""
    return table.drop_columns(["export_id"]).sort_by("record_key")
