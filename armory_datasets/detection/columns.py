"""A detection batch's object columns: every box with its COCO match, and tp/fp/fn per image.

``matched_columns`` matches each image once at COCO's ten IoU thresholds (the run's
average precision needs them all) and, when ``iou_threshold`` is not one of them, once
more at it. The boxes become ``ground_truth_objects`` / ``predicted_objects`` as Arrow
``list<struct>`` arrays of the vocabulary's type, built from flat numpy arrays (no Python
dict per box): ``match`` is "tp" / "fp" / "fn" or "ignored" (a crowd box, or a
prediction matched to one), ``iou`` and ``matched_index`` (into the other list) of the
box's match, null when unmatched. Per image it gives ``tp``, ``fp``, ``fn`` and from them
``precision``, ``recall`` and ``mean_iou`` (of the true positives), so the record's
metrics and its boxes come from one matching.

Example:
    >>> from armory_datasets.data import Objects
    >>> cols = matched_columns([Objects([[0, 0, 4, 4]], [1])],
    ...                        [Objects([[0, 0, 4, 4], [5, 5, 6, 6]], [1, 1], [0.9, 0.8])], 0.5)
    >>> [b["match"] for b in cols.predicted.to_pylist()[0]], cols.tp.tolist(), cols.fp.tolist()
    (['tp', 'fp'], [1], [1])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from armory_datasets.data import Objects
from armory_datasets.detection.matching import COCO_IOU_THRESHOLDS, ImageMatch, match_images
from armory_datasets.schema import VOCABULARY

__all__ = ["MatchedColumns", "matched_columns", "objects_array"]


@dataclass(frozen=True)
class MatchedColumns:
    """The object columns of a batch and each image's match at COCO's thresholds."""

    ground_truth: pa.Array
    predicted: pa.Array | None
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    mean_iou: np.ndarray
    coco: list[ImageMatch]

    @property
    def precision(self) -> np.ndarray:
        """tp / (tp + fp) per image, NaN without a counted prediction."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> np.ndarray:
        """tp / (tp + fn) per image, NaN without a (non-crowd) ground-truth box."""
        return _ratio(self.tp, self.tp + self.fn)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(len(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def objects_array(objects: list[Objects], match: list[np.ndarray] | None = None,
                  iou: list[np.ndarray] | None = None,
                  matched_index: list[np.ndarray] | None = None) -> pa.Array:
    """Boxes per image as the vocabulary's ``list<struct>`` (match fields null when not given).

    Example:
        >>> objects_array([Objects([[0, 1, 2, 3]], [4])]).to_pylist()[0][0]["y_min"]
        1.0
    """
    struct_type = VOCABULARY["ground_truth_objects"].arrow_type.value_type
    sizes = np.fromiter((len(o) for o in objects), dtype=np.int64, count=len(objects))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    total = int(offsets[-1])

    def flat(parts: list[np.ndarray] | None, dtype: type, empty: tuple = ()) -> np.ndarray:
        if not parts or not total:
            return np.zeros((0, *empty), dtype=dtype)
        return np.concatenate(parts).astype(dtype, copy=False)

    boxes = flat([o.boxes for o in objects], np.float64, (4,)).reshape(-1, 4)
    scores = [o.scores if o.scores is not None else np.full(len(o), np.nan) for o in objects]
    values = {
        "label": pa.array(flat([o.labels for o in objects], np.int64), pa.int64()),
        **{name: pa.array(boxes[:, k]) for k, name in enumerate(("x_min", "y_min", "x_max", "y_max"))},
        "score": pa.array(flat(scores, np.float64), pa.float64(), from_pandas=True),
        "match": (pa.array(flat(match, object).tolist(), pa.string()) if match is not None
                  else pa.nulls(total, pa.string())),
        "iou": (pa.array(flat(iou, np.float64), pa.float64(), from_pandas=True) if iou is not None
                else pa.nulls(total, pa.float64())),
        "matched_index": (pa.array(flat(matched_index, np.float64), pa.float64(), from_pandas=True)
                          .cast(pa.int64()) if matched_index is not None else pa.nulls(total, pa.int64())),
    }
    structs = pa.StructArray.from_arrays([values[f.name] for f in struct_type], fields=list(struct_type))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), structs)


def matched_columns(targets: list[Objects], predictions: list[Objects] | None,
                    iou_threshold: float) -> MatchedColumns:
    """Match every image (see the module docstring); ``predictions`` None gives only ground truth.

    Example:
        >>> from armory_datasets.data import Objects
        >>> matched_columns([Objects([[0, 0, 2, 2]], [0])], None, 0.5).fn.tolist()
        [1]
    """
    n = len(targets)
    coco_list = COCO_IOU_THRESHOLDS.tolist()
    empty = Objects(np.zeros((0, 4)), [], [])
    images = [(p.boxes, p.labels, p.scores, gt.boxes, gt.labels, gt.iscrowd)
              for gt, p in zip(targets, predictions if predictions is not None else [empty] * n)]
    coco = match_images(images, COCO_IOU_THRESHOLDS)
    if iou_threshold in coco_list:
        own, t = coco, coco_list.index(iou_threshold)
    else:
        own, t = match_images(images, (iou_threshold,)), 0
    gt_match, gt_iou, gt_index, pred_match, pred_iou, pred_index = ([] for _ in range(6))
    tp, fp, fn = (np.zeros(n, dtype=np.int64) for _ in range(3))
    mean_iou = np.full(n, np.nan)
    for i, m in enumerate(own):
        tp[i], fp[i], fn[i] = m.counts(t)
        matched = m.pred_iou(t)[(m.pred_gt[t] >= 0) & ~m.pred_ignored[t]]
        if matched.size:
            mean_iou[i] = matched.mean()
        gt_match.append(m.gt_match(t))
        gt_iou.append(m.gt_iou(t))
        gt_index.append(np.where(m.gt_pred[t] >= 0, m.gt_pred[t], np.nan))
        pred_match.append(m.pred_match(t))
        pred_iou.append(m.pred_iou(t))
        pred_index.append(np.where(m.pred_gt[t] >= 0, m.pred_gt[t], np.nan))
    ground_truth = objects_array(targets, gt_match, gt_iou, gt_index)
    predicted = (objects_array(predictions, pred_match, pred_iou, pred_index)
                 if predictions is not None else None)
    return MatchedColumns(ground_truth, predicted, tp, fp, fn, mean_iou, coco)
