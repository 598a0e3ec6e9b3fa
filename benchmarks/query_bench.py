"""Query benchmark: ``open_export(p).table(where=...)`` vs pandas on a 1,000,000-record export.

Builds an export directory the cheap way: table parts written by the store's own
``TableWriter`` (vocabulary schema, default 4,096-row groups, 100,000-row parts, Snappy)
in the order an export writes them (per chain, batch by batch), and a complete
manifest; no media. Then, in one run:

1. for each criterion, the best of ``--repeats`` times of ``open_export(p).table(where=c)``
   (opening included; whole rows) against pandas reading the whole table and then
   masking, checking both give the same records. Target for selective criteria: at
   most 1/5 of the pandas time. Criteria whose matches lie in every row group cannot
   skip any (see benchmarks/criteria_bench.py); they are reported as measured.
2. the import cost: a fresh interpreter that imports armory_datasets, opens the
   export and queries it, reporting whether fiftyone (and torch) got imported and
   the time, against a fresh interpreter running ``import fiftyone``.

Run: ``python benchmarks/query_bench.py [--rows 1000000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from timing import best_of  # benchmarks/timing.py (the script's folder is on sys.path)
from armory_datasets import criteria as C
from armory_datasets import open_export
from armory_datasets.schema import VOCABULARY
from armory_datasets.store.manifest import new_manifest, write_manifest
from armory_datasets.store.parquet_writer import TableWriter, count_records, part_paths

BATCH_SIZE = 32
CHUNK = 32_768
ENGINE_BATCH = 1_024
"""Records handed to the writer at a time, as the engine does per batch; the writer groups
them into its default 4,096-row groups."""
ROOT = Path(__file__).resolve().parent.parent

CASES: list[tuple[str, Callable[[pd.DataFrame], pd.Series], bool]] = [
    # (criterion, the same selection in pandas, selective: row-group statistics skip all but
    # a few row groups; the last two skip half of them or none)
    ("samples([12, 40000, 123456, 499999])",
     lambda df: df.sample_index.isin([12, 40000, 123456, 499999]), True),
    ("first_n_samples(1000)", lambda df: df.sample_index < 1000, True),
    ("chains(['fgsm']) & first_n_batches(30)", lambda df: (df.chain == "fgsm") & (df.batch < 30), True),
    ("chains(['fgsm']) & ~correct & confidence > 0.99",
     lambda df: (df.chain == "fgsm") & ~df.correct.astype(bool) & (df.confidence > 0.99), False),
    ("~correct & confidence < 0.05", lambda df: ~df.correct.astype(bool) & (df.confidence < 0.05), False),
]


def record_batches(rows: int, export_id: str, seed: int = 0):
    """Vocabulary-typed record batches: two chains of ``rows // 2`` samples, 10 classes."""
    rng = np.random.default_rng(seed)
    per_chain = rows // 2
    schema = VOCABULARY.arrow_schema()
    for chain_number, chain in enumerate(("benign", "fgsm")):
        for start in range(0, per_chain, CHUNK):
            index = np.arange(start, min(start + CHUNK, per_chain), dtype=np.int64)
            n = len(index)
            target = rng.integers(0, 10, n)
            wrong = rng.random(n) < (0.05 if chain_number == 0 else 0.6)
            prediction = np.where(wrong, (target + rng.integers(1, 10, n)) % 10, target)
            logits = rng.normal(size=(n, 10)).astype(np.float32)
            probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            confidence = rng.random(n)
            columns = {
                "export_id": pa.array([export_id] * n),
                "record_key": pa.array([f"{chain}/{i}" for i in index.tolist()]),
                "chain": pa.array([chain] * n),
                "batch": index // BATCH_SIZE,
                "position": index % BATCH_SIZE,
                "sample_index": index,
                "image_path": pa.array([f"media/images/{chain}/{i:08d}.png" for i in index.tolist()]),
                "width": pa.array(np.full(n, 32, np.int32)),
                "height": pa.array(np.full(n, 32, np.int32)),
                "target": target,
                "prediction": prediction,
                "confidence": confidence,
                "correct": ~wrong,
                "logits": pa.FixedSizeListArray.from_arrays(logits.ravel(), 10).cast(pa.list_(pa.float32())),
                "probabilities": pa.FixedSizeListArray.from_arrays(
                    probabilities.ravel(), 10).cast(pa.list_(pa.float32())),
                "exporters": pa.array([["all"]] * n, pa.list_(pa.string())),
            }
            arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema]
            yield pa.RecordBatch.from_arrays([pa.array(a, f.type) for a, f in zip(arrays, schema)],
                                             schema=schema)


def build_export(path: Path, rows: int) -> None:
    """A complete export directory (manifest + table parts, no media) of ``rows`` records."""
    manifest = new_manifest({"name": "query-bench", "description": "synthetic", "author": "bench"}, 1)
    writer = TableWriter(path / "table", VOCABULARY.arrow_schema())
    for chunk in record_batches(rows, manifest["export_id"]):
        for start in range(0, chunk.num_rows, ENGINE_BATCH):
            writer.write(chunk.slice(start, ENGINE_BATCH))
            writer.maybe_finish_part()
    writer.close()
    manifest.update(status="complete", class_names=[str(d) for d in range(10)],
                    counts=count_records(path / "table"))
    manifest["table"]["parts"] = [p.name for p in part_paths(path / "table")]
    manifest["exporters"] = [{"name": "all", "type": "Synthetic", "criterion": "always()", "params": {}}]
    write_manifest(path, manifest)


def bench_queries(path: Path, repeats: int) -> list[tuple[str, float, float, float, int, bool]]:
    rows = []
    for text, pandas_mask, selective in CASES:
        pushed, table = best_of(repeats, lambda: open_export(path).table(where=text))
        used = ["record_key"] + sorted({f.name for f in C.parse(text).fields()})
        narrow, _ = best_of(repeats, lambda: open_export(path).table(where=text, columns=used))

        def pandas_way() -> pd.DataFrame:
            frame = pd.read_parquet(path / "table")
            return frame[pandas_mask(frame)]

        whole, frame = best_of(repeats, pandas_way)
        assert sorted(table.column("record_key").to_pylist()) == sorted(frame.record_key), text
        rows.append((text, whole, pushed, narrow, table.num_rows, selective))
    return rows


QUERY_SCRIPT = """
import sys, time
start = time.perf_counter()
import armory_datasets
table = armory_datasets.open_export(sys.argv[1]).table(where=sys.argv[2])
elapsed = time.perf_counter() - start
print({"seconds": elapsed, "rows": table.num_rows, "fiftyone": "fiftyone" in sys.modules,
       "torch": "torch" in sys.modules})
"""
FIFTYONE_SCRIPT = """
import time
start = time.perf_counter()
import fiftyone
print({"seconds": time.perf_counter() - start})
"""


def fresh(script: str, *args: str) -> dict:
    """Run ``script`` in a fresh interpreter; its last line is a dict literal."""
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={"FIFTYONE_DO_NOT_TRACK": "true",
                                                    "PYTHONPATH": str(ROOT)}).stdout
    return json.loads(out.strip().splitlines()[-1].replace("'", '"').replace("True", "true")
                      .replace("False", "false"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "export"
        start = time.perf_counter()
        build_export(path, args.rows)
        parts = part_paths(path / "table")
        size = sum(p.stat().st_size for p in parts) / 2**20
        print(f"export: {args.rows:,} records, {len(parts)} parts, {size:.1f} MiB, "
              f"built in {time.perf_counter() - start:.1f} s")
        print(f"{'criterion':48} {'pandas all+mask':>15} {'table(where), all columns':>26} "
              f"{'keys+used columns':>18} {'rows':>7}")
        results = bench_queries(path, args.repeats)
        for text, whole, pushed, narrow, count, _ in results:
            print(f"{text:48} {whole * 1e3:12.0f} ms {pushed * 1e3:9.0f} ms = {pushed / whole:5.3f}x "
                  f"{narrow * 1e3:8.0f} ms = {narrow / whole:5.3f}x {count:7,}")
        selective = [pushed / whole for _, whole, pushed, _, _, s in results if s]
        others = [pushed / whole for _, whole, pushed, _, _, s in results if not s]
        narrow = [n / whole for _, whole, _, n, _, _ in results]
        print(f"target: selective queries (first three) take <= 1/5 of the pandas time: "
              f"{'met' if max(selective) <= 0.2 else 'NOT met'} (worst {max(selective):.3f})")
        print(f"every criterion, record keys and the columns it reads: "
              f"{'met' if max(narrow) <= 0.2 else 'NOT met'} (worst {max(narrow):.3f})")
        print(f"whole rows where matches lie in half or all of the row groups (last two): "
              f"{', '.join(f'{r:.2f}' for r in others)} of the pandas time -- those row groups "
              "must all be decoded")

        query = fresh(QUERY_SCRIPT, str(path), CASES[2][0])
        fo = fresh(FIFTYONE_SCRIPT)
        print(f"\nfresh interpreter: import armory_datasets + open_export + table(where=...): "
              f"{query['seconds']:.2f} s, {query['rows']} rows, fiftyone imported: {query['fiftyone']}, "
              f"torch imported: {query['torch']}")
        print(f"fresh interpreter: import fiftyone: {fo['seconds']:.2f} s "
              f"({fo['seconds'] / query['seconds']:.1f}x the whole query)")


if __name__ == "__main__":
    main()
