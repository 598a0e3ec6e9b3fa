"""Compile a criterion to a ``pyarrow.compute.Expression``.

The expression is a ``pyarrow.dataset`` filter, so the Parquet scan pushes it down
(row groups whose statistics exclude it are skipped). A null compares false, as at
export time: under a ``~``, comparisons on nullable columns are wrapped so that a null
is false before it is negated; outside any ``~`` they are left bare, because ``&`` and
``|`` are monotone and a filter drops a null row as it drops a false one, and a bare
comparison is what row-group statistics can prune with. (As a projected column the
root may then be null where the criterion is false: ``arrow_mask`` fills it.)

An Expression cannot express a predicate over the items of a list (``any``, ``all``,
``count`` of boxes): ``arrow_mask`` evaluates such a criterion on an Arrow table instead,
computing each object node with Arrow compute (``list_flatten``, the predicate as an
Expression over the flat boxes, then a per-record count over ``list_parent_indices``)
and the rest as an Expression that reads those results as columns.

Example:
    >>> from armory_datasets.criteria import parse
    >>> parse("first_n_batches(2)").to_arrow()
    <pyarrow.compute.Expression (batch < 2)>
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from armory_datasets.criteria.boxes import box_list_array
from armory_datasets.criteria.nodes import (
    And,
    Arith,
    Compare,
    Const,
    CountObjects,
    Criterion,
    Field,
    IsClose,
    IsIn,
    Literal,
    Named,
    Not,
    ObjectsTest,
    Or,
    Value,
    object_nodes,
)
from armory_datasets.criteria.compiling import not_compilable, nullable_fields

# Arrow's modulo is floor modulo, like numpy's (the divisor is a positive literal).
_ARITH = {"+": pc.add, "-": pc.subtract, "*": pc.multiply, "%": pc.modulo}
_COMPARE = {
    "<": pc.less,
    "<=": pc.less_equal,
    "==": pc.equal,
    "!=": pc.not_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


Computed = dict[tuple, str]
"""Object node key -> name of the column holding its computed values (see arrow_mask)."""


def _computed(node: ObjectsTest | CountObjects, computed: Computed | None) -> Any:
    if computed is None:
        raise ValueError(f"{node}: a pyarrow Expression cannot test the items of a list; "
                         "use criterion.arrow_mask(table) (Export.table(where=...) does)")
    return pc.field(computed[node._key()])


def _value(node: Value, computed: Computed | None = None) -> Any:
    match node:
        case Field():
            return pc.field(node.require_name())
        case Literal(value=value):
            return pc.scalar(value)
        case Arith(op=op):
            return _ARITH[op](_value(node.left, computed), _value(node.right, computed))
        case CountObjects():
            return _computed(node, computed)
    raise TypeError(f"unknown value node {node!r}")


def _filled(expression: Any) -> Any:
    return pc.if_else(pc.is_valid(expression), expression, pc.scalar(False))


def _leaf(node: Criterion, expression: Any, negated: bool) -> Any:
    return _filled(expression) if negated and nullable_fields(node) else expression


def to_arrow(node: Criterion, computed: Computed | None = None, negated: bool = False) -> Any:
    """The criterion as a pyarrow Expression (see module docstring); object nodes read
    the ``computed`` columns; ``negated``: the node is under a ``~``."""
    match node:
        case Const(value=value):
            return pc.scalar(value)
        case Compare(op=op, left=left, right=right):
            return _leaf(node, _COMPARE[op](_value(left, computed), _value(right, computed)), negated)
        case IsIn(value=value, options=options):
            if not options:
                return pc.scalar(False)
            expression = pc.is_in(_value(value, computed), value_set=_value_set(options))
            return _leaf(node, expression, negated)
        case IsClose():
            distance = pc.abs(pc.subtract(_value(node.value, computed), pc.scalar(node.target)))
            return _leaf(node, pc.less_equal(distance, pc.scalar(node.tolerance)), negated)
        case And(items=items):
            return _fold(pc.and_kleene, items, computed, negated)
        case Or(items=items):
            return _fold(pc.or_kleene, items, computed, negated)
        case Not(item=item):
            return pc.invert(to_arrow(item, computed, True))
        case ObjectsTest():
            return _computed(node, computed)
        case Named():
            return to_arrow(node.core(), computed, negated)
    raise not_compilable(node)


def _evaluate(expression: Any, table: pa.Table) -> pa.ChunkedArray:
    """An Expression's values over an in-memory table (a projection, not a filter)."""
    import pyarrow.dataset as ds

    return ds.dataset(table).to_table(columns={"value": expression}).column("value")


def _object_values(node: ObjectsTest | CountObjects, table: pa.Table) -> pa.Array:
    """An object node's value per record, with Arrow compute: the column's boxes are
    flattened (one row per box), the predicate is an Expression over them, and the
    boxes that satisfy it are counted per record (``list_parent_indices``)."""
    lists = box_list_array(table.column(node.column), node.column, table.num_rows)
    boxes = pa.Table.from_struct_array(pc.list_flatten(lists))
    mask = _evaluate(_filled(to_arrow(node.predicate)), boxes).to_numpy() if len(boxes) else np.zeros(0, bool)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    counts = np.bincount(parents[mask], minlength=table.num_rows)  # per-record reduction
    missing = ~lists.is_valid().to_numpy(zero_copy_only=False)
    if isinstance(node, CountObjects):
        return pa.array(counts, type=pa.int64(), mask=missing)
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    hit = counts > 0 if node.quantifier == "any" else counts == lengths
    return pa.array(hit & ~missing, type=pa.bool_())


def arrow_mask(node: Criterion, table: pa.Table) -> pa.ChunkedArray:
    """Which rows of an Arrow table the criterion selects (boolean), object criteria included.

    Example:
        >>> from armory_datasets.criteria import parse
        >>> t = pa.table({"batch": [0, 3]})
        >>> arrow_mask(parse("first_n_batches(2)"), t).to_pylist()
        [True, False]
    """
    computed: Computed = {}
    for i, object_node in enumerate(object_nodes(node)):
        name = f"__object_{i}"
        while name in table.column_names:
            name = "_" + name
        table = table.append_column(name, _object_values(object_node, table))
        computed[object_node._key()] = name
    return _evaluate(_filled(to_arrow(node, computed)), table)


def _value_set(options: tuple) -> pa.Array:
    """The options for ``is_in``, which hashes bits: -0.0 must be listed beside 0.0
    to match it, as ``==`` (and numpy at export time) does."""
    values = list(options)
    values += [-v for v in options if isinstance(v, float) and v == 0.0]
    return pa.array(values)


def _fold(op: Any, items: tuple[Criterion, ...], computed: Computed | None, negated: bool) -> Any:
    expression = to_arrow(items[0], computed, negated)
    for item in items[1:]:
        expression = op(expression, to_arrow(item, computed, negated))
    return expression
