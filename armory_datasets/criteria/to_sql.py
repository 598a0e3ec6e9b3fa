"""Compile a criterion to a SQL boolean expression (DuckDB dialect).

Identifiers are double-quoted and strings single-quoted, so any column name and
value is safe to embed. Comparisons on nullable columns are wrapped in
``coalesce(..., FALSE)`` so a null compares false, as at export time.

Object criteria use DuckDB's list functions: ``any``/``all``/``count`` of boxes count
the items ``list_filter`` keeps, a lambda over the box struct (``__box."score"``).

Example:
    >>> from armory_datasets.criteria import parse
    >>> parse("target in [6, 23] & confidence < 0.5").to_sql()
    '(coalesce("target" IN (6, 23), FALSE)) AND (coalesce("confidence" < 0.5::DOUBLE, FALSE))'
"""

from __future__ import annotations

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
    Scalar,
    Value,
)
from armory_datasets.criteria.compiling import not_compilable, nullable_fields

_OPS = {"<": "<", "<=": "<=", "==": "=", "!=": "<>", ">": ">", ">=": ">="}


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float):
        # Typed, so that integer columns meet it in float64 arithmetic as at export time
        # (a bare 0.1 would be a DECIMAL in DuckDB).
        return f"{value!r}::DOUBLE"
    return str(value)


BOX = "__box"
"""The lambda parameter naming one box inside list_filter."""


def _value(node: Value, scope: str = "") -> str:
    """SQL for a value; inside a box predicate ``scope`` is ``'__box.'``."""
    match node:
        case Field():
            return scope + quote_identifier(node.require_name())
        case Literal(value=value):
            return sql_literal(value)
        case Arith(op="%"):
            # DuckDB's % truncates like C; adding n first gives floor modulo, as numpy.
            n = _value(node.right, scope)
            return f"((({_value(node.left, scope)} % {n}) + {n}) % {n})"
        case Arith(op=op):
            return f"({_value(node.left, scope)} {op} {_value(node.right, scope)})"
        case CountObjects():
            return _count(node)
    raise TypeError(f"unknown value node {node!r}")


def _count(node: ObjectsTest | CountObjects) -> str:
    """Boxes of the node's column satisfying its predicate; null for a null list."""
    column = quote_identifier(node.column)
    predicate = to_sql(node.predicate, BOX + ".")
    return f"len(list_filter({column}, lambda {BOX}: {predicate}))"


def _leaf(node: Criterion, sql: str) -> str:
    if nullable_fields(node):
        return f"coalesce({sql}, FALSE)"
    return sql


def to_sql(node: Criterion, scope: str = "") -> str:
    """The criterion as a SQL expression (see module docstring)."""
    match node:
        case Const(value=value):
            return sql_literal(value)
        case Compare(op=op, left=left, right=right):
            return _leaf(node, f"{_value(left, scope)} {_OPS[op]} {_value(right, scope)}")
        case IsIn(value=value, options=options):
            if not options:
                return "FALSE"
            listed = ", ".join(sql_literal(o) for o in options)
            return _leaf(node, f"{_value(value, scope)} IN ({listed})")
        case IsClose():
            distance = f"abs({_value(node.value, scope)} - {sql_literal(node.target)})"
            return _leaf(node, f"{distance} <= {sql_literal(node.tolerance)}")
        case And(items=items):
            return " AND ".join(f"({to_sql(c, scope)})" for c in items)
        case Or(items=items):
            return " OR ".join(f"({to_sql(c, scope)})" for c in items)
        case Not(item=item):
            return f"NOT ({to_sql(item, scope)})"
        case ObjectsTest(quantifier="any"):
            return f"coalesce({_count(node)} > 0, FALSE)"
        case ObjectsTest(quantifier="all"):
            return f"coalesce({_count(node)} = len({quote_identifier(node.column)}), FALSE)"
        case Named():
            return to_sql(node.core(), scope)
    raise not_compilable(node)
