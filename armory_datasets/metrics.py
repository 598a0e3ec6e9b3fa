"""Named per-sample metrics and their run-level aggregates.

A metric is a picklable object with a ``name`` and ``__call__(batch) -> np.ndarray (N,)``.
The engine stores each result in ``batch.metrics[metric.name]``, where criteria and
exporters read it through ``batch.column(name)``. Undefined values (precision without
predictions, recall without targets, mean IoU without a match) are NaN in the array and
null in the table.

Detection metrics count predictions with ``score >= score_threshold`` (``Objects.above``)
and match them greedily by decreasing score to the unmatched ground-truth box of the same
label with the highest IoU, if that IoU is >= ``iou_threshold``.

Example:
    >>> import numpy as np
    >>> from armory_datasets.data import Images, ImageClassificationBatch
    >>> b = ImageClassificationBatch(Images(np.zeros((2, 1, 1, 1), np.uint8)), [0, 1],
    ...                              predictions=[[2.0, 0.0], [3.0, 0.0]])
    >>> Correct()(b).tolist(), Correct().aggregate(Correct()(b))
    ([True, False], {'accuracy': 0.5})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from armory_datasets.boxes import match_objects, match_scores
from armory_datasets.data import ImageClassificationBatch, ObjectDetectionBatch, Objects, to_numpy

__all__ = [
    "Metric",
    "Correct",
    "Confidence",
    "NumTargets",
    "NumPredictions",
    "MeanIoU",
    "Precision",
    "Recall",
    "NamedMetric",
    "named_metric",
    "match_objects",
    "default_metrics",
    "summarize",
]


class Metric:
    """Base of named per-sample metrics; subclasses set ``name`` and implement ``compute``.

    Example:
        >>> class Zero(Metric):
        ...     name = "zero"
        ...     def compute(self, batch): return np.zeros(len(batch))
        >>> Zero().aggregate(np.zeros(3))
        {'mean_zero': 0.0}
    """

    name: str = ""

    def compute(self, batch: Any) -> Any:
        raise NotImplementedError

    def __call__(self, batch: Any) -> np.ndarray:
        values = to_numpy(self.compute(batch))
        if values.shape != (len(batch),):
            raise ValueError(f"metric {self.name!r}: got shape {values.shape}; expected "
                             f"({len(batch)},) one value per sample")
        return values

    def aggregate(self, values: np.ndarray) -> dict[str, float | None]:
        """Run-level summary of all values of the run: their mean ignoring NaN (None if none).

        Non-numeric metrics have no summary.
        """
        values = np.asarray(values)
        if values.dtype == object or not (np.issubdtype(values.dtype, np.number)
                                          or values.dtype == np.bool_):
            return {}
        values = values.astype(np.float64)
        finite = values[~np.isnan(values)]
        return {f"mean_{self.name}": float(finite.mean()) if finite.size else None}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _classification(batch: Any, metric: str) -> ImageClassificationBatch:
    if not isinstance(batch, ImageClassificationBatch) or batch.predictions is None:
        raise ValueError(f"metric {metric!r}: expected an ImageClassificationBatch with predictions")
    return batch


def _detection(batch: Any, metric: str, predictions: bool = True) -> ObjectDetectionBatch:
    if not isinstance(batch, ObjectDetectionBatch) or (predictions and batch.predictions is None):
        raise ValueError(f"metric {metric!r}: expected an ObjectDetectionBatch with predictions")
    return batch


class Correct(Metric):
    """``prediction == target`` per sample (bool); aggregate ``accuracy``.

    Example:
        >>> Correct().aggregate(np.array([True, True, False, False]))
        {'accuracy': 0.5}
    """

    name = "correct"

    def compute(self, batch: Any) -> np.ndarray:
        b = _classification(batch, self.name)
        return b.predictions.argmax(axis=1) == b.targets

    def aggregate(self, values: np.ndarray) -> dict[str, float | None]:
        return {"accuracy": float(np.mean(values)) if len(values) else None}


class Confidence(Metric):
    """Probability of the predicted class (softmax max, or the max probability).

    Example:
        >>> Confidence().aggregate(np.array([0.5, 1.0]))
        {'mean_confidence': 0.75}
    """

    name = "confidence"

    def compute(self, batch: Any) -> np.ndarray:
        return _classification(batch, self.name).probabilities().max(axis=1)


class NumTargets(Metric):
    """Number of ground-truth boxes per image (int64).

    Example:
        >>> NumTargets().name
        'num_targets'
    """

    name = "num_targets"

    def compute(self, batch: Any) -> np.ndarray:
        b = _detection(batch, self.name, predictions=False)
        return np.array([len(t) for t in b.targets], dtype=np.int64)


class NumPredictions(Metric):
    """Number of predicted boxes with ``score >= score_threshold`` per image (int64).

    Example:
        >>> NumPredictions(score_threshold=0.3)
        NumPredictions(score_threshold=0.3)
    """

    name = "num_predictions"

    def __init__(self, score_threshold: float = 0.5) -> None:
        self.score_threshold = score_threshold

    def compute(self, batch: Any) -> np.ndarray:
        b = _detection(batch, self.name)
        return np.array([len(p.above(self.score_threshold)) for p in b.predictions], dtype=np.int64)


class _MatchMetric(Metric):
    """Per-image value from greedy matches of predictions above a score threshold
    (``armory_datasets.boxes.match_scores``, shared with the batches' own columns)."""

    def __init__(self, iou_threshold: float = 0.5, score_threshold: float = 0.5) -> None:
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold

    def compute(self, batch: Any) -> np.ndarray:
        b = _detection(batch, self.name)
        return match_scores(b.predictions, b.targets, self.score_threshold, self.iou_threshold)[self.name]



class MeanIoU(_MatchMetric):
    """Mean IoU of matched pairs per image; NaN when nothing matched.

    Example:
        >>> MeanIoU(score_threshold=0.3).score_threshold
        0.3
    """

    name = "mean_iou"

    def aggregate(self, values: np.ndarray) -> dict[str, float | None]:
        return {"mean_iou": super().aggregate(values)["mean_mean_iou"]}



class Precision(_MatchMetric):
    """Matched predictions / predictions per image; NaN without predictions.

    Example:
        >>> Precision().name
        'precision'
    """

    name = "precision"



class Recall(_MatchMetric):
    """Matched ground-truth boxes / ground-truth boxes per image; NaN without targets.

    Example:
        >>> Recall().name
        'recall'
    """

    name = "recall"



class NamedMetric(Metric):
    """Any callable ``fn(batch) -> (N,)`` under a name (picklable if ``fn`` is module-level).

    Example:
        >>> NamedMetric("n", len).name
        'n'
    """

    def __init__(self, name: str, fn: Callable[[Any], Any]) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"name: got {name!r}; expected a non-empty string")
        self.name = name
        self.fn = fn

    def compute(self, batch: Any) -> Any:
        return self.fn(batch)


def named_metric(name: str, fn: Callable[[Any], Any]) -> NamedMetric:
    """Wrap a callable returning one value per sample as a named metric.

    Example:
        >>> def brightness(batch): return batch.inputs.to_uint8_hwc().mean(axis=(1, 2, 3))
        >>> named_metric("brightness", brightness).name
        'brightness'
    """
    return NamedMetric(name, fn)


def default_metrics(batch: Any) -> list[Metric]:
    """Built-in metrics recorded for every batch of this kind (vocabulary columns).

    Example:
        >>> from armory_datasets.data import Images
        >>> [m.name for m in default_metrics(ImageClassificationBatch(
        ...     Images(np.zeros((1, 1, 1, 1), np.uint8)), [0]))]
        ['correct', 'confidence']
    """
    if isinstance(batch, ObjectDetectionBatch):
        return [NumTargets(), NumPredictions(), MeanIoU(), Precision(), Recall()]
    return [Correct(), Confidence()]


def summarize(metrics: list[Metric], values: dict[str, list[np.ndarray]]) -> dict[str, float | None]:
    """Aggregate each metric over all its recorded batches (``values[name]``: list of arrays).

    Example:
        >>> summarize([Correct()], {"correct": [np.array([True]), np.array([False, False])]})
        {'accuracy': 0.3333333333333333}
    """
    summary: dict[str, float | None] = {}
    for metric in metrics:
        parts = values.get(metric.name, [])
        summary.update(metric.aggregate(np.concatenate(parts) if parts else np.zeros(0)))
    return summary
