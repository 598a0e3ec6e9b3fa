"""Axis-aligned box helpers in numpy (boxes are xyxy pixels: x_min, y_min, x_max, y_max).

Example:
    >>> import numpy as np
    >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2]])).round(3)
    array([[0.333]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def _as_boxes(boxes: ArrayLike) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def box_area(boxes: ArrayLike) -> np.ndarray:
    """Areas (N,) of xyxy boxes (N,4); inverted boxes count as zero.

    Example:
        >>> box_area(np.array([[0, 0, 2, 3]]))
        array([6.])
    """
    b = _as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Pairwise intersection-over-union (N,M) float64 of xyxy boxes a (N,4) and b (M,4).

    Pairs whose union is empty (two zero-area boxes) get IoU 0.

    Example:
        >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[0, 0, 2, 2], [5, 5, 6, 6]]))
        array([[1., 0.]])
    """
    a, b = _as_boxes(a), _as_boxes(b)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: ArrayLike, scores: ArrayLike, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices (int64) by decreasing score.

    A box is suppressed when its IoU with a higher-scoring kept box is strictly greater
    than `iou_threshold` (ties in score keep the earlier index first).

    Example:
        >>> nms(np.array([[0, 0, 2, 2], [0, 0, 2, 1.9], [4, 4, 5, 5]]), np.array([0.9, 0.8, 0.7]), 0.5)
        array([0, 2])
    """
    b = _as_boxes(boxes)
    order = np.argsort(-np.asarray(scores, dtype=np.float64).reshape(-1), kind="stable")
    if len(order) != len(b):
        raise ValueError(f"nms: {len(b)} boxes but {len(order)} scores")
    iou = box_iou(b, b)
    suppressed = np.zeros(len(b), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def match_objects(predictions: Objects, targets: Objects, iou_threshold: float = 0.5) -> np.ndarray:
    """IoUs (M,) of greedy same-label matches; predictions taken by decreasing score.

    Each prediction takes the unmatched ground-truth box of its label with the highest
    IoU, if that IoU is >= ``iou_threshold``; ties keep the earlier box.

    Example:
        >>> from armory_datasets.data import Objects
        >>> p = Objects([[0, 0, 2, 2], [0, 0, 2, 2]], [0, 0], [0.6, 0.9])
        >>> match_objects(p, Objects([[0, 0, 2, 2]], [0])).tolist()
        [1.0]
    """
    if len(predictions) == 0 or len(targets) == 0:
        return np.zeros(0, dtype=np.float64)
    iou = box_iou(predictions.boxes, targets.boxes)
    iou[predictions.labels[:, None] != targets.labels[None, :]] = -1.0
    scores = predictions.scores if predictions.scores is not None else np.zeros(len(predictions))
    taken = np.zeros(len(targets), dtype=bool)
    matched = []
    for i in np.argsort(-scores, kind="stable"):
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_threshold:
            taken[j] = True
            matched.append(candidates[j])
    return np.asarray(matched, dtype=np.float64)


def match_scores(predictions: Sequence[Any], targets: Sequence[Any], score_threshold: float = 0.5,
                 iou_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per image: ``num_predictions`` (score >= threshold), ``mean_iou``, ``precision``, ``recall``.

    Undefined values (no match, no prediction, no target) are NaN.

    Example:
        >>> from armory_datasets.data import Objects
        >>> s = match_scores([Objects([[0, 0, 2, 2]], [0], [0.4])], [Objects([[0, 0, 2, 2]], [0])], 0.3)
        >>> s["precision"].tolist(), s["recall"].tolist()
        ([1.0], [1.0])
    """
    counts, mean_iou, precision, recall = [], [], [], []
    for prediction, target in zip(predictions, targets):
        prediction = prediction.above(score_threshold)
        ious = match_objects(prediction, target, iou_threshold)
        counts.append(len(prediction))
        mean_iou.append(float(ious.mean()) if ious.size else np.nan)
        precision.append(ious.size / len(prediction) if len(prediction) else np.nan)
        recall.append(ious.size / len(target) if len(target) else np.nan)
    return {"num_predictions": np.asarray(counts, dtype=np.int64),
            "mean_iou": np.asarray(mean_iou, dtype=np.float64),
            "precision": np.asarray(precision, dtype=np.float64),
            "recall": np.asarray(recall, dtype=np.float64)}
