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

    def task_fields(self, batch: ObjectDetectionBatch, positions: np.ndarray) -> dict[str, Any]:
        """Boxes (pixels xyxy) and detection metrics of the selected positions."""
        chosen = positions.tolist()
        fields: dict[str, Any] = {
            "ground_truth_objects": objects_column([batch.targets[i] for i in chosen]),
            "num_targets": metrics.NumTargets()(batch)[positions],
        }
        if batch.predictions is None:
            return fields
        t = self.score_threshold
        fields["predicted_objects"] = objects_column([batch.predictions[i].above(t) for i in chosen])
        for metric in (metrics.NumPredictions(score_threshold=t), metrics.MeanIoU(score_threshold=t),
                       metrics.Precision(score_threshold=t), metrics.Recall(score_threshold=t)):
            fields[metric.name] = metric(batch)[positions]
        return fields
