"""The criteria language: choose samples at export time, filter exports at query time.

Upstream's constructors build declarative criteria; operators combine them::

    from armory_datasets import criteria as C

    chosen = C.every_n_batches(5) | (C.batch_targets().isin([6, 23]) & (C.col("confidence") < 0.5))
    chosen(batch_idx, batch)          # export time: True/False or positions, as upstream
    chosen.to_arrow()                 # pyarrow.dataset filter
    chosen.to_sql()                   # DuckDB WHERE clause
    chosen.to_fiftyone()              # FiftyOne ViewExpression for dataset.match
    C.parse(str(chosen)) == chosen    # the text syntax round-trips

Object criteria test the boxes of a list column; inside them names are box fields::

    C.any_object("predicted_objects", (C.col("score") > 0.8) & (C.col("match") == "fp"))
    C.parse('count(ground_truth_objects, label == 3 & match == "fn") >= 1')

Example:
    >>> str(when_metric_lt(col("confidence"), 0.5))
    'confidence < 0.5'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from armory_datasets.criteria.nodes import (
    Always,
    Chains,
    Compare,
    Const,
    CountCriterion,
    CountObjects,
    Criterion,
    Field,
    Not,
    ObjectsTest,
    UnnamedMetricError,
    Value,
    all_of,
    as_criterion,
    as_value,
    col,
    sequence_of,
    to_scalar,
)
from armory_datasets.criteria.nodes import Samples as _Samples
from armory_datasets.criteria.parser import CriteriaSyntaxError, parse

Metric = Callable[[Any], Any] | Value | str


def always() -> Criterion:
    """Every sample of every batch."""
    return Always()


def every_n_batches(n: int) -> Criterion:
    """Every sample of batches whose ``(batch_idx + 1) % n == 0``; ``n == 0``: none."""
    return CountCriterion("every_n_batches", n)


def first_n_batches(n: int) -> Criterion:
    """Every sample of batches with ``batch_idx < n``."""
    return CountCriterion("first_n_batches", n)


def every_n_samples(n: int) -> Criterion:
    """Samples whose global index ``i`` has ``(i + 1) % n == 0``."""
    return CountCriterion("every_n_samples", n)


def first_n_samples(n: int) -> Criterion:
    """Samples whose global index is below ``n``."""
    return CountCriterion("first_n_samples", n)


def every_n_samples_of_batch(n: int) -> Criterion:
    """Samples at positions ``p`` of each batch with ``(p + 1) % n == 0``."""
    return CountCriterion("every_n_samples_of_batch", n)


def first_n_samples_of_batch(n: int) -> Criterion:
    """The first ``n`` samples of every batch."""
    return CountCriterion("first_n_samples_of_batch", n)


def samples(indices: Iterable[int]) -> Criterion:
    """Samples with these global indices."""
    return _Samples(sequence_of(int, indices, "indices"))


def chains(names: Iterable[str]) -> Criterion:
    """Every sample of the named chains (e.g. ``["benign"]``)."""
    return Chains(sequence_of(str, names, "names"))


def metric_value(metric: Metric) -> Value:
    """The value a metric criterion compares: a named column, or an anonymous callable.

    Example:
        >>> str(metric_value("confidence"))
        'confidence'
    """
    if isinstance(metric, Value):
        return metric
    if isinstance(metric, str):
        return Field(metric)
    if callable(metric):
        name = getattr(metric, "name", None)
        return Field(name if isinstance(name, str) else None, metric)
    raise TypeError(f"metric: {metric!r}; expected a named metric, a column name or a callable")


def when_metric_eq(metric: Metric, threshold: Any) -> Criterion:
    """Samples (or batches, for a scalar metric) where ``metric == threshold``."""
    return Compare("==", metric_value(metric), as_value(to_scalar(threshold, "threshold")))


def when_metric_lt(metric: Metric, threshold: Any) -> Criterion:
    """Samples where ``metric < threshold``."""
    return Compare("<", metric_value(metric), as_value(to_scalar(threshold, "threshold")))


def when_metric_gt(metric: Metric, threshold: Any) -> Criterion:
    """Samples where ``metric > threshold``."""
    return Compare(">", metric_value(metric), as_value(to_scalar(threshold, "threshold")))


def when_metric_isclose(
    metric: Metric, threshold: Any, rtol: float = 1e-05, atol: float = 1e-08
) -> Criterion:
    """Samples where ``|metric - threshold| <= atol + rtol * |threshold|``, in float64."""
    return metric_value(metric).isclose(threshold, rtol=rtol, atol=atol)


def when_metric_in(metric: Metric, values: Iterable[Any]) -> Criterion:
    """Samples whose metric value is one of ``values``."""
    return metric_value(metric).isin(values)


def all_satisfied(*criteria: Criterion | Callable[..., Any]) -> Criterion:
    """Samples every criterion selects (also ``a & b``)."""
    return all_of(*criteria)


def any_satisfied(*criteria: Criterion | Callable[..., Any]) -> Criterion:
    """Samples any criterion selects (also ``a | b``)."""
    from armory_datasets.criteria.nodes import any_of

    return any_of(*criteria)


def not_satisfied(criterion: Criterion | Callable[..., Any]) -> Criterion:
    """Samples the criterion does not select (also ``~c``)."""
    return Not(as_criterion(criterion))


def any_object(column: str, predicate: Criterion) -> Criterion:
    """Records where some box of ``column`` satisfies ``predicate`` (names: box fields).

    Example:
        >>> str(any_object("predicted_objects", col("score") > 0.8))
        'any(predicted_objects, score > 0.8)'
    """
    return ObjectsTest("any", column, predicate)


def all_objects(column: str, predicate: Criterion) -> Criterion:
    """Records where every box of ``column`` satisfies ``predicate`` (true for no boxes).

    Example:
        >>> str(all_objects("ground_truth_objects", col("match") == "tp"))
        'all(ground_truth_objects, match == "tp")'
    """
    return ObjectsTest("all", column, predicate)


def count_objects(column: str, predicate: Criterion | None = None) -> Value:
    """How many boxes of ``column`` satisfy ``predicate`` (all of them without one).

    Example:
        >>> str(count_objects("ground_truth_objects", col("match") == "fn") >= 1)
        'count(ground_truth_objects, match == "fn") >= 1'
    """
    return CountObjects(column, Const(True) if predicate is None else predicate)


@dataclass(frozen=True)
class BatchColumn:
    """A named metric reading one of the batch's vocabulary columns."""

    name: str

    def __call__(self, batch: Any) -> Any:
        return batch.column(self.name)


def batch_targets() -> Field:
    """The batch's targets (class indices) as a metric; also the ``target`` column.

    Example:
        >>> str(when_metric_in(batch_targets(), [6, 23]))
        'target in [6, 23]'
    """
    return Field("target", BatchColumn("target"))


def batch_predictions() -> Field:
    """The predicted classes (argmax of the predictions); the ``prediction`` column."""
    return Field("prediction", BatchColumn("prediction"))


__all__ = [
    "CriteriaSyntaxError",
    "Criterion",
    "UnnamedMetricError",
    "all_objects",
    "all_satisfied",
    "always",
    "any_object",
    "any_satisfied",
    "batch_predictions",
    "batch_targets",
    "chains",
    "col",
    "count_objects",
    "every_n_batches",
    "every_n_samples",
    "every_n_samples_of_batch",
    "first_n_batches",
    "first_n_samples",
    "first_n_samples_of_batch",
    "metric_value",
    "not_satisfied",
    "parse",
    "samples",
    "when_metric_eq",
    "when_metric_gt",
    "when_metric_in",
    "when_metric_isclose",
    "when_metric_lt",
]
