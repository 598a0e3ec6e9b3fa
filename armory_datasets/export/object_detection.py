"""ObjectDetectionExporter: images, boxes with their COCO match, detection metrics.

Each selected record gets its lossless PNG (written once per (chain, sample)),
``ground_truth_objects`` and ``predicted_objects`` (list of {label, x_min, y_min, x_max,
y_max, score, match, iou, matched_index} in pixels, predictions with
``score >= score_threshold``, as the metrics count them), the image's ``tp``, ``fp`` and
``fn`` (COCO matching at ``iou_threshold``, :mod:`armory_datasets.detection.columns`),
and ``num_targets``, ``num_predictions``, ``mean_iou``, ``precision``, ``recall`` at that
threshold, plus the recorded metrics, metadata, batch metadata and perturbation
parameters. Image ``width``/``height`` come with the image.

Every batch the exporter sees, selected or not, also feeds the run's COCO average
precision per chain (:class:`~armory_datasets.detection.AveragePrecision`, over the
predictions it stores): ``run_metrics()`` gives ``ap50``, ``map`` and ``ap50_per_class``,
which go to the manifest's ``metrics`` and the engine's ``EvaluationResult.metrics``.

Example:
    >>> ObjectDetectionExporter(score_threshold=0.3).params()
    {'score_threshold': 0.3, 'iou_threshold': 0.5}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from armory_datasets import metrics
from armory_datasets.data import ObjectDetectionBatch
from armory_datasets.detection.average_precision import AveragePrecision
from armory_datasets.detection.columns import MatchedColumns, matched_columns
from armory_datasets.detection.matching import check_iou_threshold
from armory_datasets.export.base import Exporter

__all__ = ["ObjectDetectionExporter"]


class ObjectDetectionExporter(Exporter):
    """Exports object detection samples (see the module docstring for the columns).

    Args:
        score_threshold: predictions below it are neither stored nor counted.
        iou_threshold: the IoU a prediction needs to match a ground-truth box, in (0, 1].

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
        iou_threshold: float = 0.5,
    ) -> None:
        super().__init__(name=name, criterion=criterion, export_dir=export_dir)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = check_iou_threshold(iou_threshold)
        self._average_precision: dict[str, AveragePrecision] = {}
        self._class_names: list[str] | None = None
        self._matched: tuple[ObjectDetectionBatch, MatchedColumns] | None = None

    def params(self) -> dict[str, Any]:
        return {"score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold}

    def export(self, batch_idx: int, batch: Any) -> None:
        """Export the selected samples, and add every image of the batch to the run's AP.

        Example:
            >>> import numpy as np
            >>> from armory_datasets.data import Images, Objects
            >>> b = ObjectDetectionBatch(Images(np.zeros((1, 1, 8, 8), np.uint8)),
            ...     [Objects([[1, 1, 4, 4]], [0])], [Objects([[1, 1, 4, 4]], [0], [0.9])])
            >>> with ObjectDetectionExporter(export_dir="out") as e:
            ...     e.export(0, b)
            ...     round(e.run_metrics()["benign"]["map"], 6)
            1.0
        """
        super().export(batch_idx, batch)
        if batch.predictions is not None:
            ap = self._average_precision.setdefault(batch.chain, AveragePrecision())
            for match, sample_index in zip(self._matches(batch).coco, self._batch_indices.tolist()):
                ap.add(match, sample_index)
            self._class_names = batch.class_names
        self._matched = None

    def run_metrics(self) -> dict[str, dict[str, Any]]:
        """Per chain: COCO ``ap50``, ``map`` (IoU 0.50:0.95) and ``ap50_per_class`` (keyed by
        class name, else by label as a string) of every batch exported so far.

        Example:
            >>> ObjectDetectionExporter().run_metrics()
            {}
        """
        names = list(self._class_names or [])
        return {chain: ap.result(names) for chain, ap in self._average_precision.items()}

    def close(self) -> None:
        """Give the run's metrics to the writer (for the manifest), then close as any exporter.

        Example:
            >>> ObjectDetectionExporter().close()
        """
        if self.writer is not None and self._average_precision:
            self.writer.set_run_metrics(self.name, self.run_metrics(), {
                chain: ap.state() for chain, ap in self._average_precision.items()})
        super().close()

    def _matches(self, batch: ObjectDetectionBatch) -> MatchedColumns:
        """The batch's matched object columns, computed once per batch."""
        if self._matched is None or self._matched[0] is not batch:
            predictions = (None if batch.predictions is None
                           else [p.above(self.score_threshold) for p in batch.predictions])
            self._matched = (batch, matched_columns(batch.targets, predictions, self.iou_threshold))
        return self._matched[1]

    def record_columns(self, batch: ObjectDetectionBatch) -> dict[str, Any]:
        """Matched boxes (pixels xyxy), tp/fp/fn and the metrics at this exporter's thresholds,
        all from one COCO matching (precision = tp / (tp + fp), recall = tp / (tp + fn)).

        Example:
            >>> import numpy as np
            >>> from armory_datasets.data import Images, Objects
            >>> b = ObjectDetectionBatch(Images(np.zeros((1, 1, 8, 8), np.uint8)),
            ...     [Objects([[1, 1, 4, 4]], [0])], [Objects([[1, 1, 4, 4]], [0], [0.4])])
            >>> ObjectDetectionExporter(score_threshold=0.3).record_columns(b)["precision"].tolist()
            [1.0]
        """
        matched = self._matches(batch)
        columns: dict[str, Any] = {
            "ground_truth_objects": matched.ground_truth,
            "num_targets": metrics.NumTargets()(batch),
        }
        if batch.predictions is None:
            return columns
        predicted = matched.predicted
        columns.update(predicted_objects=predicted, tp=matched.tp, fp=matched.fp, fn=matched.fn,
                       num_predictions=np.diff(predicted.offsets.to_numpy()).astype(np.int64),
                       mean_iou=matched.mean_iou, precision=matched.precision, recall=matched.recall)
        return columns
