"""Build one batch's records: every column of every sample, typed, as one Arrow RecordBatch.

A record holds, in this order (the first source of a name wins, a later one is
ignored only when it is the same quantity, as a metric the task already computes):

1. keys: ``chain``, ``batch``, ``position``, ``sample_index`` (the index the export
   stores: the batch's ``global_indices``, or the exporter's running count), and the
   image ``width`` / ``height``;
2. the task's columns at the exporter's own settings (``target``, ``prediction``, ...;
   detection boxes and metrics at its ``score_threshold``);
3. named metrics the criterion reads, then ``batch.metrics`` (what the engine measured);
4. dataset metadata (per sample), then batch metadata and perturbation parameters
   (``{perturbation}_{param}``, copied to every record).

A metadata, batch-metadata or perturbation name that a metric (or an earlier source)
already took is an error, never a silent replacement. Every name follows
:mod:`armory_datasets.records.names`, every value :mod:`armory_datasets.store.column_types`
(one type per column, records small enough for a MongoDB document), before anything
is written. The criterion is then evaluated on these columns
(:mod:`armory_datasets.records.selection`), so it sees exactly what a query reads.

Example:
    >>> import numpy as np
    >>> from armory_datasets.data import Images, ImageClassificationBatch
    >>> from armory_datasets.store.column_types import ColumnTypes
    >>> batch = ImageClassificationBatch(Images(np.zeros((2, 1, 4, 4), np.uint8)), [3, 1],
    ...                                  metadata={"site": ["a", "b"]})
    >>> records = build_records(0, batch, np.array([10, 11]), {"target": batch.targets}, [],
    ...                         ColumnTypes())
    >>> records.table().to_pydict()["sample_index"], records.table().to_pydict()["site"]
    ([10, 11], ['a', 'b'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from armory_datasets.data import to_numpy
from armory_datasets.records.names import check_column_name
from armory_datasets.store.column_types import ColumnTypes, check_record_size

__all__ = ["Records", "build_records", "KEY_COLUMNS"]

KEY_COLUMNS = ("chain", "batch", "position", "sample_index", "width", "height")
"""Columns every record has before the writer adds ``image_path``, ``record_key``, ... ."""


@dataclass
class Records:
    """One batch's records: key values and the typed columns (``n`` rows each)."""

    chain: str
    batch_idx: int
    sample_indices: np.ndarray
    width: int
    height: int
    columns: dict[str, pa.Array] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.sample_indices)

    def keys(self) -> dict[str, pa.Array]:
        """The key columns (``KEY_COLUMNS``) as Arrow arrays.

        Example:
            >>> Records("benign", 2, np.array([5]), 4, 3).keys()["batch"].to_pylist()
            [2]
        """
        n = len(self)
        return {
            "chain": pa.repeat(pa.scalar(self.chain, pa.string()), n),
            "batch": pa.array(np.full(n, self.batch_idx, dtype=np.int64)),
            "position": pa.array(np.arange(n, dtype=np.int64)),
            "sample_index": pa.array(self.sample_indices, pa.int64()),
            "width": pa.array(np.full(n, self.width, dtype=np.int32)),
            "height": pa.array(np.full(n, self.height, dtype=np.int32)),
        }

    def table(self) -> pa.RecordBatch:
        """Keys and columns as one RecordBatch: what a query of these records reads.

        Example:
            >>> Records("benign", 0, np.array([5]), 4, 3).table().num_rows
            1
        """
        return pa.RecordBatch.from_pydict({**self.keys(), **self.columns})

    def take(self, positions: np.ndarray) -> dict[str, pa.Array]:
        """The non-key columns of the records at ``positions`` (for the writer).

        Example:
            >>> Records("b", 0, np.array([5, 6]), 1, 1, {"x": pa.array([1, 2])}).take(np.array([1]))
            {'x': <pyarrow.lib.Int64Array object at ...>
            [
              2
            ]}
        """
        if len(positions) == len(self):
            return dict(self.columns)
        chosen = pa.array(positions, pa.int64())
        return {name: array.take(chosen) for name, array in self.columns.items()}


def build_records(
    batch_idx: int,
    batch: Any,
    sample_indices: np.ndarray,
    task_columns: Mapping[str, Any],
    criterion_metrics: Sequence[Callable[[Any], Any]],
    types: ColumnTypes,
) -> Records:
    """The records of ``batch`` (see the module docstring for the columns and their order).

    Raises ValueError naming the column (and the sample) for a bad name or value.
    """
    n = len(batch)
    records = Records(batch.chain, int(batch_idx), np.asarray(sample_indices, dtype=np.int64),
                      int(batch.width), int(batch.height),
                      absent=frozenset(getattr(batch, "absent_columns", ())))
    source: dict[str, str] = {name: "a key column" for name in KEY_COLUMNS}

    def add(name: str, values: Any, per_sample: bool = True, where: str | None = None) -> None:
        if where is not None and name not in types.types:
            check_column_name(name, where)  # user-named columns: no saliency-style *_path
        array, _ = types.typed(name, values if per_sample else [values], n if per_sample else 1)
        if array is None:
            return
        records.columns[name] = array if per_sample else array.take(np.zeros(n, dtype=np.int64))

    for name, values in task_columns.items():
        add(name, values)
        source[name] = "a task column"
    for metric in criterion_metrics:
        name = getattr(metric, "name", None)
        if not isinstance(name, str) or not name or name in source:
            continue  # unnamed (not recorded) or the task's own column of that name
        values = batch.metrics[name] if name in batch.metrics else metric(batch)
        add(name, _per_sample(values, n, f"metric {name!r}"), where=f"metric {name!r}")
        source[name] = "a metric the criterion reads"
    for name, values in batch.metrics.items():
        if name not in source:
            add(name, values, where=f"metrics[{name!r}]")
            source[name] = "a metric of batch.metrics"
    constants = {f"batch_metadata[{k!r}]": (k, v) for k, v in batch.batch_metadata.items()}
    for perturbation, params in batch.perturbations.items():
        for param, value in params.items():
            constants[f"perturbations[{perturbation!r}][{param!r}]"] = (f"{perturbation}_{param}", value)
    for name, values in batch.metadata.items():
        _unique(name, f"metadata[{name!r}]", source)
        add(name, values, where=f"metadata[{name!r}]")
    for where, (name, value) in constants.items():
        _unique(name, where, source)
        if isinstance(value, np.ndarray) or type(value).__module__.startswith("torch"):
            value = to_numpy(value)
            value = value.item() if value.ndim == 0 else value.tolist()
        add(name, value, per_sample=False, where=where)
    check_record_size({**records.keys(), **records.columns}, n, where=f"record of chain {batch.chain!r}")
    return records


def _unique(name: str, where: str, source: dict[str, str]) -> None:
    if name in source:
        raise ValueError(f"{where}: {name!r} is already {source[name]} of these records; "
                         f"expected a unique name (rename it)")
    source[name] = where


def _per_sample(values: Any, n: int, what: str) -> np.ndarray:
    """A metric's result as one value per sample (a scalar applies to every sample)."""
    array = to_numpy(values)
    if array.ndim == 0:
        return np.full(n, array.item())
    if array.shape[:1] != (n,):
        raise ValueError(f"{what}: got shape {array.shape}; expected ({n},) one value per sample")
    return array
