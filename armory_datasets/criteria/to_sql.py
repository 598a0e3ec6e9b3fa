"""Compile a criterion to a SQL boolean expression: DuckDB's dialect, or Spark SQL's.

Identifiers and strings are quoted the dialect's way, so any column name and value
is safe to embed. Comparisons on nullable columns are wrapped in
``coalesce(..., FALSE)`` so a null compares false, as at export time. The dialects
differ only in quoting, typed float literals, floor modulo and list functions
(:class:`SqlDialect`).

Object criteria count the boxes a lambda over the box struct keeps: ``any``/``all``/
``count`` of boxes are ``len(list_filter(col, lambda __box: ...))`` in DuckDB and
``size(filter(col, __box -> ...))`` in Spark SQL, with ``__box."score"`` for a box's
field; a null list counts null, so ``any``/``all`` of it are false, and ``all`` of an
empty list is true.

Example:
    >>> from armory_datasets.criteria import parse
    >>> parse("target in [6, 23] & confidence < 0.5").to_sql()
    '(coalesce("target" IN (6, 23), FALSE)) AND (coalesce("confidence" < 0.5::DOUBLE, FALSE))'
    >>> parse("chain == 'fgsm' & batch % 5 == 0").to_spark_sql()
    "(`chain` = 'fgsm') AND (pmod(`batch`, 5) = 0)"
    >>> sql = parse("count(predicted_objects, label == 3) > 1").to_spark_sql()
    >>> sql[sql.index("size"):sql.index(" END")]
    'size(filter(`predicted_objects`, __box -> coalesce(__box.`label` = 3, FALSE)))'
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

BOX = "__box"
"""The lambda parameter naming one box inside list_filter (DuckDB) or filter (Spark)."""

_OPS = {"<": "<", "<=": "<=", "==": "=", "!=": "<>", ">": ">", ">=": ">="}


class SqlDialect:
    """DuckDB's SQL: the quoting, literal, modulo and list rules the compiler needs.

    Example:
        >>> DUCKDB.literal("it's"), SPARK.identifier("a`b")
        ("'it''s'", '`a``b`')
    """

    def identifier(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def string(self, value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def double(self, value: float) -> str:
        # Typed, so that integer columns meet it in float64 arithmetic as at export time
        # (a bare 0.1 would be a DECIMAL).
        return f"{value!r}::DOUBLE"

    def floor_modulo(self, left: str, divisor: str) -> str:
        # DuckDB's % truncates like C; adding n first gives floor modulo, as numpy.
        return f"((({left} % {divisor}) + {divisor}) % {divisor})"

    def count_where(self, lists: str, predicate: str) -> str:
        """How many items of the list ``predicate`` (over ``__box``) keeps; null for null."""
        return f"len(list_filter({lists}, lambda {BOX}: {predicate}))"

    def length(self, lists: str) -> str:
        return f"len({lists})"

    def literal(self, value: Scalar) -> str:
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, float):
            return self.double(value)
        return str(value)


class SparkDialect(SqlDialect):
    """Spark SQL: backquoted names, backslash escapes in strings, ``pmod``, ``filter``."""

    def identifier(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def string(self, value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def double(self, value: float) -> str:
        return f"CAST({value!r} AS DOUBLE)"

    def floor_modulo(self, left: str, divisor: str) -> str:
        return f"pmod({left}, {divisor})"  # floor modulo for a positive divisor

    def count_where(self, lists: str, predicate: str) -> str:
        # size(NULL) is -1 unless ANSI mode is on: a null list must count null.
        return (f"CASE WHEN {lists} IS NULL THEN NULL "
                f"ELSE size(filter({lists}, {BOX} -> {predicate})) END")

    def length(self, lists: str) -> str:
        return f"size({lists})"


DUCKDB = SqlDialect()
SPARK = SparkDialect()


def quote_identifier(name: str) -> str:
    return DUCKDB.identifier(name)


def sql_literal(value: Scalar) -> str:
    return DUCKDB.literal(value)


def _value(node: Value, dialect: SqlDialect, scope: str = "") -> str:
    """SQL for a value; inside a box predicate ``scope`` is ``'__box.'``."""
    match node:
        case Field():
            return scope + dialect.identifier(node.require_name())
        case Literal(value=value):
            return dialect.literal(value)
        case Arith(op="%"):
            return dialect.floor_modulo(_value(node.left, dialect, scope),
                                        _value(node.right, dialect, scope))
        case Arith(op=op):
            return f"({_value(node.left, dialect, scope)} {op} {_value(node.right, dialect, scope)})"
        case CountObjects():
            return _count(node, dialect)
    raise TypeError(f"unknown value node {node!r}")


def _count(node: ObjectsTest | CountObjects, dialect: SqlDialect) -> str:
    """Boxes of the node's column satisfying its predicate; null for a null list."""
    predicate = to_sql(node.predicate, dialect, BOX + ".")
    return dialect.count_where(dialect.identifier(node.column), predicate)


def _leaf(node: Criterion, sql: str) -> str:
    if nullable_fields(node):
        return f"coalesce({sql}, FALSE)"
    return sql


def to_sql(node: Criterion, dialect: SqlDialect = DUCKDB, scope: str = "") -> str:
    """The criterion as a SQL expression in ``dialect`` (see module docstring)."""
    match node:
        case Const(value=value):
            return dialect.literal(value)
        case Compare(op=op, left=left, right=right):
            return _leaf(node, f"{_value(left, dialect, scope)} {_OPS[op]} "
                               f"{_value(right, dialect, scope)}")
        case IsIn(value=value, options=options):
            if not options:
                return "FALSE"
            listed = ", ".join(dialect.literal(o) for o in options)
            return _leaf(node, f"{_value(value, dialect, scope)} IN ({listed})")
        case IsClose():
            distance = f"abs({_value(node.value, dialect, scope)} - {dialect.literal(node.target)})"
            return _leaf(node, f"{distance} <= {dialect.literal(node.tolerance)}")
        case And(items=items):
            return " AND ".join(f"({to_sql(c, dialect, scope)})" for c in items)
        case Or(items=items):
            return " OR ".join(f"({to_sql(c, dialect, scope)})" for c in items)
        case Not(item=item):
            return f"NOT ({to_sql(item, dialect, scope)})"
        case ObjectsTest(quantifier="any"):
            return f"coalesce({_count(node, dialect)} > 0, FALSE)"
        case ObjectsTest(quantifier="all"):
            lists = dialect.length(dialect.identifier(node.column))
            return f"coalesce({_count(node, dialect)} = {lists}, FALSE)"
        case Named():
            return to_sql(node.core(), dialect, scope)
    raise not_compilable(node)
