"""Compile a criterion to a FiftyOne ``ViewExpression`` for ``dataset.match``.

Column names map to FiftyOne field paths through the one vocabulary
(``target`` is ``ground_truth.class_index``, ...). MongoDB orders null below every
number, so comparisons on nullable columns first require the value to exist: a null
compares false, as at export time and in the other backends. String literals go through
``$literal`` (``F.literal``), so ``chain == "$chain"`` compares with the text "$chain"
rather than with the field ``chain``, as in pyarrow and SQL.

Object criteria filter the record's raw list of boxes (``F("predicted_objects")``, the
same fields as the table) with ``filter``: inside it ``F("score")`` is the box's field.

Example:
    >>> from armory_datasets.criteria import parse
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> from armory_datasets.store import build_fiftyone_dataset
    >>> dataset = build_fiftyone_dataset(tiny_export(), overwrite=True)
    >>> dataset.match(parse("~correct & chain == 'noisy'").to_fiftyone()).count()
    3
"""

from __future__ import annotations

from typing import Any

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
from armory_datasets.criteria.compiling import not_compilable, nullable_fields
from armory_datasets.schema import VOCABULARY


def _value(node: Value, F: Any) -> Any:
    match node:
        case CountObjects():
            lists, kept = _kept(node, F)
            return lists.is_array().if_else(kept, None)
        case Field():
            return F(VOCABULARY.fiftyone_path(node.require_name()))
        case Literal(value=str() as value):
            return F.literal(value)  # else MongoDB reads "$name" as a field path
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


def _kept(node: ObjectsTest | CountObjects, F: Any) -> tuple[Any, Any]:
    """(the list, how many of its boxes satisfy the predicate); $size needs an array, so
    callers read the count only where the list is one ($cond evaluates one branch)."""
    from armory_datasets.database import import_fiftyone

    Expression = import_fiftyone().core.expressions.ViewExpression
    lists = F(VOCABULARY.fiftyone_path(node.column))
    return lists, lists.filter(_compile(node.predicate, F, Expression)).length()


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
            # $literal: else MongoDB reads an option "$name" as a field path
            return _leaf(node, Expression({"$in": [_value(value, F), F.literal(list(options))]}), F)
        case IsClose():
            distance = (_value(node.value, F) - node.target).abs()
            return _leaf(node, distance <= node.tolerance, F)
        case And(items=items):
            return F.all([_compile(c, F, Expression) for c in items])
        case Or(items=items):
            return F.any([_compile(c, F, Expression) for c in items])
        case Not(item=item):
            return ~_compile(item, F, Expression)
        case ObjectsTest(quantifier=quantifier):
            lists, kept = _kept(node, F)
            hit = kept > 0 if quantifier == "any" else kept == lists.length()
            return lists.is_array().if_else(hit, False)
        case Named():
            return _compile(node.core(), F, Expression)
    raise not_compilable(node)
