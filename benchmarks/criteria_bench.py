"""Criteria benchmark: Parquet pushdown vs pandas, and export-time evaluation cost.

Part 1: a 1,000,000-row export-like Parquet table (keys, labels, confidence, 10 logits
per row). For five representative criteria it times pyarrow with the criterion pushed
into the scan against reading the whole table into pandas and then masking, in the
same run, and checks both return the same rows. Target: >= 5x for selective criteria.

Part 2: evaluating a criterion on a 1,024-sample batch at export time.
Target: < 1 ms for index and metric criteria.

Run: ``python benchmarks/criteria_bench.py [--rows 1000000]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from timing import best_of  # benchmarks/timing.py (the script's folder is on sys.path)
from armory_datasets import criteria as C

BATCH_SIZE = 32


def make_table(rows: int, seed: int = 0) -> pa.Table:
    """Rows in the order an export writes them: per chain, batch by batch."""
    rng = np.random.default_rng(seed)
    per_chain = rows // 2
    index = np.tile(np.arange(per_chain, dtype=np.int64), 2)
    target = rng.integers(0, 101, rows)
    prediction = np.where(rng.random(rows) < 0.8, target, rng.integers(0, 101, rows))
    logits = rng.normal(size=(rows, 10)).astype(np.float32)
    return pa.table({
        "record_key": pa.array([f"{'benign' if i < per_chain else 'fgsm'}/{j}"
                                for i, j in enumerate(index)]),
        "chain": pa.array(np.repeat(["benign", "fgsm"], per_chain)),
        "batch": index // BATCH_SIZE,
        "position": index % BATCH_SIZE,
        "sample_index": index,
        "target": target,
        "prediction": prediction,
        "confidence": rng.random(rows),
        "correct": target == prediction,
        "logits": pa.FixedSizeListArray.from_arrays(logits.ravel(), 10).cast(
            pa.list_(pa.float32())),
    })


@dataclass
class Case:
    text: str
    pandas_mask: Callable[[pd.DataFrame], pd.Series]


CASES = [
    Case("samples([12, 40000, 123456, 499999])",
         lambda df: df.sample_index.isin([12, 40000, 123456, 499999])),
    Case("first_n_samples(1000)", lambda df: df.sample_index < 1000),
    Case("chains(['fgsm']) & first_n_batches(30)",
         lambda df: (df.chain == "fgsm") & (df.batch < 30)),
    Case("every_n_batches(500)", lambda df: (df.batch + 1) % 500 == 0),
    Case("target in [6, 23] & confidence < 0.1",
         lambda df: df.target.isin([6, 23]) & (df.confidence < 0.1)),
]


def bench_queries(path: Path, repeats: int) -> list[tuple[str, float, float, float, int]]:
    rows = []
    for case in CASES:
        criterion = C.parse(case.text)
        dataset = ds.dataset(path, format="parquet")
        pushed, table = best_of(repeats, lambda: dataset.to_table(filter=criterion.to_arrow()))
        columns = ["record_key"] + sorted({f.name for f in criterion.fields()})
        projected, _ = best_of(
            repeats, lambda: dataset.to_table(columns=columns, filter=criterion.to_arrow()))

        def pandas_way() -> pd.DataFrame:
            frame = pd.read_parquet(path)
            return frame[case.pandas_mask(frame)]

        whole, frame = best_of(repeats, pandas_way)
        assert sorted(table.column("record_key").to_pylist()) == sorted(frame.record_key), case.text
        rows.append((case.text, whole, pushed, projected, table.num_rows))
    return rows


@dataclass
class Batch:
    chain: str
    global_indices: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.global_indices)

    def column(self, name: str) -> np.ndarray:
        return self.columns[name]


def bench_export_time(repeats: int = 2000) -> list[tuple[str, float]]:
    rng = np.random.default_rng(1)
    n = 1024
    batch = Batch("benign", np.arange(5 * n, 6 * n), {
        "target": rng.integers(0, 101, n), "confidence": rng.random(n),
        "correct": rng.random(n) < 0.8})
    confidence = C.metric_value("confidence")
    cases = {
        "every_n_batches(5)": C.every_n_batches(5),
        "every_n_samples(7)": C.every_n_samples(7),
        "samples(range(0, 10000, 3))": C.samples(range(0, 10000, 3)),
        "when_metric_lt(confidence, 0.5)": C.when_metric_lt(confidence, 0.5),
        "target in [6, 23] & confidence < 0.5 | ~correct": C.parse(
            "target in [6, 23] & confidence < 0.5 | ~correct"),
    }
    results = []
    for name, criterion in cases.items():
        criterion(5, batch)  # warm up
        start = time.perf_counter()
        for _ in range(repeats):
            criterion(5, batch)
        results.append((name, (time.perf_counter() - start) / repeats))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "part-00000.parquet"
        pq.write_table(make_table(args.rows), path, row_group_size=64 * 1024)
        print(f"Parquet table: {args.rows:,} rows, {path.stat().st_size / 2**20:.1f} MiB")
        print(f"{'criterion':40} {'pandas all+mask':>15} {'pushdown, all columns':>22} "
              f"{'pushdown, keys+used':>20} {'rows':>7}")
        full, projected = [], []
        for text, whole, pushed, narrow, count in bench_queries(path, args.repeats):
            full.append(whole / pushed)
            projected.append(whole / narrow)
            print(f"{text:40} {whole * 1e3:12.0f} ms {pushed * 1e3:9.0f} ms {whole / pushed:6.1f}x"
                  f" {narrow * 1e3:9.0f} ms {whole / narrow:5.1f}x {count:7,}")
    prunable = full[:3]  # index/batch criteria: row-group statistics skip data
    print(f"target >= 5x, criteria that row-group statistics prune (first three), whole rows: "
          f"{'met' if min(prunable) >= 5 else 'NOT met'} (min {min(prunable):.1f}x)")
    print(f"target >= 5x, every criterion, reading the record keys and the columns it uses: "
          f"{'met' if min(projected) >= 5 else 'NOT met'} (min {min(projected):.1f}x)")
    print(f"whole rows for criteria whose matches lie in every row group (last two): "
          f"{min(full[3:]):.1f}x to {max(full[3:]):.1f}x -- no reader can skip a row group "
          "there, so every one is decoded (DuckDB measured no faster here)")
    print(f"\n{'export-time criterion on a 1,024-sample batch':52} {'per call':>10}")
    slowest = 0.0
    for name, seconds in bench_export_time():
        slowest = max(slowest, seconds)
        print(f"{name:52} {seconds * 1e6:7.1f} us")
    print(f"target < 1 ms: {'met' if slowest < 1e-3 else 'NOT met'} (max {slowest * 1e6:.0f} us)")


if __name__ == "__main__":
    main()
