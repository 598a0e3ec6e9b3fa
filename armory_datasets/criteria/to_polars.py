"""Compile a criterion to a Polars expression (``pl.Expr``) for ``filter``.

``pl.scan_parquet(...).filter(criterion.to_polars())`` pushes the predicate into the
Parquet scan. Comparisons on nullable columns get ``fill_null(False)``, so a null
compares false and ``~`` of it is true, as at export time. Polars' ``%`` is already
floor modulo and its ``==`` already equates -0.0 with 0.0, as numpy does. Polars is
imported here only (the ``[polars]`` extra).

Object criteria evaluate the box predicate per list item with ``list.eval``, a box's
field being ``pl.element().struct.field("score")``, and sum it: ``count`` is that sum
(null for a null list), ``any`` is a count above 0, ``all`` a count equal to the list's
length (true for an empty list), both false for a null list.

Example:
    >>> from armory_datasets.criteria import parse
    >>> str(parse("batch < 2 & chain == 'fgsm'").to_polars())
    '[([(col("batch")) < (dyn int: 2)]) & ([(col("chain")) == ("fgsm")])]'
    >>> import polars as pl
    >>> frame = pl.DataFrame({"predicted_objects": [[{"score": 0.9}], [{"score": 0.1}], None]})
    >>> frame.filter(parse("any(predicted_objects, score > 0.5)").to_polars()).height
    1
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

from armory_datasets.criteria.compiling import not_compilable, nullable_fields
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
)

_OPS = {"<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
        ">": operator.gt, ">=": operator.ge, "+": operator.add, "-": operator.sub,
        "*": operator.mul, "%": operator.mod}


def _polars() -> Any:
    from armory_datasets.extras import require

    require("polars", extra="polars", feature="criterion.to_polars()")
    import polars

    return polars


def _value(pl: Any, node: Value, box: bool) -> Any:
    """A value; inside a box predicate (``box``) a field is the list item's struct field."""
    match node:
        case CountObjects():
            return _count(pl, node)
        case Field() if box:
            return pl.element().struct.field(node.require_name())
        case Field():
            return pl.col(node.require_name())
        case Literal(value=value):
            return pl.lit(value)
        case Arith(op=op):
            return _OPS[op](_value(pl, node.left, box), _value(pl, node.right, box))
    raise TypeError(f"unknown value node {node!r}")


def _count(pl: Any, node: ObjectsTest | CountObjects) -> Any:
    """Boxes of the node's column satisfying its predicate (Int64); null for a null list."""
    kept = pl.col(node.column).list.eval(_compile(pl, node.predicate, box=True))
    return kept.list.sum().cast(pl.Int64)  # Int64: count - count must not wrap around


def _leaf(node: Criterion, expression: Any) -> Any:
    return expression.fill_null(False) if nullable_fields(node) else expression


def _compile(pl: Any, node: Criterion, box: bool = False) -> Any:
    match node:
        case Const(value=value):
            return pl.lit(value)
        case Compare(op=op, left=left, right=right):
            return _leaf(node, _OPS[op](_value(pl, left, box), _value(pl, right, box)))
        case IsIn(value=value, options=options):
            if not options:
                return pl.lit(False)
            return _leaf(node, _value(pl, value, box).is_in(list(options)))
        case IsClose():
            distance = (_value(pl, node.value, box) - node.target).abs()
            return _leaf(node, distance <= node.tolerance)
        case And(items=items):
            return reduce(operator.and_, (_compile(pl, c, box) for c in items))
        case Or(items=items):
            return reduce(operator.or_, (_compile(pl, c, box) for c in items))
        case Not(item=item):
            return ~_compile(pl, item, box)
        case ObjectsTest(quantifier="any"):
            return (_count(pl, node) > 0).fill_null(False)
        case ObjectsTest(quantifier="all"):
            return (_count(pl, node) == pl.col(node.column).list.len()).fill_null(False)
        case Named():
            return _compile(pl, node.core(), box)
    raise not_compilable(node)


def to_polars(node: Criterion) -> Any:
    """The criterion as a Polars expression (see module docstring)."""
    return _compile(_polars(), node)
