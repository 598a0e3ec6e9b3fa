"""COCO average precision accumulated over a run, image by image.

``add`` takes one image's ``ImageMatch`` (matched at ``COCO_IOU_THRESHOLDS``);
``result`` computes, per class with ground truth, precision at COCO's 101 recall
points with the monotone envelope, exactly as ``COCOeval.accumulate`` (area "all",
at most ``max_detections`` per image and class): AP per class at IoU 0.5 and mAP
over IoU 0.50:0.95. Classes without non-crowd ground truth have no AP, as in COCO.

Example:
    >>> from armory_datasets.detection.matching import COCO_IOU_THRESHOLDS, match_image
    >>> ap = AveragePrecision()
    >>> ap.add(match_image([[0, 0, 2, 2]], [3], [0.9], [[0, 0, 2, 2]], [3], None, COCO_IOU_THRESHOLDS))
    >>> {k: round(v, 6) for k, v in ap.result().items() if k != "ap50_per_class"}
    {'ap50': 1.0, 'map': 1.0}
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from armory_datasets.detection.matching import COCO_IOU_THRESHOLDS, ImageMatch

# COCOeval.Params.setDetParams: recall thresholds 0, 0.01, ..., 1.
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


class AveragePrecision:
    """Accumulates matched images; ``result()`` gives COCO's AP figures (see module)."""

    def __init__(self, max_detections: int = 100) -> None:
        self.max_detections = max_detections
        self._scores: dict[int, list[np.ndarray]] = defaultdict(list)
        self._matched: dict[int, list[np.ndarray]] = defaultdict(list)
        self._ignored: dict[int, list[np.ndarray]] = defaultdict(list)
        self._ground_truth: dict[int, int] = defaultdict(int)

    def add(self, match: ImageMatch) -> None:
        """Add one image matched at ``COCO_IOU_THRESHOLDS``."""
        if not np.array_equal(match.thresholds, COCO_IOU_THRESHOLDS):
            raise ValueError("match: thresholds "
                             f"{match.thresholds.tolist()}; expected COCO_IOU_THRESHOLDS")
        for label in np.unique(match.gt_labels[~match.gt_crowd]):
            self._ground_truth[int(label)] += int(np.count_nonzero(
                (match.gt_labels == label) & ~match.gt_crowd))
        ordered_labels = match.pred_labels[match.order]
        for label in np.unique(ordered_labels):
            # Already by descending score; COCOeval keeps the first max_detections.
            picked = match.order[ordered_labels == label][: self.max_detections]
            self._scores[int(label)].append(match.pred_scores[picked])
            self._matched[int(label)].append(match.pred_gt[:, picked] >= 0)
            self._ignored[int(label)].append(match.pred_ignored[:, picked])

    def precision(self, label: int) -> np.ndarray | None:
        """Interpolated precision (T, 101) of a class, or None without ground truth."""
        n_gt = self._ground_truth.get(label, 0)
        if n_gt == 0:
            return None
        n_t = len(COCO_IOU_THRESHOLDS)
        if not self._scores.get(label):
            return np.zeros((n_t, len(RECALL_THRESHOLDS)))
        scores = np.concatenate(self._scores[label])
        order = np.argsort(-scores, kind="mergesort")  # COCOeval's stable sort
        matched = np.concatenate(self._matched[label], axis=1)[:, order]
        ignored = np.concatenate(self._ignored[label], axis=1)[:, order]
        tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
        fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
        recall = tp / n_gt
        precision = tp / (fp + tp + np.spacing(1))
        # Monotone envelope from the right, as COCOeval's backwards loop.
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        out = np.zeros((n_t, len(RECALL_THRESHOLDS)))
        for t in range(n_t):
            at = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
            inside = at < envelope.shape[1]
            out[t, inside] = envelope[t, at[inside]]
        return out

    def result(self) -> dict:
        """``ap50_per_class`` {label: AP at IoU 0.5}, ``ap50`` (their mean) and ``map``
        (mean over classes and IoU 0.50:0.95); None where no class has ground truth."""
        per_class: dict[int, float] = {}
        means: list[np.ndarray] = []
        for label in sorted(self._ground_truth):
            precision = self.precision(label)
            if precision is None:
                continue
            per_class[label] = float(precision[0].mean())
            means.append(precision.mean(axis=1))
        if not means:
            return {"ap50_per_class": {}, "ap50": None, "map": None}
        stacked = np.stack(means)
        return {"ap50_per_class": per_class, "ap50": float(stacked[:, 0].mean()),
                "map": float(stacked.mean())}
