"""Merging what several exporters gave for one batch into one row per (chain, sample).

Each exporter hands over a :class:`Contribution` (its selected records' columns);
:func:`merge` makes the batch's rows: the union of the selections, each column taken
from the first exporter that gave it, and the ``exporters`` column listing every
exporter that chose the record, in the order they first contributed.

Example:
    >>> import numpy as np, pyarrow as pa
    >>> a = Contribution("a", "benign", np.array([0, 1]), 0, np.array([0, 1]), {"x": pa.array([1, 2])})
    >>> b = Contribution("b", "benign", np.array([1]), 0, np.array([1]), {"x": pa.array([9])})
    >>> merge([a, b], "E").to_pydict()["exporters"]
    [['a'], ['a', 'b']]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Contribution", "merge"]


@dataclass
class Contribution:
    """What one exporter handed over for some records of the current batch."""

    exporter: str
    chain: str
    sample_indices: np.ndarray
    batch: int
    positions: np.ndarray
    columns: dict[str, pa.Array]


def merge(pending: list[Contribution], export_id: str) -> pa.RecordBatch:
    """One row per (chain, sample_index) of the batch; the first contribution of a column wins.

    Vectorised: rows are the unique (chain, sample_index) keys, each contribution's rows
    are located with numpy, and each column is gathered with one Arrow ``take``.
    """
    if len(pending) == 1:
        return _single(pending[0], export_id)
    chains = list(dict.fromkeys(c.chain for c in pending))
    code = {chain: k for k, chain in enumerate(chains)}
    keys = np.concatenate([c.sample_indices * len(chains) + code[c.chain] for c in pending])
    unique, rows = np.unique(keys, return_inverse=True)
    n = len(unique)
    bounds = np.cumsum([0] + [len(c.sample_indices) for c in pending])
    rows_of = [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    first = np.full(n, -1, dtype=np.int64)  # first contribution row giving each record
    for rows_c, a in zip(reversed(rows_of), reversed(bounds[:-1])):
        first[rows_c] = a + np.arange(len(rows_c))
    sample_index = unique // len(chains)
    chain = pa.array(chains, pa.string()).take(pa.array(unique % len(chains)))
    names = list(dict.fromkeys(c.exporter for c in pending))
    chose = np.zeros((n, len(names)), dtype=bool)
    for c, rows_c in zip(pending, rows_of):
        chose[rows_c, names.index(c.exporter)] = True
    offsets = np.concatenate([[0], np.cumsum(chose.sum(axis=1))]).astype(np.int32)
    exporter_values = pa.array(names, pa.string()).take(pa.array(np.nonzero(chose)[1]))
    columns: dict[str, pa.Array] = {
        "export_id": pa.repeat(export_id, n),
        "record_key": pc.binary_join_element_wise(chain, pc.cast(pa.array(sample_index), pa.string()), "/"),
        "chain": chain,
        "batch": pa.array(np.concatenate([np.full(len(c.sample_indices), c.batch) for c in pending])[first]),
        "position": pa.array(np.concatenate([c.positions for c in pending])[first]),
        "sample_index": pa.array(sample_index),
        "exporters": pa.ListArray.from_arrays(pa.array(offsets), exporter_values),
    }
    for name in dict.fromkeys(name for c in pending for name in c.columns):  # gather, first wins
        given = [(c.columns[name], rows_c) for c, rows_c in zip(pending, rows_of) if name in c.columns]
        take = np.full(n, -1, dtype=np.int64)
        offset_of = np.cumsum([0] + [len(array) for array, _ in given])
        for (array, rows_c), offset in zip(reversed(given), reversed(offset_of[:-1])):
            take[rows_c] = offset + np.arange(len(array))
        source = pa.concat_arrays([array for array, _ in given])
        columns[name] = source.take(pa.array(take, mask=take < 0))
    return pa.RecordBatch.from_pydict(columns)


def _single(c: Contribution, export_id: str) -> pa.RecordBatch:
    """The rows of a batch only one exporter contributed to (the common case)."""
    n = len(c.sample_indices)
    chain = pa.repeat(c.chain, n)
    sample_index = pa.array(c.sample_indices)
    columns = {
        "export_id": pa.repeat(export_id, n),
        "record_key": pc.binary_join_element_wise(chain, pc.cast(sample_index, pa.string()), "/"),
        "chain": chain,
        "batch": pa.array(np.full(n, c.batch, dtype=np.int64)),
        "position": pa.array(c.positions),
        "sample_index": sample_index,
        "exporters": pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)),
                                              pa.repeat(c.exporter, n)),
        **c.columns,
    }
    return pa.RecordBatch.from_pydict(columns)
