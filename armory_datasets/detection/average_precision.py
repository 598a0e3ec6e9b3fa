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
        self._images: dict[int, list[np.ndarray]] = defaultdict(list)
        self._ground_truth: dict[int, int] = defaultdict(int)
        self._added = 0

    def add(self, match: ImageMatch, image_id: int | None = None) -> None:
        """Add one image matched at ``COCO_IOU_THRESHOLDS``.

        ``image_id`` (default: the count of images added before) orders detections of
        equal score as COCOeval does, by image id, however the images arrive (shards).
        """
        image_id = self._added if image_id is None else int(image_id)
        self._added += 1
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
            self._images[int(label)].append(np.full(len(picked), image_id, dtype=np.int64))

    def state(self) -> dict:
        """The accumulated detections as JSON values, for a writer's journal: per class its
        ground-truth count and, by image order, every kept prediction's score and its
        matched / ignored flags at the ten thresholds (bit ``t`` of an int).

        Example:
            >>> AveragePrecision().state()
            {'max_detections': 100, 'ground_truth': {}, 'detections': {}}
        """
        bits = 1 << np.arange(len(COCO_IOU_THRESHOLDS), dtype=np.int64)

        def packed(flags: list[np.ndarray]) -> list[int]:
            return (np.concatenate(flags, axis=1).astype(np.int64) * bits[:, None]).sum(axis=0).tolist()

        return {"max_detections": self.max_detections,
                "ground_truth": {str(k): v for k, v in sorted(self._ground_truth.items())},
                "detections": {str(k): {"scores": np.concatenate(self._scores[k]).tolist(),
                                        "images": np.concatenate(self._images[k]).tolist(),
                                        "matched": packed(self._matched[k]),
                                        "ignored": packed(self._ignored[k])}
                               for k in sorted(self._scores)}}

    @classmethod
    def merged(cls, states: list[dict]) -> AveragePrecision:
        """One accumulator holding the detections of several ``state()`` s (several writers).

        Example:
            >>> from armory_datasets.detection.matching import match_image
            >>> ap = AveragePrecision()
            >>> ap.add(match_image([[0, 0, 2, 2]], [3], [0.9], [[0, 0, 2, 2]], [3], None, COCO_IOU_THRESHOLDS))
            >>> round(AveragePrecision.merged([ap.state(), AveragePrecision().state()]).result()["map"], 6)
            1.0
        """
        out = cls(max_detections=max([s["max_detections"] for s in states], default=100))
        bits = 1 << np.arange(len(COCO_IOU_THRESHOLDS), dtype=np.int64)
        for state in states:
            for label, n in state["ground_truth"].items():
                out._ground_truth[int(label)] += int(n)
            for label, found in state["detections"].items():
                flags = {k: (np.asarray(found[k], dtype=np.int64)[None, :] & bits[:, None]) > 0
                         for k in ("matched", "ignored")}
                out._scores[int(label)].append(np.asarray(found["scores"], dtype=np.float64))
                out._matched[int(label)].append(flags["matched"])
                out._ignored[int(label)].append(flags["ignored"])
                out._images[int(label)].append(np.asarray(found["images"], dtype=np.int64))
        return out

    def precision(self, label: int) -> np.ndarray | None:
        """Interpolated precision (T, 101) of a class, or None without ground truth."""
        n_gt = self._ground_truth.get(label, 0)
        if n_gt == 0:
            return None
        n_t = len(COCO_IOU_THRESHOLDS)
        if not self._scores.get(label):
            return np.zeros((n_t, len(RECALL_THRESHOLDS)))
        scores = np.concatenate(self._scores[label])
        # COCOeval: detections in image-id order, then a stable sort by descending score.
        order = np.lexsort((np.concatenate(self._images[label]), -scores))
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

    def result(self, class_names: list[str] | None = None) -> dict:
        """``ap50_per_class`` {label: AP at IoU 0.5}, ``ap50`` (their mean) and ``map``
        (mean over classes and IoU 0.50:0.95); None where no class has ground truth.
        With ``class_names`` the per-class keys are strings (the name, or the label beyond
        the names), else labels.

        Example:
            >>> AveragePrecision().result()
            {'ap50_per_class': {}, 'ap50': None, 'map': None}
        """
        per_class: dict = {}
        means: list[np.ndarray] = []
        for label in sorted(self._ground_truth):
            precision = self.precision(label)
            if precision is None:
                continue
            key = label if class_names is None else (
                class_names[label] if label < len(class_names) else str(label))
            per_class[key] = float(precision[0].mean())
            means.append(precision.mean(axis=1))
        if not means:
            return {"ap50_per_class": {}, "ap50": None, "map": None}
        stacked = np.stack(means)
        return {"ap50_per_class": per_class, "ap50": float(stacked[:, 0].mean()),
                "map": float(stacked.mean())}
