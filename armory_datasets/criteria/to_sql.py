"""Compile a criterion to a SQL boolean expression (DuckDB dialect).

Identifiers are double-quoted and strings single-quoted, so any column name and
value is safe to embed. Comparisons on nullable columns are wrapped in
``coalesce(..., FALSE)`` so a null compares false, as at export time.

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
    Criterion,
    Field,
    IsClose,
    IsIn,
    Literal,
    Named,
    Not,
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


def _value(node: Value) -> str:
    match node:
        case Field():
            return quote_identifier(node.require_name())
        case Literal(value=value):
            return sql_literal(value)
        case Arith(op="%"):
            # DuckDB's % truncates like C; adding n first gives floor modulo, as numpy.
            n = _value(node.right)
            return f"((({_value(node.left)} % {n}) + {n}) % {n})"
        case Arith(op=op):
            return f"({_value(node.left)} {op} {_value(node.right)})"
    raise TypeError(f"unknown value node {node!r}")


def _leaf(node: Criterion, sql: str) -> str:
    if nullable_fields(node):
        return f"coalesce({sql}, FALSE)"
    return sql


def to_sql(node: Criterion) -> str:
    """The criterion as a SQL expression (see module docstring)."""
    match node:
        case Const(value=value):
            return sql_literal(value)
        case Compare(op=op, left=left, right=right):
            return _leaf(node, f"{_value(left)} {_OPS[op]} {_value(right)}")
        case IsIn(value=value, options=options):
            if not options:
                return "FALSE"
            listed = ", ".join(sql_literal(o) for o in options)
            return _leaf(node, f"{_value(value)} IN ({listed})")
        case IsClose():
            distance = f"abs({_value(node.value)} - {sql_literal(node.target)})"
            return _leaf(node, f"{distance} <= {sql_literal(node.tolerance)}")
        case And(items=items):
            return " AND ".join(f"({to_sql(c)})" for c in items)
        case Or(items=items):
            return " OR ".join(f"({to_sql(c)})" for c in items)
        case Not(item=item):
            return f"NOT ({to_sql(item)})"
        case Named():
            return to_sql(node.core())
    raise not_compilable(node)
