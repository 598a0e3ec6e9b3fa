"""Match one image's predictions to its ground truth as COCO's ``COCOeval.evaluateImg`` does.

Per class, predictions are taken by descending score (stable: ties keep box order).
Each takes the unmatched, non-crowd ground-truth box of its class with the highest
IoU >= the threshold (ties in IoU go to the later box, as in COCOeval); failing that,
a crowd box of its class (IoU = intersection / prediction area; a crowd box takes any
number of predictions). A prediction matched to a crowd box is ignored (neither tp
nor fp), and crowd boxes are never missed. All thresholds are matched in one pass:
the loop over predictions is inherently sequential (each takes a box from the rest),
every step is vectorised over ground-truth boxes and thresholds.

Example:
    >>> m = match_image(pred_boxes=[[0, 0, 2, 2], [0, 0, 2, 2]], pred_labels=[0, 0],
    ...                 pred_scores=[0.6, 0.9], gt_boxes=[[0, 0, 2, 2]], gt_labels=[0])
    >>> m.pred_match().tolist(), m.gt_match().tolist(), m.counts()
    (['fp', 'tp'], ['tp'], (1, 1, 0))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# COCOeval.Params.setDetParams, written the same way so the floats are identical.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
# COCOeval matches IoU >= min(t, 1 - 1e-10), so a threshold of 1 still matches equal boxes.
_MAX_THRESHOLD = 1 - 1e-10

TP, FP, FN, IGNORED = "tp", "fp", "fn", "ignored"


def check_iou_threshold(value: float, what: str = "iou_threshold") -> float:
    """``value`` as a float in (0, 1], else ValueError naming ``what``.

    Example:
        >>> check_iou_threshold(0.5)
        0.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
        0.0 < float(value) <= 1.0
    ):
        raise ValueError(f"{what}: {value!r}; expected a number in (0, 1]")
    return float(value)


def _boxes(value: ArrayLike) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(-1, 4)


def coco_iou(pred: np.ndarray, gt: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU (M, G) of xyxy boxes as COCO's ``bbIou``: intersection / union, or / the
    prediction's area for crowd ground truth; 0 without overlap.

    Example:
        >>> coco_iou(np.array([[0., 0, 2, 2]]), np.array([[0., 0, 4, 4]]), np.array([False])).tolist()
        [[0.25]]
    """
    w = np.minimum(pred[:, None, 2], gt[None, :, 2]) - np.maximum(pred[:, None, 0], gt[None, :, 0])
    h = np.minimum(pred[:, None, 3], gt[None, :, 3]) - np.maximum(pred[:, None, 1], gt[None, :, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    pred_area = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    gt_area = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    union = np.where(gt_crowd[None, :], pred_area[:, None], pred_area[:, None] + gt_area[None, :] - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


@dataclass(frozen=True)
class ImageMatch:
    """The matches of one image at thresholds ``T``.

    ``pred_gt`` (T, M) / ``gt_pred`` (T, G): index of the matched box on the other side
    or -1; ``pred_ignored`` (T, M): matched to a crowd box; ``iou`` (M, G), 0 across
    classes; ``order`` (M,): predictions by descending score.
    """

    thresholds: np.ndarray
    pred_gt: np.ndarray
    gt_pred: np.ndarray
    pred_ignored: np.ndarray
    gt_crowd: np.ndarray
    iou: np.ndarray
    pred_scores: np.ndarray
    pred_labels: np.ndarray
    gt_labels: np.ndarray
    order: np.ndarray

    def pred_match(self, t: int = 0) -> np.ndarray:
        """Per prediction: "tp", "fp" or "ignored" (matched to a crowd box), at threshold ``t``."""
        matched = self.pred_gt[t] >= 0
        return np.where(self.pred_ignored[t], IGNORED, np.where(matched, TP, FP)).astype(object)

    def gt_match(self, t: int = 0) -> np.ndarray:
        """Per ground-truth box: "tp", "fn" or "ignored" (a crowd box), at threshold ``t``."""
        matched = self.gt_pred[t] >= 0
        return np.where(self.gt_crowd, IGNORED, np.where(matched, TP, FN)).astype(object)

    def pred_iou(self, t: int = 0) -> np.ndarray:
        """IoU of each prediction with its match (NaN when unmatched)."""
        j = self.pred_gt[t]
        out = np.full(len(j), np.nan)
        hit = np.flatnonzero(j >= 0)
        out[hit] = self.iou[hit, j[hit]]
        return out

    def gt_iou(self, t: int = 0) -> np.ndarray:
        """IoU of each ground-truth box with its match (NaN when unmatched or crowd)."""
        i = self.gt_pred[t]
        out = np.full(len(i), np.nan)
        hit = np.flatnonzero(i >= 0)
        out[hit] = self.iou[i[hit], hit]
        return out

    def counts(self, t: int = 0) -> tuple[int, int, int]:
        """``(tp, fp, fn)`` of the image at threshold ``t`` (ignored boxes count in none)."""
        matched = self.pred_gt[t] >= 0
        tp = int(np.count_nonzero(matched & ~self.pred_ignored[t]))
        fp = int(np.count_nonzero(~matched))
        fn = int(np.count_nonzero((self.gt_pred[t] < 0) & ~self.gt_crowd))
        return tp, fp, fn


def match_image(pred_boxes: ArrayLike, pred_labels: ArrayLike, pred_scores: ArrayLike,
                gt_boxes: ArrayLike, gt_labels: ArrayLike, gt_crowd: ArrayLike | None = None,
                iou_thresholds: ArrayLike = (0.5,)) -> ImageMatch:
    """COCO matching of one image (see the module docstring), boxes xyxy pixels.

    Example:
        >>> match_image([[0, 0, 2, 2]], [1], [0.9], [[0, 0, 2, 2]], [2]).counts()
        (0, 1, 1)
    """
    pb, gb = _boxes(pred_boxes), _boxes(gt_boxes)
    pl = np.asarray(pred_labels, dtype=np.int64).reshape(-1)
    gl = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    crowd = (np.zeros(len(gb), dtype=bool) if gt_crowd is None
             else np.asarray(gt_crowd, dtype=bool).reshape(-1))
    for name, array, n in (("pred_labels", pl, len(pb)), ("pred_scores", scores, len(pb)),
                           ("gt_labels", gl, len(gb)), ("gt_crowd", crowd, len(gb))):
        if len(array) != n:
            raise ValueError(f"{name}: {len(array)} values for {n} boxes; expected one per box")
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    for t in thresholds:
        check_iou_threshold(float(t), "iou_thresholds")
    m, g, n_t = len(pb), len(gb), len(thresholds)
    iou = coco_iou(pb, gb, crowd)
    iou[pl[:, None] != gl[None, :]] = 0.0  # COCO matches within a class
    pred_gt = np.full((n_t, m), -1, dtype=np.int64)
    gt_pred = np.full((n_t, g), -1, dtype=np.int64)
    ignored = np.zeros((n_t, m), dtype=bool)
    order = np.argsort(-scores, kind="stable")
    if m and g:
        limit = np.minimum(thresholds, _MAX_THRESHOLD)[:, None]
        taken = np.zeros((n_t, g), dtype=bool)
        rows = np.arange(n_t)
        for i in order:
            reaches = iou[i][None, :] >= limit  # (T, G)
            free = reaches & ~taken & ~crowd
            into_crowd = reaches & crowd
            # argmax over the reversed row: ties in IoU go to the later box, as in COCOeval.
            best = g - 1 - np.argmax(np.where(free, iou[i], -1.0)[:, ::-1], axis=1)
            best_crowd = g - 1 - np.argmax(np.where(into_crowd, iou[i], -1.0)[:, ::-1], axis=1)
            regular = free.any(axis=1)
            to_crowd = ~regular & into_crowd.any(axis=1)
            pred_gt[:, i] = np.where(regular, best, np.where(to_crowd, best_crowd, -1))
            ignored[:, i] = to_crowd
            taken[rows[regular], best[regular]] = True
            gt_pred[rows[regular], best[regular]] = i
    return ImageMatch(thresholds, pred_gt, gt_pred, ignored, crowd, iou, scores, pl, gl, order)
