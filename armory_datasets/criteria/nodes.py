"""The criteria expression tree.

Operators build a tree (as in Polars and pyarrow); each backend compiles it. Value
nodes (``Field``, ``Literal``, ``Arith``) compute per-sample values; ``Criterion``
nodes select samples. Named nodes such as ``EveryNBatches`` keep upstream's
vocabulary for printing and ``expand()`` into the small core the backends know.

Example:
    >>> from armory_datasets.criteria.nodes import Field
    >>> str((Field("target").isin([6, 23])) & (Field("confidence") < 0.5))
    'target in [6, 23] & confidence < 0.5'
"""

from __future__ import annotations

import json
import keyword
import math
import numbers
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

Scalar = bool | int | float | str

WORDS = frozenset({"in", "not", "and", "or", "true", "false"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class UnnamedMetricError(ValueError):
    """A criterion built on an anonymous callable cannot be compiled for queries."""


def to_scalar(value: Any, what: str = "value") -> Scalar:
    """Normalise a literal to a plain Python bool, int, float or str.

    Example:
        >>> import numpy as np
        >>> to_scalar(np.float32(0.5))
        0.5
    """
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{what}: {value} does not fit in a 64-bit integer")
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise ValueError(f"{what}: {value!r} is not finite; expected a finite number")
        return float(value)
    raise TypeError(f"{what}: {value!r} is not a bool, int, float or str")


def format_scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def format_name(name: str) -> str:
    if _IDENTIFIER.match(name) and name not in WORDS and not keyword.iskeyword(name):
        return name
    return "`" + name.replace("`", "``") + "`"


# ----------------------------------------------------------------------------- values


class Value:
    """A per-sample value: a column, a literal, or arithmetic on them."""

    precedence: ClassVar[int] = 100

    def _key(self) -> tuple:
        raise NotImplementedError

    def __hash__(self) -> int:
        return hash(self._key())

    def _compare(self, op: str, other: Any) -> Compare:
        return Compare(op, self, as_value(other))

    def __lt__(self, other: Any) -> Compare:
        return self._compare("<", other)

    def __le__(self, other: Any) -> Compare:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> Compare:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> Compare:
        return self._compare(">=", other)

    def __eq__(self, other: Any) -> Compare:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: Any) -> Compare:  # type: ignore[override]
        return self._compare("!=", other)

    def __add__(self, other: Any) -> Arith:
        return Arith("+", self, as_value(other))

    def __sub__(self, other: Any) -> Arith:
        return Arith("-", self, as_value(other))

    def __mul__(self, other: Any) -> Arith:
        return Arith("*", self, as_value(other))

    def __mod__(self, other: Any) -> Arith:
        return Arith("%", self, as_value(other))

    def isin(self, values: Iterable[Any]) -> IsIn:
        """Select samples whose value is one of ``values``."""
        return IsIn(self, tuple(to_scalar(v, "isin values") for v in values))

    def isclose(self, value: float, rtol: float = 1e-05, atol: float = 1e-08) -> IsClose:
        """``|self - value| <= atol + rtol * |value|``, as numpy and torch define it."""
        return IsClose(self, float(to_scalar(value, "isclose value")), float(rtol), float(atol))

    def __bool__(self) -> bool:
        raise TypeError("a criteria value has no truth value; compare it, e.g. col('x') < 1")


@dataclass(frozen=True, eq=False)
class Field(Value):
    """A column of the vocabulary, a dataset metadata column or a named metric.

    ``metric`` is the callable that computes it at export time; without one the
    batch's own column of that name is used.
    """

    name: str | None
    metric: Callable[[Any], Any] | None = field(default=None, compare=False)

    def _key(self) -> tuple:
        return ("field", self.name if self.name is not None else id(self.metric))

    def __str__(self) -> str:
        return format_name(self.name) if self.name is not None else "<anonymous metric>"

    def require_name(self) -> str:
        if self.name is None:
            raise UnnamedMetricError(
                f"criterion uses an anonymous metric {self.metric!r}; it works at export "
                "time, but a query needs its recorded column: give the metric a name, "
                "e.g. armory_datasets.metrics.named_metric('my_metric', fn)"
            )
        return self.name


@dataclass(frozen=True, eq=False)
class Literal(Value):
    value: Scalar

    def _key(self) -> tuple:
        return ("literal", type(self.value).__name__, self.value)

    def __str__(self) -> str:
        return format_scalar(self.value)


ARITH_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "%": 2}


@dataclass(frozen=True, eq=False)
class Arith(Value):
    """``left op right``; ``%`` takes a positive integer literal divisor."""

    op: str
    left: Value
    right: Value

    def __post_init__(self) -> None:
        if self.op not in ARITH_PRECEDENCE:
            raise ValueError(f"op: {self.op!r}; expected one of + - * %")
        if self.op == "%" and not (
            isinstance(self.right, Literal)
            and type(self.right.value) is int
            and self.right.value > 0
        ):
            raise ValueError(f"'%': divisor {self.right}; expected a positive integer literal")

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return ARITH_PRECEDENCE[self.op]

    def _key(self) -> tuple:
        return ("arith", self.op, self.left._key(), self.right._key())

    def __str__(self) -> str:
        left = _wrap(self.left, self.left.precedence < self.precedence)
        right = _wrap(self.right, self.right.precedence <= self.precedence)
        return f"{left} {self.op} {right}"


def _wrap(node: object, parenthesise: bool) -> str:
    return f"({node})" if parenthesise else str(node)


def as_value(value: Any) -> Value:
    return value if isinstance(value, Value) else Literal(to_scalar(value))


def col(name: str) -> Field:
    """Refer to a column by name.

    Example:
        >>> str(col("confidence") < 0.5)
        'confidence < 0.5'
    """
    return Field(name)


# -------------------------------------------------------------------------- criteria


class Criterion:
    """A declarative sample selector.

    Call it at export time as upstream does, ``c(batch_idx, batch)`` or
    ``c(chain_name, batch_idx, batch)``, or compile it for queries with
    ``to_arrow()``, ``to_fiftyone()`` and ``to_sql()``.
    """

    precedence: ClassVar[int] = 4  # 1: |, 2: &, 3: ~, 4: atoms and comparisons

    def _key(self) -> tuple:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Criterion) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __and__(self, other: Criterion) -> Criterion:
        return all_of(self, other)

    def __or__(self, other: Criterion) -> Criterion:
        return any_of(self, other)

    def __invert__(self) -> Criterion:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a criterion has no truth value: combine criteria with & | ~ (not and/or/not), "
            "and write a range as (0.2 < col('x')) & (col('x') < 0.5)"
        )

    def __repr__(self) -> str:
        return f"criterion({str(self)!r})"

    def expand(self) -> Criterion:
        """The same criterion in core nodes only."""
        return self

    def children(self) -> tuple[Criterion, ...]:
        return ()

    def values(self) -> tuple[Value, ...]:
        return ()

    def fields(self) -> list[Field]:
        """Every field the criterion reads, depth first."""
        found: list[Field] = []
        for value in self.expand().values():
            _collect_fields(value, found)
        for child in self.expand().children():
            found.extend(child.fields())
        return found

    def metrics(self) -> list[Callable[[Any], Any]]:
        """Named metric callables whose values an export must record."""
        seen: dict[str, Callable[[Any], Any]] = {}
        for f in self.fields():
            if f.metric is not None and f.name is not None:
                seen.setdefault(f.name, f.metric)
        return list(seen.values())

    def __call__(self, *args: Any) -> bool | list[int]:
        from armory_datasets.criteria.evaluate import call_upstream

        return call_upstream(self, args)

    def mask(self, *args: Any) -> Any:
        """Boolean numpy array of ``len(batch)``: which samples are selected."""
        from armory_datasets.criteria.evaluate import evaluate_mask

        return evaluate_mask(self, args)

    def to_arrow(self) -> Any:
        """A ``pyarrow.compute.Expression`` for ``pyarrow.dataset`` filters."""
        from armory_datasets.criteria.to_arrow import to_arrow

        return to_arrow(self)

    def arrow_mask(self, table: Any) -> Any:
        """Which rows of a ``pyarrow.Table`` are selected (boolean ChunkedArray); unlike
        ``to_arrow()`` it also runs object criteria (``any``/``all``/``count`` of boxes)."""
        from armory_datasets.criteria.to_arrow import arrow_mask

        return arrow_mask(self, table)

    def to_fiftyone(self) -> Any:
        """A FiftyOne ``ViewExpression`` for ``dataset.match``."""
        from armory_datasets.criteria.to_fiftyone import to_fiftyone

        return to_fiftyone(self)

    def to_sql(self) -> str:
        """A SQL boolean expression (DuckDB dialect) for a WHERE clause."""
        from armory_datasets.criteria.to_sql import to_sql

        return to_sql(self)

    def to_polars(self) -> Any:
        """A Polars expression (``pl.Expr``) for ``LazyFrame.filter``."""
        from armory_datasets.criteria.to_polars import to_polars

        return to_polars(self)

    def to_spark_sql(self) -> str:
        """A Spark SQL boolean expression for ``DataFrame.where`` / a WHERE clause."""
        from armory_datasets.criteria.to_sql import SPARK, to_sql

        return to_sql(self, SPARK)


def _collect_fields(value: Value, found: list[Field]) -> None:
    if isinstance(value, Field):
        found.append(value)
    elif isinstance(value, Arith):
        _collect_fields(value.left, found)
        _collect_fields(value.right, found)
    elif isinstance(value, CountObjects):
        found.append(Field(value.column))  # box fields inside are not table columns


@dataclass(frozen=True, eq=False, repr=False)
class Const(Criterion):
    """Every sample (``true``) or none (``false``)."""

    value: bool

    def _key(self) -> tuple:
        return ("const", self.value)

    def __str__(self) -> str:
        return format_scalar(self.value)


COMPARE_OPS = ("<", "<=", "==", "!=", ">", ">=")


@dataclass(frozen=True, eq=False, repr=False)
class Compare(Criterion):
    """``left op right``; a missing value (null or NaN) compares false."""

    op: str
    left: Value
    right: Value

    def __post_init__(self) -> None:
        if self.op not in COMPARE_OPS:
            raise ValueError(f"op: {self.op!r}; expected one of {' '.join(COMPARE_OPS)}")

    def _key(self) -> tuple:
        return ("compare", self.op, self.left._key(), self.right._key())

    def values(self) -> tuple[Value, ...]:
        return (self.left, self.right)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True, eq=False, repr=False)
class IsIn(Criterion):
    value: Value
    options: tuple[Scalar, ...]

    def _key(self) -> tuple:
        return ("isin", self.value._key(), tuple((type(o).__name__, o) for o in self.options))

    def values(self) -> tuple[Value, ...]:
        return (self.value,)

    @cached_property
    def option_array(self) -> np.ndarray:
        """The options as one numpy array, built once for export-time evaluation."""
        return np.asarray(self.options)

    def __str__(self) -> str:
        return f"{self.value} in [{', '.join(format_scalar(o) for o in self.options)}]"


@dataclass(frozen=True, eq=False, repr=False)
class IsClose(Criterion):
    value: Value
    target: float
    rtol: float = 1e-05
    atol: float = 1e-08

    @property
    def tolerance(self) -> float:
        return self.atol + self.rtol * abs(self.target)

    def _key(self) -> tuple:
        return ("isclose", self.value._key(), self.target, self.rtol, self.atol)

    def values(self) -> tuple[Value, ...]:
        return (self.value,)

    def __str__(self) -> str:
        return (f"isclose({self.value}, {self.target!r}, "
                f"rtol={self.rtol!r}, atol={self.atol!r})")


@dataclass(frozen=True, eq=False, repr=False)
class And(Criterion):
    items: tuple[Criterion, ...]
    precedence: ClassVar[int] = 2

    def _key(self) -> tuple:
        return ("and", tuple(c._key() for c in self.items))

    def children(self) -> tuple[Criterion, ...]:
        return self.items

    def __str__(self) -> str:
        return " & ".join(_wrap(c, c.precedence < self.precedence) for c in self.items)


@dataclass(frozen=True, eq=False, repr=False)
class Or(Criterion):
    items: tuple[Criterion, ...]
    precedence: ClassVar[int] = 1

    def _key(self) -> tuple:
        return ("or", tuple(c._key() for c in self.items))

    def children(self) -> tuple[Criterion, ...]:
        return self.items

    def __str__(self) -> str:
        return " | ".join(_wrap(c, c.precedence < self.precedence) for c in self.items)


@dataclass(frozen=True, eq=False, repr=False)
class Not(Criterion):
    item: Criterion
    precedence: ClassVar[int] = 3

    def _key(self) -> tuple:
        return ("not", self.item._key())

    def children(self) -> tuple[Criterion, ...]:
        return (self.item,)

    def __str__(self) -> str:
        atomic = isinstance(self.item, (Named, Const, Not, ObjectsTest))
        return "~" + _wrap(self.item, not atomic)


@dataclass(frozen=True, eq=False, repr=False)
class Opaque(Criterion):
    """An upstream-style criterion function; works at export time only."""

    function: Callable[..., Any]

    def _key(self) -> tuple:
        return ("opaque", id(self.function))

    def __str__(self) -> str:
        return f"<criterion function {getattr(self.function, '__name__', repr(self.function))}>"


def as_criterion(value: Criterion | Callable[..., Any]) -> Criterion:
    if isinstance(value, Criterion):
        return value
    if callable(value):
        return Opaque(value)
    raise TypeError(f"criterion: {value!r}; expected a criterion or a callable")


def _flatten(kind: type, items: Iterable[Criterion | Callable[..., Any]]) -> tuple[Criterion, ...]:
    flat: list[Criterion] = []
    for item in map(as_criterion, items):
        flat.extend(item.items if isinstance(item, kind) else (item,))  # type: ignore[attr-defined]
    return tuple(flat)


def all_of(*criteria: Criterion | Callable[..., Any]) -> Criterion:
    """Samples that satisfy every criterion (nested ``&`` are flattened)."""
    items = _flatten(And, criteria)
    if not items:
        raise ValueError("all_satisfied: needs at least one criterion")
    return items[0] if len(items) == 1 else And(items)


def any_of(*criteria: Criterion | Callable[..., Any]) -> Criterion:
    """Samples that satisfy at least one criterion (nested ``|`` are flattened)."""
    items = _flatten(Or, criteria)
    if not items:
        raise ValueError("any_satisfied: needs at least one criterion")
    return items[0] if len(items) == 1 else Or(items)


# ---------------------------------------------------------------- upstream's named nodes


class Named(Criterion):
    """A criterion printed as upstream's constructor call (``function_name(...)``)."""

    function_name: str

    def arguments(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _key(self) -> tuple:
        return (self.function_name, self.arguments())

    def __str__(self) -> str:
        def fmt(arg: Any) -> str:
            if isinstance(arg, tuple):
                return "[" + ", ".join(format_scalar(a) for a in arg) + "]"
            return format_scalar(arg)

        return f"{self.function_name}({', '.join(fmt(a) for a in self.arguments())})"

    def core(self) -> Criterion:
        raise NotImplementedError

    def expand(self) -> Criterion:
        return self.core()


def _count(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{what}: n={n!r}; expected a non-negative integer")
    return int(n)


def _every(column: str, n: int) -> Criterion:
    return Compare("==", Arith("%", Arith("+", Field(column), Literal(1)), Literal(n)), Literal(0))


@dataclass(frozen=True, eq=False, repr=False)
class Always(Named):
    function_name: ClassVar[str] = "always"

    def arguments(self) -> tuple[Any, ...]:
        return ()

    def core(self) -> Criterion:
        return Const(True)


_COUNT_CORES: dict[str, Callable[[int], Criterion]] = {
    "every_n_batches": lambda n: _every("batch", n),
    "first_n_batches": lambda n: Compare("<", Field("batch"), Literal(n)),
    "every_n_samples": lambda n: _every("sample_index", n),
    "first_n_samples": lambda n: Compare("<", Field("sample_index"), Literal(n)),
    "every_n_samples_of_batch": lambda n: _every("position", n),
    "first_n_samples_of_batch": lambda n: Compare("<", Field("position"), Literal(n)),
}


@dataclass(frozen=True, eq=False, repr=False)
class CountCriterion(Named):
    """Upstream's one-argument constructors, e.g. ``every_n_batches(5)``.

    ``n == 0`` selects nothing, as upstream.
    """

    function_name: str  # type: ignore[misc]
    n: int

    def __post_init__(self) -> None:
        if self.function_name not in _COUNT_CORES:
            raise ValueError(f"function_name: {self.function_name!r}; "
                             f"expected one of {sorted(_COUNT_CORES)}")
        object.__setattr__(self, "n", _count(self.n, self.function_name))

    def arguments(self) -> tuple[Any, ...]:
        return (self.n,)

    def core(self) -> Criterion:
        return Const(False) if self.n == 0 else _COUNT_CORES[self.function_name](self.n)


@dataclass(frozen=True, eq=False, repr=False)
class Samples(Named):
    """Upstream's ``samples(indices)``: by global sample index."""

    indices: tuple[int, ...]
    function_name: ClassVar[str] = "samples"

    def arguments(self) -> tuple[Any, ...]:
        return (self.indices,)

    def core(self) -> Criterion:
        return IsIn(Field("sample_index"), self.indices) if self.indices else Const(False)


@dataclass(frozen=True, eq=False, repr=False)
class Chains(Named):
    """Upstream's ``chains(names)``: every sample of the named chains."""

    names: tuple[str, ...]
    function_name: ClassVar[str] = "chains"

    def arguments(self) -> tuple[Any, ...]:
        return (self.names,)

    def core(self) -> Criterion:
        return IsIn(Field("chain"), self.names) if self.names else Const(False)


def sequence_of(kind: type, values: Sequence[Any] | Any, what: str) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{what}: {values!r}; expected a list")
    items = tuple(to_scalar(v, what) for v in values)
    for item in items:
        if kind is int and (isinstance(item, bool) or not isinstance(item, int)):
            raise TypeError(f"{what}: {item!r}; expected integers")
        if kind is str and not isinstance(item, str):
            raise TypeError(f"{what}: {item!r}; expected strings")
    return items


# ------------------------------------------------------------------- object criteria


def check_box_predicate(column: str, predicate: Criterion, what: str) -> None:
    """ValueError unless ``column`` holds boxes and ``predicate`` reads only their fields,
    comparing each with a literal of its kind (numbers with numbers, strings with strings,
    strings by ==, != and in only: a box's string may be null, and an order on null
    differs between backends)."""
    from armory_datasets.schema import VOCABULARY

    columns = VOCABULARY.object_columns()
    if column not in columns:
        raise ValueError(f"{what}: column {column!r} does not hold boxes; expected one of "
                         f"{', '.join(columns)}")
    fields = VOCABULARY.object_fields(column)
    strings = {name for name, t in fields.items() if str(t) == "string"}

    def kind_of(value: Value) -> str:
        match value:
            case Field(metric=None, name=name) if name in fields:
                return "string" if name in strings else "number"
            case Field():
                raise ValueError(f"{what}: {value} is not a field of the boxes in {column}; "
                                 f"expected one of {', '.join(fields)}")
            case Literal(value=v):
                return "string" if isinstance(v, str) else "bool" if isinstance(v, bool) else "number"
            case Arith():
                if "string" in (kind_of(value.left), kind_of(value.right)):
                    raise ValueError(f"{what}: {value}: arithmetic on a string")
                return "number"
        raise ValueError(f"{what}: {value} cannot be used inside {column}'s boxes")

    def check(node: Criterion) -> None:
        match node:
            case Const():
                return
            case Compare(op=op, left=left, right=right):
                kinds = {kind_of(left), kind_of(right)}
                if len(kinds) > 1:
                    raise ValueError(f"{what}: {node} compares a {' with a '.join(sorted(kinds))}")
                if kinds == {"string"} and op not in ("==", "!="):
                    raise ValueError(f"{what}: {node}: strings in boxes compare with == != in only")
            case IsIn(value=value, options=options):
                kind = kind_of(value)
                for option in options:
                    if kind_of(Literal(option)) != kind:
                        raise ValueError(f"{what}: {node}: {format_scalar(option)} is not a {kind}")
            case IsClose(value=value):
                if kind_of(value) != "number":
                    raise ValueError(f"{what}: {node}: isclose needs a number")
            case And() | Or() | Not():
                for child in node.children():
                    check(child)
            case _:
                raise ValueError(f"{what}: {node} cannot be used inside {column}'s boxes; "
                                 "expected comparisons of box fields combined with & | ~")

    check(predicate)


QUANTIFIERS = ("any", "all")


@dataclass(frozen=True, eq=False, repr=False)
class ObjectsTest(Criterion):
    """``any(column, predicate)`` / ``all(column, predicate)``: some / every box of a list
    column satisfies ``predicate``, whose names are box fields. A null list satisfies
    neither (a missing value compares false); an empty one satisfies ``all``."""

    quantifier: str
    column: str
    predicate: Criterion

    def __post_init__(self) -> None:
        if self.quantifier not in QUANTIFIERS:
            raise ValueError(f"quantifier: {self.quantifier!r}; expected 'any' or 'all'")
        check_box_predicate(self.column, self.predicate, f"{self.quantifier}()")

    def _key(self) -> tuple:
        return ("objects", self.quantifier, self.column, self.predicate._key())

    def fields(self) -> list[Field]:
        return [Field(self.column)]  # box fields inside are not table columns

    def __str__(self) -> str:
        return f"{self.quantifier}({format_name(self.column)}, {self.predicate})"


@dataclass(frozen=True, eq=False)
class CountObjects(Value):
    """``count(column, predicate)``: how many boxes of a list column satisfy
    ``predicate`` (every box without one); null for a null list."""

    column: str
    predicate: Criterion = field(default_factory=lambda: Const(True))

    def __post_init__(self) -> None:
        check_box_predicate(self.column, self.predicate, "count()")

    def _key(self) -> tuple:
        return ("count", self.column, self.predicate._key())

    def __str__(self) -> str:
        if self.predicate == Const(True):
            return f"count({format_name(self.column)})"
        return f"count({format_name(self.column)}, {self.predicate})"


def object_nodes(node: Criterion) -> list[ObjectsTest | CountObjects]:
    """The distinct object quantifiers and counts of a criterion, depth first.

    Example:
        >>> from armory_datasets.criteria import parse
        >>> [str(n) for n in object_nodes(parse("count(predicted_objects) > 2 | batch < 1"))]
        ['count(predicted_objects)']
    """
    found: dict[tuple, ObjectsTest | CountObjects] = {}

    def visit_value(value: Value) -> None:
        if isinstance(value, CountObjects):
            found.setdefault(value._key(), value)
        elif isinstance(value, Arith):
            visit_value(value.left)
            visit_value(value.right)

    def visit(criterion: Criterion) -> None:
        criterion = criterion.expand()
        if isinstance(criterion, ObjectsTest):
            found.setdefault(criterion._key(), criterion)
            return
        for value in criterion.values():
            visit_value(value)
        for child in criterion.children():
            visit(child)

    visit(node)
    return list(found.values())
