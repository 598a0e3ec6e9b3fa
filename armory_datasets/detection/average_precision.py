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


import numpy as np

from armory_datasets.detection.matching import COCO_IOU_THRESHOLDS, ImageMatch

# COCOeval.Params.setDetParams: recall thresholds 0, 0.01, ..., 1.
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


class AveragePrecision:
    """Accumulates matched images; ``result()`` gives COCO's AP figures (see module)."""

    def __init__(self, max_detections: int = 100) -> None:
        self.max_detections = max_detections
        # Per image, flat over its kept predictions (no per-class split until result()).
        self._labels: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._images: list[np.ndarray] = []
        self._matched: list[np.ndarray] = []
        self._ignored: list[np.ndarray] = []
        self._ground_truth: list[np.ndarray] = []  # labels of non-crowd ground truth
        self._added = 0
        self._joined: dict[str, np.ndarray] | None = None

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
        picked = match.order  # by descending score
        labels = match.pred_labels[picked]
        if len(picked) > self.max_detections:  # COCOeval keeps the first max_detections per class
            by_label = np.argsort(labels, kind="stable")
            grouped = labels[by_label]
            rank = np.empty(len(picked), dtype=np.int64)
            rank[by_label] = np.arange(len(picked)) - np.searchsorted(grouped, grouped, side="left")
            keep = rank < self.max_detections
            picked, labels = picked[keep], labels[keep]
        self._append(labels, match.pred_scores[picked], np.full(len(picked), image_id, dtype=np.int64),
                     match.pred_gt[:, picked] >= 0, match.pred_ignored[:, picked],
                     match.gt_labels[~match.gt_crowd])

    def _append(self, labels: np.ndarray, scores: np.ndarray, images: np.ndarray,
                matched: np.ndarray, ignored: np.ndarray, ground_truth: np.ndarray) -> None:
        self._labels.append(labels)
        self._scores.append(scores)
        self._images.append(images)
        self._matched.append(matched)
        self._ignored.append(ignored)
        self._ground_truth.append(ground_truth)
        self._joined = None

    def _detections(self) -> dict:
        """Every kept detection (and ground-truth label), concatenated once."""
        if self._joined is None:
            n_t = len(COCO_IOU_THRESHOLDS)
            flat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
            wide = lambda parts: np.concatenate(parts, axis=1) if parts else np.zeros((n_t, 0), bool)  # noqa: E731
            self._joined = {"labels": flat(self._labels, np.int64), "scores": flat(self._scores, np.float64),
                            "images": flat(self._images, np.int64), "matched": wide(self._matched),
                            "ignored": wide(self._ignored), "ground_truth": flat(self._ground_truth, np.int64)}
        return self._joined

    def _ground_truth_counts(self) -> dict[int, int]:
        d = self._detections()
        if "counts" not in d:  # computed once per accumulated state, not once per class
            labels, counts = np.unique(d["ground_truth"], return_counts=True)
            d["counts"] = dict(zip(labels.tolist(), counts.tolist()))
        return d["counts"]

    def state(self) -> dict:
        """The accumulated detections as JSON values, for a writer's journal: per class its
        ground-truth count and, by image order, every kept prediction's score and its
        matched / ignored flags at the ten thresholds (bit ``t`` of an int).

        Example:
            >>> AveragePrecision().state()
            {'max_detections': 100, 'ground_truth': {}, 'detections': {}}
        """
        bits = 1 << np.arange(len(COCO_IOU_THRESHOLDS), dtype=np.int64)
        d = self._detections()

        def packed(flags: np.ndarray) -> list[int]:
            return (flags.astype(np.int64) * bits[:, None]).sum(axis=0).tolist()

        detections = {}
        for label in np.unique(d["labels"]).tolist():
            at = d["labels"] == label
            detections[str(label)] = {"scores": d["scores"][at].tolist(), "images": d["images"][at].tolist(),
                                      "matched": packed(d["matched"][:, at]), "ignored": packed(d["ignored"][:, at])}
        return {"max_detections": self.max_detections,
                "ground_truth": {str(k): v for k, v in sorted(self._ground_truth_counts().items())},
                "detections": detections}

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
            ground_truth = [np.full(int(n), int(label), dtype=np.int64) for label, n in state["ground_truth"].items()]
            out._ground_truth.extend(ground_truth)
            for label, found in state["detections"].items():
                flags = {k: (np.asarray(found[k], dtype=np.int64)[None, :] & bits[:, None]) > 0
                         for k in ("matched", "ignored")}
                scores = np.asarray(found["scores"], dtype=np.float64)
                out._append(np.full(len(scores), int(label), dtype=np.int64), scores,
                            np.asarray(found["images"], dtype=np.int64), flags["matched"], flags["ignored"],
                            np.zeros(0, dtype=np.int64))
        out._joined = None
        return out

    def precision(self, label: int) -> np.ndarray | None:
        """Interpolated precision (T, 101) of a class, or None without ground truth."""
        n_gt = self._ground_truth_counts().get(label, 0)
        if n_gt == 0:
            return None
        n_t = len(COCO_IOU_THRESHOLDS)
        d = self._detections()
        at = d["labels"] == label
        if not at.any():
            return np.zeros((n_t, len(RECALL_THRESHOLDS)))
        # COCOeval: detections in image-id order, then a stable sort by descending score.
        order = np.lexsort((d["images"][at], -d["scores"][at]))
        matched = d["matched"][:, at][:, order]
        ignored = d["ignored"][:, at][:, order]
        tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
        fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
        recall = tp / n_gt
        precision = tp / (fp + tp + np.spacing(1))
        # Monotone envelope from the right, as COCOeval's backwards loop.
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        out = np.zeros((n_t, len(RECALL_THRESHOLDS)))
        for t in range(n_t):
            at_recall = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
            inside = at_recall < envelope.shape[1]
            out[t, inside] = envelope[t, at_recall[inside]]
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
        for label in sorted(self._ground_truth_counts()):
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
