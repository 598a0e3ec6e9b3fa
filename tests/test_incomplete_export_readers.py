"""An export killed mid-run reads in standard tools with every column of its finished parts.

A writer process gets SIGKILL while a part is open, after a column ("site") first
appeared in a later batch. Polars ``scan_parquet``, HF ``load_dataset("parquet")``,
pandas ``read_parquet`` on the table directory and DuckDB ``read_parquet`` without
``union_by_name`` then read the same rows and the same columns (issue 11, item 6).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent

WRITE_UNTIL_KILLED = """
    import sys, time
    import numpy as np
    from armory_datasets.store import ExportWriter

    writer = ExportWriter(sys.argv[1], {"name": "killed"}, fiftyone=False, rows_per_part=20,
                          rows_per_group=5)
    name = writer.register_exporter("clf", "Manual", None, {})
    for batch in range(12):
        indices = np.arange(10 * batch, 10 * batch + 10)
        fields = {"target": indices % 10}
        if batch >= 3:  # a column first seen in the fourth batch, after part 0 is finished
            fields["site"] = ["lab"] * 10
        if batch >= 7:
            fields["score"] = indices / 100.0
        writer.add_records(name, "benign", indices, fields, batch=batch,
                           positions=np.arange(10), images=np.zeros((10, 2, 2, 1), np.uint8))
        writer.end_batch()
    print("WRITING", flush=True)  # 6 parts finished; part 6 half-written (no footer)
    time.sleep(600)
"""


def test_standard_readers_see_every_column_of_a_killed_export(tmp_path):
    export_dir = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITE_UNTIL_KILLED),
                              str(export_dir)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "WRITING"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    table_dir = export_dir / "table"
    parts = sorted(table_dir.glob("*.parquet"))
    assert len(parts) == 6 and [p.name for p in table_dir.glob(".*.tmp")] == [".part-00006.parquet.tmp"]
    schemas = {pq.read_schema(p).remove_metadata() for p in parts}
    assert len(schemas) == 1  # every finished part has the full schema
    columns = set(schemas.pop().names)
    assert {"site", "score", "target", "record_key"} <= columns
    rows = 110  # batches 0..10; batch 11 is in the unfinished part

    polars = pl.scan_parquet(str(table_dir / "*.parquet")).collect()
    assert set(polars.columns) == columns and polars.height == rows
    assert polars["site"].null_count() == 30 and polars["score"].null_count() == 70

    load_dataset = pytest.importorskip(
        "datasets", reason="HF datasets is not installed (the [hf] extra)").load_dataset
    hf = load_dataset("parquet", data_files=str(table_dir / "*.parquet"), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert set(hf.column_names) == columns and hf.num_rows == rows
    assert sum(site is None for site in hf["site"]) == 30

    frame = pd.read_parquet(table_dir)
    assert set(frame.columns) == columns and len(frame) == rows
    assert frame["site"].isna().sum() == 30

    relation = duckdb.sql(f"SELECT * FROM read_parquet('{table_dir}/*.parquet')")
    assert set(relation.columns) == columns
    assert duckdb.sql(f"SELECT count(*), count(site), count(score) FROM "
                      f"read_parquet('{table_dir}/*.parquet')").fetchall() == [(rows, 80, 40)]
