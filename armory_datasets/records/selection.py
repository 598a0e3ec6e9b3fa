"""Which records a criterion selects, evaluated on the records' own columns.

A criterion that compiles is run with the query path's own pyarrow evaluation
(``criterion.arrow_mask``: ``to_arrow()`` plus object criteria) on the batch's records,
so export time and query time select the same rows by construction. One built on an upstream-style function or an anonymous metric
cannot compile; it is evaluated with numpy on the same columns (its function gets
``(batch_idx, batch)`` as upstream, an anonymous metric the batch).

Columns the chain lacks but other chains have (their perturbation parameters) read as
null, as in the table; a column the records do not have at all is an error naming it.

Example:
    >>> import numpy as np, pyarrow as pa
    >>> from armory_datasets import criteria as C
    >>> from armory_datasets.records.builder import Records
    >>> records = Records("benign", 0, np.array([4, 5, 6]), 2, 2, {"confidence": pa.array([0.2, 0.9, None])})
    >>> select(C.col("confidence") < 0.5, records, (0, None)).tolist()
    [True, False, False]
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from armory_datasets.criteria.evaluate import BatchContext, as_values, evaluate
from armory_datasets.criteria.nodes import Const, Criterion, Field, Opaque, object_nodes

__all__ = ["select"]


def select(criterion: Criterion, records: Any, args: tuple[Any, ...]) -> np.ndarray:
    """Boolean mask (one per record) of the records ``criterion`` selects.

    ``args`` is ``(batch_idx, batch)``, given to upstream-style functions.
    """
    table = _with_absent(criterion, records)
    if not _compilable(criterion):
        return _evaluated(criterion, table, args)
    expanded = criterion.expand()
    if isinstance(expanded, Const):  # always(), Const: nothing to read
        return np.full(table.num_rows, expanded.value)
    _require_columns(criterion, table)
    rows = pa.Table.from_batches([table])
    expression = _expression(criterion)
    try:
        if expression is None:  # object criteria: the query path's arrow_mask
            return criterion.arrow_mask(rows).fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[rows.filter(expression).column("position").to_numpy()] = True  # the query's own filter
        return mask
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:  # as a query says it
        names = dict.fromkeys(_names(criterion))
        types = ", ".join(f"{name} {table.schema.field(name).type}" for name in names)
        raise ValueError(f"criterion {criterion}: cannot be applied to these records ({types}): "
                         f"{error}") from None


@lru_cache(maxsize=256)
def _expression(criterion: Criterion) -> Any:
    """The criterion's pyarrow filter expression; None when it tests boxes (object nodes)."""
    return None if object_nodes(criterion) else criterion.to_arrow()


@lru_cache(maxsize=256)
def _compilable(criterion: Criterion) -> bool:
    """False for a criterion on an upstream-style function or an anonymous metric."""
    if any(f.name is None for f in criterion.fields()):
        return False
    return not _has_opaque(criterion)


def _has_opaque(criterion: Criterion) -> bool:
    expanded = criterion.expand()
    return isinstance(expanded, Opaque) or any(_has_opaque(c) for c in expanded.children())


def _names(criterion: Criterion) -> list[str]:
    return [f.name for f in criterion.fields() if f.name is not None]


def _with_absent(criterion: Criterion, records: Any) -> pa.RecordBatch:
    """The records' table, plus null columns for the other chains' fields it reads."""
    table = records.table()
    missing = [name for name in dict.fromkeys(_names(criterion))
               if name in records.absent and name not in table.schema.names]
    for name in missing:
        table = table.append_column(name, pa.nulls(table.num_rows, pa.float64()))
    return table


def _require_columns(criterion: Criterion, table: pa.RecordBatch) -> None:
    missing = [name for name in dict.fromkeys(_names(criterion)) if name not in table.schema.names]
    if missing:
        raise ValueError(f"criterion {criterion}: reads {missing}, which these records do not have; "
                         f"expected one of {sorted(table.schema.names)}")


class _RecordContext(BatchContext):
    """A BatchContext whose named fields are read from the records' columns."""

    table: pa.RecordBatch

    def _lookup(self, node: Field) -> Any:
        if node.name is None:  # an anonymous metric: computed on the batch, not recorded
            return as_values(node.metric(self.batch), self.size, str(node))
        if node.name == "chain":
            return np.str_(self.chain)
        if node.name == "batch":
            return np.int64(self.batch_idx)
        if node.name not in self.table.schema.names:
            raise ValueError(f"{node.name}: not a column of these records; expected one of "
                             f"{sorted(self.table.schema.names)}")
        column = self.table.column(node.name)
        if pa.types.is_integer(column.type) and column.null_count:
            column = column.cast(pa.float64())  # null reads as NaN, compares false
        if pa.types.is_floating(column.type):
            return column.to_numpy(zero_copy_only=False)
        return as_values(column.to_numpy(zero_copy_only=False), self.size, node.name)


def _evaluated(criterion: Criterion, table: pa.RecordBatch, args: tuple[Any, ...]) -> np.ndarray:
    batch_idx, batch = args
    chain = table.column("chain")[0].as_py() if table.num_rows else None
    ctx = _RecordContext(args, chain, int(batch_idx), batch, table.num_rows)
    ctx.table = table
    return np.broadcast_to(evaluate(criterion, ctx), (table.num_rows,)).copy()
