"""Export-time evaluation of a criterion on one batch, with numpy.

Values at batch level (the batch index, the chain, a scalar metric) stay scalars, so
a criterion that reads only them gives ``True``/``False``, as upstream's do; per-sample
values give a list of positions. A missing value (NaN) compares false, as a null does
in every query backend.

Example:
    >>> from armory_datasets.criteria import every_n_batches
    >>> every_n_batches(2)(1, [0, 0, 0])
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from armory_datasets.criteria.boxes import flatten_boxes
from armory_datasets.criteria.nodes import (
    And,
    Arith,
    Compare,
    Const,
    CountCriterion,
    CountObjects,
    Criterion,
    Field,
    IsClose,
    IsIn,
    Literal,
    Named,
    Not,
    ObjectsTest,
    Opaque,
    Or,
    Value,
)

Result = np.bool_ | np.ndarray


@dataclass
class BatchContext:
    """What a criterion sees of one batch at export time."""

    args: tuple[Any, ...]
    chain: str | None
    batch_idx: int
    batch: Any
    size: int
    cache: dict[object, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: tuple[Any, ...]) -> BatchContext:
        if len(args) == 3:
            chain, batch_idx, batch = args
        elif len(args) == 2:
            batch_idx, batch = args
            chain = getattr(batch, "chain", None)
            chain = chain if isinstance(chain, str) else None
        else:
            raise TypeError(
                f"a criterion takes (batch_idx, batch) or (chain_name, batch_idx, batch); "
                f"got {len(args)} arguments"
            )
        return cls(args, chain, int(batch_idx), batch, len(batch))

    def global_indices(self) -> np.ndarray:
        indices = getattr(self.batch, "global_indices", None)
        if isinstance(indices, (np.ndarray, list, tuple)) or _is_tensor(indices):
            return as_values(indices, self.size, "global_indices").astype(np.int64)
        # Never upstream's batch_idx * len(batch) + position: wrong after a short batch.
        raise ValueError("sample_index: the batch has no global_indices; expected batch."
                         "global_indices, or export through an exporter (it counts the "
                         "samples of each chain)")

    def field(self, node: Field) -> Any:
        key = node._key()
        if key not in self.cache:
            self.cache[key] = self._lookup(node)
        return self.cache[key]

    def _lookup(self, node: Field) -> Any:
        if node.metric is not None:
            return as_values(node.metric(self.batch), self.size, str(node))
        name = node.name
        if name == "batch":
            return np.int64(self.batch_idx)
        if name == "position":
            return np.arange(self.size, dtype=np.int64)
        if name == "sample_index":
            return self.global_indices()
        if name == "chain":
            if self.chain is None:
                raise ValueError("chain: the batch names no chain; pass (chain_name, "
                                 "batch_idx, batch) or give the batch a chain")
            return np.str_(self.chain)
        lookup = getattr(self.batch, "column", None)
        if not callable(lookup):
            raise ValueError(f"{name}: the batch has no columns to read it from; expected "
                             "an armory_datasets batch or a criterion on a metric")
        return as_values(lookup(name), self.size, str(name))


@dataclass
class BoxContext(BatchContext):
    """The boxes of one object column as a criterion inside ``any``/``all``/``count``
    sees them: one row per box, box fields as columns."""

    boxes: dict[str, np.ndarray] = field(default_factory=dict)

    def _lookup(self, node: Field) -> Any:
        return self.boxes[node.require_name()]


def _boxes_satisfying(node: ObjectsTest | CountObjects, ctx: BatchContext) -> tuple[Any, Any]:
    """(boxes per record satisfying the predicate (N,), the flattened column); cached."""
    key = ("objects", node.column, node.predicate._key())
    if key not in ctx.cache:
        flat_key = ("flat", node.column)
        if flat_key not in ctx.cache:
            lookup = getattr(ctx.batch, "column", None)
            if not callable(lookup):
                raise ValueError(f"{node.column}: the batch has no columns to read it from; "
                                 "expected an armory_datasets batch")
            ctx.cache[flat_key] = flatten_boxes(lookup(node.column), node.column, ctx.size)
        flat = ctx.cache[flat_key]
        inner = BoxContext(ctx.args, ctx.chain, ctx.batch_idx, None, len(flat.parents),
                           boxes=flat.fields)
        mask = np.broadcast_to(evaluate(node.predicate, inner), (len(flat.parents),))
        ctx.cache[key] = (flat.count(mask), flat)
    return ctx.cache[key]


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def as_values(value: Any, size: int, name: str) -> Any:
    """A metric result as a numpy scalar or a 1-D array of ``size``.

    Tensors on any device, numpy and Python values are accepted; numbers are widened
    to int64/float64 so that thresholds compare as they do in the stored table.

    Example:
        >>> as_values([1, 2], 2, "m").dtype
        dtype('int64')
    """
    if _is_tensor(value):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind in "iu":
        array = array.astype(np.int64)
    elif array.dtype.kind == "f":
        array = array.astype(np.float64)
    if array.ndim == 0:
        return array[()]
    if array.ndim != 1:
        raise ValueError(f"{name}: metric gave shape {array.shape}; expected a scalar for "
                         f"the whole batch or one value per sample, shape ({size},)")
    if len(array) != size:
        raise ValueError(f"{name}: metric gave {len(array)} values for a batch of {size}; "
                         f"expected a scalar or shape ({size},)")
    return array


def _present(value: Any) -> Any:
    """False where a value is missing (NaN, or None among a box's strings), True elsewhere."""
    array = np.asarray(value)
    if array.dtype.kind == "O":
        return np.not_equal(array, None)
    return ~np.isnan(array) if array.dtype.kind == "f" else np.True_


def _value(node: Value, ctx: BatchContext) -> Any:
    match node:
        case Field():
            return ctx.field(node)
        case Literal(value=value):
            return np.asarray(value)[()]
        case Arith(op="+"):
            return np.add(_value(node.left, ctx), _value(node.right, ctx))
        case Arith(op="-"):
            return np.subtract(_value(node.left, ctx), _value(node.right, ctx))
        case Arith(op="*"):
            return np.multiply(_value(node.left, ctx), _value(node.right, ctx))
        case Arith(op="%"):
            return np.mod(_value(node.left, ctx), _value(node.right, ctx))
        case CountObjects():
            counts, flat = _boxes_satisfying(node, ctx)
            return np.where(flat.valid, counts.astype(np.float64), np.nan)  # null list: missing
    raise TypeError(f"unknown value node {node!r}")


_COMPARE = {
    "<": np.less,
    "<=": np.less_equal,
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def evaluate(node: Criterion, ctx: BatchContext) -> Result:
    """A numpy bool scalar (whole batch) or bool array (per sample)."""
    match node:
        case Const(value=value):
            return np.bool_(value)
        case Compare(op=op, left=left, right=right):
            a, b = _value(left, ctx), _value(right, ctx)
            return _COMPARE[op](a, b) & _present(a) & _present(b)
        case IsIn(value=value, options=options):
            a = _value(value, ctx)
            return np.isin(a, node.option_array) & _present(a) if options else np.False_
        case IsClose():
            a = _value(node.value, ctx)
            return (np.abs(a - node.target) <= node.tolerance) & _present(a)
        case And(items=items):
            return _reduce(np.logical_and, (evaluate(c, ctx) for c in items))
        case Or(items=items):
            return _reduce(np.logical_or, (evaluate(c, ctx) for c in items))
        case Not(item=item):
            return np.logical_not(evaluate(item, ctx))
        case ObjectsTest(quantifier=quantifier):
            counts, flat = _boxes_satisfying(node, ctx)
            hit = counts > 0 if quantifier == "any" else counts == flat.lengths
            return hit & flat.valid
        case Opaque(function=function):
            return _from_upstream(function(*ctx.args), ctx.size)
        case Named():
            return evaluate(node.core(), ctx)
    raise TypeError(f"unknown criterion node {node!r}")


def _reduce(op: Any, results: Iterable[Result]) -> Result:
    results = iter(results)
    total = next(results)
    for result in results:
        total = op(total, result)
    return total


def _from_upstream(result: Any, size: int) -> Result:
    """Read an upstream-style result: a bool, or positions in the batch."""
    if _is_tensor(result):
        result = result.detach().cpu().numpy()
    if isinstance(result, (bool, np.bool_)) or (
        isinstance(result, np.ndarray) and result.ndim == 0 and result.dtype == bool
    ):
        return np.bool_(result)
    mask = np.zeros(size, dtype=bool)
    positions = _positions(result)
    if positions.size and (positions.min() < 0 or positions.max() >= size):
        raise ValueError(f"criterion: positions {positions.tolist()} outside a batch of {size}")
    mask[positions] = True
    return mask


def _positions(result: Any) -> np.ndarray:
    """Integer positions from a criterion function's result, or a ValueError saying why not."""
    expected = "expected True/False or a list of integer positions in the batch"
    if result is None or isinstance(result, (str, bytes, dict)) or not hasattr(result, "__iter__"):
        raise ValueError(f"criterion: returned {type(result).__name__} {result!r:.40}; {expected}")
    values = list(result)
    bad = [v for v in values if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))]
    if bad:
        raise ValueError(f"criterion: returned a sequence holding {bad[0]!r}; {expected}")
    return np.asarray(values, dtype=np.int64).reshape(-1)


def evaluate_mask(criterion: Criterion, args: tuple[Any, ...]) -> np.ndarray:
    """Boolean array of ``len(batch)``: which samples the criterion selects."""
    ctx = BatchContext.from_args(args)
    return np.broadcast_to(evaluate(criterion, ctx), (ctx.size,)).copy()


def call_upstream(criterion: Criterion, args: tuple[Any, ...]) -> bool | list[int]:
    """Upstream's calling convention: ``True``/``False`` or a list of positions."""
    ctx = BatchContext.from_args(args)
    result = evaluate(criterion, ctx)
    if np.ndim(result) == 0:
        return bool(result)
    positions = np.flatnonzero(result).tolist()
    if not positions and isinstance(criterion, CountCriterion) and (
        criterion.function_name == "first_n_samples"
    ):
        return False  # upstream: a batch past the first n samples gives False
    return positions
