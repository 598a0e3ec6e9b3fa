"""Axis-aligned box helpers in numpy (boxes are xyxy pixels: x_min, y_min, x_max, y_max).

Example:
    >>> import numpy as np
    >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2]])).round(3)
    array([[0.333]])
"""

from __future__ import annotations

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
