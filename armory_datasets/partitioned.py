"""A Hive-partitioned, read-only copy of an export's table (e.g. ``chain=fgsm/part-0.parquet``).

The export's own table stays flat (``table/part-*.parquet``); this layout is derived
from the parts its manifest lists, so engines prune whole directories with a
criterion's partition-column terms: pyarrow ``ds.dataset(out, partitioning="hive")``,
DuckDB ``read_parquet('out/**/*.parquet', hive_partitioning = true)``, Polars
``pl.scan_parquet('out/**/*.parquet', hive_partitioning=True)``, Spark
``spark.read.parquet(out)`` and Ray ``ray.data.read_parquet(out, partitioning=...)``.

``out/_partitioning.json`` (skipped by every engine: its name starts with ``_``) records
the partition columns, the table's schema and the manifest's ``updated_at`` it was
derived from.

Example:
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> out = write_partitioned(tiny_export())
    >>> sorted(p.name for p in out.iterdir())
    ['_partitioning.json', 'chain=benign', 'chain=noisy']
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from armory_datasets.records.names import check_name

__all__ = ["LAYOUT_DIR", "LAYOUT_FILE", "MAX_PARTITIONS", "open_partitioned", "read_layout",
           "write_partitioned"]

LAYOUT_DIR = "partitioned"
"""Default folder of the layout inside the export directory."""
LAYOUT_FILE = "_partitioning.json"
"""The layout's own description, beside its partition folders."""
MAX_PARTITIONS = 1024
"""Most partition folders one layout may have (pyarrow's default limit too)."""


def write_partitioned(export_dir: str | Path, by: Sequence[str] = ("chain",),
                      out: str | Path | None = None) -> Path:
    """Write the export's table partitioned by the ``by`` columns into ``out`` (default
    ``<export_dir>/partitioned``), replacing an older layout there; return ``out``.

    ``by`` names string or integer columns without nulls whose values are safe path
    segments (records/names.py), at most ``MAX_PARTITIONS`` combinations; anything
    else is a ValueError naming the column.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> write_partitioned(tiny_export(), by=["confidence"])
        Traceback (most recent call last):
        ...
        ValueError: by: column 'confidence' has type double; expected a string or integer column (e.g. chain)
    """
    from armory_datasets.reading import open_export

    export = open_export(export_dir)
    columns = _checked_by(by, export.schema)
    out = Path(out).resolve() if out is not None else export.path / LAYOUT_DIR
    _check_out(out, export.path)
    _check_values(export.table(columns=columns), columns)
    partitioning = ds.partitioning(pa.schema([export.schema.field(c) for c in columns]),
                                   flavor="hive")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    written: list[str] = []
    try:
        ds.write_dataset(export.dataset, staging, format="parquet", partitioning=partitioning,
                         basename_template="part-{i}.parquet", max_partitions=MAX_PARTITIONS,
                         file_visitor=lambda f: written.append(f.path))
        staging.mkdir(exist_ok=True)  # an empty table writes no file
        for path in written:
            if not Path(path).resolve().is_relative_to(staging.resolve()):
                raise ValueError(f"by: partition values of {columns} wrote {path!r} outside "
                                 f"{out}; expected every file inside the layout")
        (staging / LAYOUT_FILE).write_text(json.dumps({
            "by": columns, "export_id": export.export_id,
            "updated_at": export.manifest["updated_at"],
            "schema": base64.b64encode(export.schema.serialize().to_pybytes()).decode(),
        }, indent=2))
        _replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def open_partitioned(path: str | Path) -> ds.Dataset:
    """The layout at ``path`` as a ``pyarrow.dataset`` with the table's schema
    (partition columns typed as in the table).

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> data = open_partitioned(write_partitioned(tiny_export(), by=["chain", "batch"]))
        >>> data.count_rows(filter=ds.field("batch") == 1), len(data.files)
        (6, 4)
    """
    layout = read_layout(path)
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(layout["schema"])))
    partitioning = ds.partitioning(pa.schema([schema.field(c) for c in layout["by"]]),
                                   flavor="hive")
    return ds.dataset(str(path), schema=schema, format="parquet", partitioning=partitioning)


def read_layout(path: str | Path) -> dict[str, Any]:
    """The layout description at ``path`` (FileNotFoundError if there is none).

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> read_layout(write_partitioned(tiny_export()))["by"]
        ['chain']
    """
    file = Path(path) / LAYOUT_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no {LAYOUT_FILE}; expected a layout written by "
                                f"`armory-datasets partition`")
    return json.loads(file.read_text())


def _checked_by(by: Sequence[str], schema: pa.Schema) -> list[str]:
    if isinstance(by, str) or not isinstance(by, Sequence) or not by:
        raise ValueError(f"by: got {by!r}; expected a non-empty list of column names, e.g. "
                         f"['chain']")
    columns = list(by)
    if len(set(columns)) != len(columns):
        raise ValueError(f"by: got {columns}; expected each column once")
    for column in columns:
        if column not in schema.names:
            raise ValueError(f"by: unknown column {column!r}; expected one of the table's "
                             f"string or integer columns, e.g. chain")
        kind = schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_integer(kind)):
            raise ValueError(f"by: column {column!r} has type {kind}; expected a string or "
                             f"integer column (e.g. chain)")
    return columns


def _check_values(table: pa.Table, columns: list[str]) -> None:
    """Every partition value is present and a safe path segment; few combinations."""
    for column in columns:
        values = table.column(column)
        if values.null_count:
            raise ValueError(f"by: column {column!r} has {values.null_count} null value(s); "
                             f"expected a column without nulls")
        if pa.types.is_string(values.type):
            for value in pc.unique(values).to_pylist():
                check_name(value, f"by: a value of column {column!r}", "path")
    combinations = table.group_by(columns).aggregate([]).num_rows
    if combinations > MAX_PARTITIONS:
        raise ValueError(f"by: {columns} has {combinations} distinct values; expected at most "
                         f"{MAX_PARTITIONS} partitions (a column such as chain)")


def _check_out(out: Path, export_dir: Path) -> None:
    """``out`` replaces only a layout, and never lies in the table's own folders."""
    if out.exists() and not (out / LAYOUT_FILE).is_file():
        raise ValueError(f"out: {out} exists and is not a partitioned layout; expected a new "
                         f"directory or one written by `armory-datasets partition`")
    for folder in ("table", "objects", "media"):
        if out.is_relative_to(export_dir / folder):
            raise ValueError(f"out: {out} is inside the export's {folder}/ folder; expected "
                             f"another directory (default: {export_dir / LAYOUT_DIR})")


def _replace(staging: Path, out: Path) -> None:
    """Move ``staging`` to ``out``; an older layout there is moved aside, then removed."""
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
