"""Compile a criterion to a Polars expression (``pl.Expr``) for ``filter``.

``pl.scan_parquet(...).filter(criterion.to_polars())`` pushes the predicate into the
Parquet scan. Comparisons on nullable columns get ``fill_null(False)``, so a null
compares false and ``~`` of it is true, as at export time. Polars' ``%`` is already
floor modulo and its ``==`` already equates -0.0 with 0.0, as numpy does. Object
criteria (boxes) are not compiled to Polars yet. Polars is imported here only (the
``[polars]`` extra).

Example:
    >>> from armory_datasets.criteria import parse
    >>> str(parse("batch < 2 & chain == 'fgsm'").to_polars())
    '[([(col("batch")) < (dyn int: 2)]) & ([(col("chain")) == ("fgsm")])]'
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


def _not_yet(node: Criterion | Value) -> ValueError:
    return ValueError(f"{node}: object criteria are compiled for DuckDB, pyarrow and FiftyOne, "
                      f"not yet for Polars; filter with to_arrow() (pl.from_arrow the result)")


def _value(pl: Any, node: Value) -> Any:
    match node:
        case CountObjects():
            raise _not_yet(node)
        case Field():
            return pl.col(node.require_name())
        case Literal(value=value):
            return pl.lit(value)
        case Arith(op=op):
            return _OPS[op](_value(pl, node.left), _value(pl, node.right))
    raise TypeError(f"unknown value node {node!r}")


def _leaf(node: Criterion, expression: Any) -> Any:
    return expression.fill_null(False) if nullable_fields(node) else expression


def _compile(pl: Any, node: Criterion) -> Any:
    match node:
        case Const(value=value):
            return pl.lit(value)
        case Compare(op=op, left=left, right=right):
            return _leaf(node, _OPS[op](_value(pl, left), _value(pl, right)))
        case IsIn(value=value, options=options):
            if not options:
                return pl.lit(False)
            return _leaf(node, _value(pl, value).is_in(list(options)))
        case IsClose():
            distance = (_value(pl, node.value) - node.target).abs()
            return _leaf(node, distance <= node.tolerance)
        case And(items=items):
            return reduce(operator.and_, (_compile(pl, c) for c in items))
        case Or(items=items):
            return reduce(operator.or_, (_compile(pl, c) for c in items))
        case Not(item=item):
            return ~_compile(pl, item)
        case ObjectsTest():
            raise _not_yet(node)
        case Named():
            return _compile(pl, node.core())
    raise not_compilable(node)


def to_polars(node: Criterion) -> Any:
    """The criterion as a Polars expression (see module docstring)."""
    return _compile(_polars(), node)
