"""``Objects``: boxes (xyxy pixels), labels and optional scores of one image.

Example:
    >>> Objects([[0, 0, 2, 2]], [1]).labels.tolist()
    [1]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from armory_datasets.data.arrays import require_finite, to_numpy

_BOX_TOLERANCE = 1e-4
"""Pixels a box may exceed the image by (float rounding of clamped detector output)."""


@dataclasses.dataclass(eq=False)
class Objects:
    """Boxes of one image: ``boxes`` (K,4) xyxy pixels, ``labels`` (K,), ``scores`` (K,) or None,
    ``iscrowd`` (K,) bool or None (ground truth only: COCO's crowd regions).

    Stored as float64 / int64 / float64 / bool numpy. Construction checks shapes, dtypes and
    finiteness; the batch checks boxes against the image and labels against class names.

    Example:
        >>> o = Objects.from_mapping({"boxes": [[0, 0, 2, 2]], "labels": [1], "scores": [0.9]})
        >>> len(o), o.labels.tolist()
        (1, [1])
    """

    boxes: Any
    labels: Any
    scores: Any = None
    iscrowd: Any = None

    def __post_init__(self) -> None:
        self.boxes = self._float_array(self.boxes, "boxes")
        if self.boxes.size == 0:
            self.boxes = self.boxes.reshape(0, 4)
        labels = to_numpy(self.labels)
        if labels.size == 0:
            labels = labels.astype(np.int64).reshape(0)
        elif np.issubdtype(labels.dtype, np.integer):
            labels = labels.astype(np.int64)
        self.labels = labels
        if self.scores is not None:
            self.scores = self._float_array(self.scores, "scores").reshape(-1)
        if self.iscrowd is not None:
            crowd = to_numpy(self.iscrowd).reshape(-1)
            if crowd.size and not (crowd.dtype == np.bool_ or np.isin(crowd, (0, 1)).all()):
                raise ValueError(f"iscrowd: {crowd.tolist()[:5]}; expected one bool (or 0/1) per box")
            self.iscrowd = crowd.astype(bool)
        self.validate()

    @staticmethod
    def _float_array(value: Any, field: str) -> np.ndarray:
        array = to_numpy(value)
        if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.number) or array.size == 0):
            raise ValueError(f"{field}: dtype {array.dtype}; expected numbers")
        return array.astype(np.float64)

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> Objects:
        """Objects from a dict with "boxes", "labels" and optional "scores" and "iscrowd"
        (torchvision style).

        Example:
            >>> len(Objects.from_mapping({"boxes": [], "labels": []}))
            0
        """
        missing = {"boxes", "labels"} - set(value)
        if missing:
            raise ValueError(f"keys {sorted(value)}; expected 'boxes', 'labels' and optional "
                             f"'scores', 'iscrowd' (missing {sorted(missing)})")
        return cls(value["boxes"], value["labels"], value.get("scores"), value.get("iscrowd"))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def above(self, score_threshold: float) -> Objects:
        """The objects with ``score >= score_threshold`` (all of them when scores are None).

        Example:
            >>> len(Objects([[0, 0, 1, 1], [0, 0, 2, 2]], [0, 1], [0.4, 0.5]).above(0.5))
            1
        """
        if self.scores is None:
            return self
        keep = self.scores >= score_threshold
        crowd = None if self.iscrowd is None else self.iscrowd[keep]
        return Objects(self.boxes[keep], self.labels[keep], self.scores[keep], crowd)

    def validate(self, field: str = "objects", height: int | None = None, width: int | None = None,
                 num_classes: int | None = None, require_scores: bool = False) -> None:
        """Check shapes, dtypes, finiteness, box order and (when given) image bounds and labels.

        Example:
            >>> Objects([[3, 0, 1, 1]], [0]).validate()
            Traceback (most recent call last):
            ...
            ValueError: objects.boxes[0]: box [3.0, 0.0, 1.0, 1.0] has x_max < x_min or y_max < y_min; expected xyxy pixels (x_min, y_min, x_max, y_max)
        """
        k = self.boxes.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"{field}.boxes: got shape {self.boxes.shape}; expected (K,4) xyxy pixels")
        if self.labels.shape != (k,):
            raise ValueError(f"{field}.labels: got shape {self.labels.shape}; expected ({k},) "
                             f"one label per box")
        if self.labels.dtype != np.int64:
            raise ValueError(f"{field}.labels: dtype {self.labels.dtype}; expected integer class indices")
        if self.scores is None:
            if require_scores:
                raise ValueError(f"{field}.scores: missing; expected ({k},) scores for predictions")
        elif self.scores.shape != (k,):
            raise ValueError(f"{field}.scores: got shape {self.scores.shape}; expected ({k},) "
                             f"one score per box")
        if self.iscrowd is not None and self.iscrowd.shape != (k,):
            raise ValueError(f"{field}.iscrowd: got shape {self.iscrowd.shape}; expected ({k},) "
                             f"one bool per box")
        for name, array in (("boxes", self.boxes), ("scores", self.scores)):
            if array is not None:
                require_finite(array, f"{field}.{name}")
        inverted = (self.boxes[:, 2] < self.boxes[:, 0]) | (self.boxes[:, 3] < self.boxes[:, 1])
        if inverted.any():
            j = int(np.argmax(inverted))
            raise ValueError(f"{field}.boxes[{j}]: box {self.boxes[j].tolist()} has x_max < x_min "
                             f"or y_max < y_min; expected xyxy pixels (x_min, y_min, x_max, y_max)")
        if height is not None and width is not None:
            t = _BOX_TOLERANCE
            outside = ((self.boxes[:, 0] < -t) | (self.boxes[:, 1] < -t)
                       | (self.boxes[:, 2] > width + t) | (self.boxes[:, 3] > height + t))
            if outside.any():
                j = int(np.argmax(outside))
                raise ValueError(f"{field}.boxes[{j}]: box {self.boxes[j].tolist()} outside the "
                                 f"{width}x{height} image; expected 0 <= x_min <= x_max <= {width} "
                                 f"and 0 <= y_min <= y_max <= {height}")
        bad = self.labels < 0
        if num_classes is not None:
            bad |= self.labels >= num_classes
        if bad.any():
            j = int(np.argmax(bad))
            bound = f" < {num_classes}" if num_classes is not None else ""
            raise ValueError(f"{field}.labels[{j}]: label {self.labels[j]} out of range; "
                             f"expected 0 <= label{bound}")


# -------------------------------------------------------------------------- batches
