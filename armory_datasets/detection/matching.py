"""Match one image's predictions to its ground truth as COCO's ``COCOeval.evaluateImg`` does.

Per class, predictions are taken by descending score (stable: ties keep box order).
Each takes the unmatched, non-crowd ground-truth box of its class with the highest
IoU >= the threshold (ties in IoU go to the later box, as in COCOeval); failing that,
a crowd box of its class (IoU = intersection / prediction area; a crowd box takes any
number of predictions). A prediction matched to a crowd box is ignored (neither tp
nor fp), and crowd boxes are never missed. All thresholds are matched in one pass:
the loop over predictions is inherently sequential (each takes a box from the rest),
so ``match_images`` runs it once for a whole batch, every step vectorised over the
images, their ground-truth boxes and the thresholds.

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
    return match_images([(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_crowd)],
                        iou_thresholds)[0]


def match_images(images: list[tuple[ArrayLike, ...]], iou_thresholds: ArrayLike = (0.5,)) -> list[ImageMatch]:
    """The COCO matching of many images at once (``match_image`` is one of them).

    Each item is ``(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_crowd)``.
    Images are padded to the most boxes of any, and the sequential loop over predictions
    (the r-th by score of every image at step r) is vectorised over images, thresholds
    and ground truth: a batch costs about as many numpy calls as its busiest image.

    Example:
        >>> a = ([[0, 0, 2, 2]], [1], [0.9], [[0, 0, 2, 2]], [1], None)
        >>> b = ([[0, 0, 2, 2]], [1], [0.9], [[5, 5, 8, 8]], [1], None)
        >>> [m.counts() for m in match_images([a, b])]
        [(1, 0, 0), (0, 1, 1)]
    """
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    for t in thresholds:
        check_iou_threshold(float(t), "iou_thresholds")
    parsed = []
    for pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_crowd in images:
        pb, gb = _boxes(pred_boxes), _boxes(gt_boxes)
        pl = np.asarray(pred_labels, dtype=np.int64).reshape(-1)
        gl = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
        scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
        crowd = np.zeros(len(gb), dtype=bool) if gt_crowd is None else np.asarray(gt_crowd, dtype=bool).reshape(-1)
        for name, array, n in (("pred_labels", pl, len(pb)), ("pred_scores", scores, len(pb)),
                               ("gt_labels", gl, len(gb)), ("gt_crowd", crowd, len(gb))):
            if len(array) != n:
                raise ValueError(f"{name}: {len(array)} values for {n} boxes; expected one per box")
        parsed.append((pb, pl, scores, gb, gl, crowd))
    b, n_t = len(parsed), len(thresholds)
    m = max((len(x[0]) for x in parsed), default=0)
    g = max((len(x[3]) for x in parsed), default=0)
    iou = np.zeros((b, m, g))
    crowd = np.zeros((b, g), dtype=bool)
    scores = np.full((b, m), -np.inf)
    for k, (pb, pl, sc, gb, gl, cr) in enumerate(parsed):
        one = coco_iou(pb, gb, cr)
        one[pl[:, None] != gl[None, :]] = 0.0  # COCO matches within a class
        iou[k, :len(pb), :len(gb)] = one
        crowd[k, :len(gb)] = cr
        scores[k, :len(pb)] = sc
    order = np.argsort(-scores, axis=1, kind="stable")  # padding (-inf) last
    pred_gt = np.full((b, n_t, m), -1, dtype=np.int64)
    gt_pred = np.full((b, n_t, g), -1, dtype=np.int64)
    ignored = np.zeros((b, n_t, m), dtype=bool)
    if m and g:
        limit = np.minimum(thresholds, _MAX_THRESHOLD)[None, :, None]
        taken = np.zeros((b, n_t, g), dtype=bool)
        images_ = np.arange(b)
        every = (images_[:, None], np.arange(n_t)[None, :])
        for r in range(m):
            i = order[:, r]
            row = iou[images_, i][:, None, :]  # (B, 1, G)
            reaches = row >= limit  # padding has IoU 0 and never reaches
            free = reaches & ~taken & ~crowd[:, None, :]
            into_crowd = reaches & crowd[:, None, :]
            # argmax over the reversed row: ties in IoU go to the later box, as in COCOeval.
            best = g - 1 - np.argmax(np.where(free, row, -1.0)[..., ::-1], axis=2)
            best_crowd = g - 1 - np.argmax(np.where(into_crowd, row, -1.0)[..., ::-1], axis=2)
            regular = free.any(axis=2)
            to_crowd = ~regular & into_crowd.any(axis=2)
            pred_gt[(*every, i[:, None])] = np.where(regular, best, np.where(to_crowd, best_crowd, -1))
            ignored[(*every, i[:, None])] = to_crowd
            hit_b, hit_t = np.nonzero(regular)
            taken[hit_b, hit_t, best[hit_b, hit_t]] = True
            gt_pred[hit_b, hit_t, best[hit_b, hit_t]] = i[hit_b]
    out = []
    for k, (pb, pl, sc, gb, gl, cr) in enumerate(parsed):
        mk, gk = len(pb), len(gb)
        out.append(ImageMatch(thresholds, pred_gt[k, :, :mk], gt_pred[k, :, :gk], ignored[k, :, :mk], cr,
                              iou[k, :mk, :gk], sc, pl, gl, np.argsort(-sc, kind="stable")))
    return out
