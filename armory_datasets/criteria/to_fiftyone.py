"""Compile a criterion to a FiftyOne ``ViewExpression`` for ``dataset.match``.

Column names map to FiftyOne field paths through the one vocabulary
(``target`` is ``ground_truth.class_index``, ...). MongoDB orders null below every
number, so comparisons on nullable columns first require the value to exist: a null
compares false, as at export time and in the other backends.

Example:
    >>> from armory_datasets.criteria import parse
    >>> view = dataset.match(parse("confidence < 0.5").to_fiftyone())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

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
from armory_datasets.schema import VOCABULARY


def _value(node: Value, F: Any) -> Any:
    match node:
        case Field():
            return F(VOCABULARY.fiftyone_path(node.require_name()))
        case Literal(value=value):
            return value
        case Arith(op="+"):
            return _value(node.left, F) + _value(node.right, F)
        case Arith(op="-"):
            return _value(node.left, F) - _value(node.right, F)
        case Arith(op="*"):
            return _value(node.left, F) * _value(node.right, F)
        case Arith(op="%"):
            # $mod truncates like C; adding n first gives floor modulo, as numpy.
            n = _value(node.right, F)
            return ((_value(node.left, F) % n) + n) % n
    raise TypeError(f"unknown value node {node!r}")


def _compare(op: str, a: Any, b: Any) -> Any:
    match op:
        case "<":
            return a < b
        case "<=":
            return a <= b
        case "==":
            return a == b
        case "!=":
            return a != b
        case ">":
            return a > b
        case ">=":
            return a >= b
    raise ValueError(f"op: {op!r}")


def _leaf(node: Criterion, expression: Any, F: Any) -> Any:
    guards = [F(VOCABULARY.fiftyone_path(name)).exists() for name in nullable_fields(node)]
    return F.all(guards + [expression]) if guards else expression


def to_fiftyone(node: Criterion) -> Any:
    """The criterion as a ViewExpression (see module docstring)."""
    from armory_datasets.database import import_fiftyone

    fo = import_fiftyone()
    return _compile(node, fo.ViewField, fo.core.expressions.ViewExpression)


def _compile(node: Criterion, F: Any, Expression: Any) -> Any:
    match node:
        case Const(value=value):
            return Expression(value)
        case Compare(op=op, left=left, right=right):
            return _leaf(node, _compare(op, _value(left, F), _value(right, F)), F)
        case IsIn(value=value, options=options):
            if not options:
                return Expression(False)
            return _leaf(node, _value(value, F).is_in(list(options)), F)
        case IsClose():
            distance = (_value(node.value, F) - node.target).abs()
            return _leaf(node, distance <= node.tolerance, F)
        case And(items=items):
            return F.all([_compile(c, F, Expression) for c in items])
        case Or(items=items):
            return F.any([_compile(c, F, Expression) for c in items])
        case Not(item=item):
            return ~_compile(item, F, Expression)
        case Named():
            return _compile(node.core(), F, Expression)
    raise not_compilable(node)
