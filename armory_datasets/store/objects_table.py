"""The objects table: one row per box, derived from the samples table (schemas/objects.v2.json).

``objects_of(rows, class_names)`` flattens ``ground_truth_objects`` (kind "gt") and
``predicted_objects`` (kind "pred") with Arrow compute (``list_flatten`` and
``list_parent_indices``; no Python loop per box) and repeats each box's record keys.
``write_objects(export_dir, parts, class_names)`` writes ``objects/{part}`` for every
table part holding boxes (tmp + rename; rows sorted by ``SORT_ORDER`` so that row-group
statistics prune selective queries), removes objects parts of no table part, and
returns the names it wrote: the objects table is always exactly the table's boxes,
after a resume, a multi-writer commit or a repair alike. Tables written before version 2
lack the match fields; their boxes get nulls there.

Example:
    >>> from armory_datasets.detection.columns import objects_array
    >>> from armory_datasets.data import Objects
    >>> rows = pa.table({"export_id": ["e"], "record_key": ["benign/0"], "chain": ["benign"],
    ...                  "sample_index": [0], "ground_truth_objects": objects_array([Objects([[0, 0, 2, 3]], [1])])})
    >>> objects_of(rows, ["cat", "dog"]).select(["kind", "index", "label_name", "area"]).to_pylist()
    [{'kind': 'gt', 'index': 0, 'label_name': 'dog', 'area': 6.0}]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from armory_datasets.schema import SCHEMAS_DIR, load_vocabulary
from armory_datasets.store.footers import footer, parquet_file
from armory_datasets.store.manifest import OBJECTS_DIR
from armory_datasets.store.parquet_writer import parquet_options

__all__ = ["OBJECTS_VOCABULARY", "OBJECT_COLUMNS", "objects_of", "write_objects"]

OBJECTS_VOCABULARY = load_vocabulary(SCHEMAS_DIR / "objects.v2.json")
OBJECT_COLUMNS = {"ground_truth_objects": "gt", "predicted_objects": "pred"}
"""The samples table's box columns and the ``kind`` of their rows."""
_KEYS = ("export_id", "record_key", "chain", "sample_index")
SORT_ORDER = [("kind", "ascending"), ("match", "ascending"), ("score", "descending"), ("label", "ascending")]
"""The order of an objects part's rows."""
ROWS_PER_GROUP = 4096
_BOX_FIELDS = ("label", "x_min", "y_min", "x_max", "y_max", "score", "match", "iou", "matched_index")


def objects_of(rows: pa.Table, class_names: list[str] | None) -> pa.Table:
    """The boxes of ``rows`` (a samples table with the key and box columns), one per row.

    Example:
        >>> objects_of(pa.table({"record_key": pa.array([], pa.string())}), None).num_rows
        0
    """
    schema = OBJECTS_VOCABULARY.arrow_schema()
    pieces = []
    for column, kind in OBJECT_COLUMNS.items():
        if column not in rows.column_names:
            continue
        lists = rows.column(column).combine_chunks()
        flat = pc.list_flatten(lists)
        if not len(flat):
            continue
        parents = pc.list_parent_indices(lists)
        offsets = lists.offsets.to_numpy()
        index = np.arange(len(flat), dtype=np.int64) + offsets[0] - offsets[parents.to_numpy()]
        names = {f.name for f in flat.type}
        values = {name: (flat.field(name) if name in names else pa.nulls(len(flat), schema.field(name).type))
                  for name in _BOX_FIELDS}
        keys = {name: rows.column(name).take(parents) for name in _KEYS}
        width = pc.subtract(values["x_max"], values["x_min"])
        height = pc.subtract(values["y_max"], values["y_min"])
        pieces.append(pa.table({
            **keys, "kind": pa.repeat(pa.scalar(kind), len(flat)), "index": index,
            **values, "label_name": _label_names(values["label"], class_names),
            "area": pc.multiply(width, height)}).select(schema.names).cast(schema))
    return pa.concat_tables(pieces) if pieces else schema.empty_table()


def _label_names(labels: pa.Array, class_names: list[str] | None) -> pa.Array:
    if not class_names:
        return pa.nulls(len(labels), pa.string())
    label = labels.to_numpy(zero_copy_only=False)
    known = (label >= 0) & (label < len(class_names))
    names = pa.array(class_names, pa.string()).take(pa.array(np.where(known, label, 0)))
    return pc.if_else(pa.array(known), names, pa.scalar(None, pa.string()))


def _all_null(metadata: pq.FileMetaData, columns: Iterable[str]) -> bool:
    """Whether the footer says ``columns`` hold no box (a classification export's box
    columns), so that the part need not be read: each row has one leaf entry, and it is
    null (a null or empty list); a row with a box would add a value. Unknown counts say no."""
    wanted = set(columns)
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for i in range(row_group.num_columns):
            column = row_group.column(i)
            if column.path_in_schema.split(".")[0] in wanted:
                stats = column.statistics
                if (stats is None or not stats.has_null_count
                        or not stats.null_count == column.num_values == row_group.num_rows):
                    return False
    return True


def write_objects(export_dir: Path, parts: list[Path], class_names: list[str] | None) -> list[str]:
    """Write ``objects/{part.name}`` for each table part with boxes; return their names.

    Example:
        >>> write_objects(Path("/nonexistent"), [], None)
        []
    """
    folder = Path(export_dir) / OBJECTS_DIR
    written = []
    for part in parts:
        metadata = footer(part)
        present = set(metadata.schema.to_arrow_schema().names)
        wanted = [c for c in (*_KEYS, *OBJECT_COLUMNS) if c in present]
        if not present & OBJECT_COLUMNS.keys() or _all_null(metadata, OBJECT_COLUMNS):
            continue
        objects = objects_of(parquet_file(part).read(columns=wanted), class_names)
        if not objects.num_rows:
            continue
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{part.name}.{os.getpid()}.tmp"
        # Sorted so that row-group statistics let a selective query ("fp above 0.8") skip
        # most of the file; record_key and index still name each box's record and place.
        pq.write_table(objects.sort_by(SORT_ORDER), tmp, row_group_size=ROWS_PER_GROUP,
                       **parquet_options(objects.schema))
        os.replace(tmp, folder / part.name)
        written.append(part.name)
    if folder.is_dir():
        for stale in folder.glob("part-*.parquet"):
            if stale.name not in written:
                stale.unlink()
    return written
