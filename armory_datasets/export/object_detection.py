"""ObjectDetectionExporter: images, ground-truth and predicted boxes, detection metrics.

Each selected record gets its lossless PNG (written once per (chain, sample)),
``ground_truth_objects`` and ``predicted_objects`` (list of {label, x_min, y_min, x_max,
y_max, score} in pixels, predictions with ``score >= score_threshold``, as the metrics
count them), and ``num_targets``, ``num_predictions``, ``mean_iou``, ``precision``,
``recall`` at that threshold, plus the recorded metrics, metadata, batch metadata and
perturbation parameters. Image ``width``/``height`` come with the image.

Example:
    >>> ObjectDetectionExporter(score_threshold=0.3).params()
    {'score_threshold': 0.3}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from armory_datasets import metrics
from armory_datasets.data import ObjectDetectionBatch, Objects
from armory_datasets.export.base import Exporter

__all__ = ["ObjectDetectionExporter", "objects_column"]


def objects_column(objects: list[Objects]) -> list[list[dict[str, Any]]]:
    """Objects per image as the table's list<struct> (label, xyxy pixels, score or None).

    Example:
        >>> objects_column([Objects([[0, 1, 2, 3]], [4])])
        [[{'label': 4, 'x_min': 0.0, 'y_min': 1.0, 'x_max': 2.0, 'y_max': 3.0, 'score': None}]]
    """
    column = []
    for item in objects:
        scores = item.scores.tolist() if item.scores is not None else [None] * len(item)
        column.append([
            {"label": label, "x_min": box[0], "y_min": box[1], "x_max": box[2], "y_max": box[3],
             "score": score}
            for label, box, score in zip(item.labels.tolist(), item.boxes.tolist(), scores)
        ])
    return column


class ObjectDetectionExporter(Exporter):
    """Exports object detection samples (see the module docstring for the columns).

    Example:
        >>> ObjectDetectionExporter().name
        'object_detection'
    """

    batch_type = ObjectDetectionBatch
    default_name = "object_detection"

    def __init__(
        self,
        name: str | None = None,
        score_threshold: float = 0.5,
        criterion: Any = None,
        export_dir: Any = None,
    ) -> None:
        super().__init__(name=name, criterion=criterion, export_dir=export_dir)
        self.score_threshold = float(score_threshold)

    def params(self) -> dict[str, Any]:
        return {"score_threshold": self.score_threshold}

    def record_columns(self, batch: ObjectDetectionBatch) -> dict[str, Any]:
        """Boxes (pixels xyxy) and detection metrics at this exporter's ``score_threshold``.

        Example:
            >>> from armory_datasets.data import Images
            >>> b = ObjectDetectionBatch(Images(np.zeros((1, 1, 8, 8), np.uint8)),
            ...     [Objects([[1, 1, 4, 4]], [0])], [Objects([[1, 1, 4, 4]], [0], [0.4])])
            >>> ObjectDetectionExporter(score_threshold=0.3).record_columns(b)["precision"].tolist()
            [1.0]
        """
        columns: dict[str, Any] = {
            "ground_truth_objects": objects_column(batch.targets),
            "num_targets": metrics.NumTargets()(batch),
        }
        if batch.predictions is None:
            return columns
        t = self.score_threshold
        columns["predicted_objects"] = objects_column([p.above(t) for p in batch.predictions])
        for metric in (metrics.NumPredictions(score_threshold=t), metrics.MeanIoU(score_threshold=t),
                       metrics.Precision(score_threshold=t), metrics.Recall(score_threshold=t)):
            columns[metric.name] = metric(batch)
        return columns
