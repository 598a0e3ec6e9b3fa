"""Compile a criterion to a ``pyarrow.compute.Expression``.

The expression is a ``pyarrow.dataset`` filter, so the Parquet scan pushes it down
(row groups whose statistics exclude it are skipped). Comparisons on nullable columns
are wrapped so that a null compares false, as at export time.

Example:
    >>> from armory_datasets.criteria import parse
    >>> parse("first_n_batches(2)").to_arrow()
    <pyarrow.compute.Expression (batch < 2)>
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from armory_datasets.criteria.nodes import (
    And,
    Arith,
    Compare,
    Const,
    Criterion,
    Field,
    IsClose,
    IsIn,
    Literal,
    Named,
    Not,
    Or,
    Value,
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


def _value(node: Value) -> Any:
    match node:
        case Field():
            return pc.field(node.require_name())
        case Literal(value=value):
            return pc.scalar(value)
        case Arith(op=op):
            return _ARITH[op](_value(node.left), _value(node.right))
    raise TypeError(f"unknown value node {node!r}")


def _leaf(node: Criterion, expression: Any) -> Any:
    if nullable_fields(node):
        return pc.if_else(pc.is_valid(expression), expression, pc.scalar(False))
    return expression


def to_arrow(node: Criterion) -> Any:
    """The criterion as a pyarrow Expression (see module docstring)."""
    match node:
        case Const(value=value):
            return pc.scalar(value)
        case Compare(op=op, left=left, right=right):
            return _leaf(node, _COMPARE[op](_value(left), _value(right)))
        case IsIn(value=value, options=options):
            if not options:
                return pc.scalar(False)
            expression = pc.is_in(_value(value), value_set=_value_set(options))
            return _leaf(node, expression)
        case IsClose():
            distance = pc.abs(pc.subtract(_value(node.value), pc.scalar(node.target)))
            return _leaf(node, pc.less_equal(distance, pc.scalar(node.tolerance)))
        case And(items=items):
            return _fold(pc.and_kleene, items)
        case Or(items=items):
            return _fold(pc.or_kleene, items)
        case Not(item=item):
            return pc.invert(to_arrow(item))
        case Named():
            return to_arrow(node.core())
    raise not_compilable(node)


def _value_set(options: tuple) -> pa.Array:
    """The options for ``is_in``, which hashes bits: -0.0 must be listed beside 0.0
    to match it, as ``==`` (and numpy at export time) does."""
    values = list(options)
    values += [-v for v in options if isinstance(v, float) and v == 0.0]
    return pa.array(values)


def _fold(op: Any, items: tuple[Criterion, ...]) -> Any:
    expression = to_arrow(items[0])
    for item in items[1:]:
        expression = op(expression, to_arrow(item))
    return expression
