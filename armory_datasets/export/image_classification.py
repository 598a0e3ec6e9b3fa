"""ImageClassificationExporter: images, targets, predictions, probabilities of selected samples.

Each selected record gets its lossless PNG (written once per (chain, sample)), ``target``,
``prediction`` (argmax), ``confidence`` (probability of the prediction), ``correct``,
``probabilities`` (float32), ``logits`` (when the model returns logits), the recorded
metrics, metadata, batch metadata and perturbation parameters.

Example:
    >>> import numpy as np, tempfile
    >>> from armory_datasets.criteria import always
    >>> from armory_datasets.data import Images, ImageClassificationBatch
    >>> batch = ImageClassificationBatch(Images(np.zeros((2, 3, 4, 4), np.uint8)), [0, 1],
    ...                                  predictions=[[2.0, 0.0], [0.0, 1.0]])
    >>> from armory_datasets.store import ExportWriter
    >>> with ExportWriter(tempfile.mkdtemp(), {"name": "doc"}, overwrite=True, fiftyone=False) as w:
    ...     exporter = ImageClassificationExporter(criterion=always())
    ...     exporter.setup(writer=w)
    ...     exporter.export(0, batch)
    >>> w.manifest["counts"]["records"]
    2
"""

from __future__ import annotations

from typing import Any

import numpy as np

from armory_datasets.data import ImageClassificationBatch
from armory_datasets.export.base import Exporter

__all__ = ["ImageClassificationExporter"]


class ImageClassificationExporter(Exporter):
    """Exports image classification samples (see the module docstring for the columns).

    Example:
        >>> ImageClassificationExporter().name
        'image_classification'
    """

    batch_type = ImageClassificationBatch
    default_name = "image_classification"

    def task_fields(self, batch: ImageClassificationBatch, positions: np.ndarray) -> dict[str, Any]:
        """target, prediction, confidence, correct, probabilities and (for logits) logits."""
        fields: dict[str, Any] = {"target": batch.targets[positions]}
        if batch.predictions is None:
            return fields
        fields["prediction"] = batch.column("prediction")[positions]
        fields["confidence"] = batch.column("confidence")[positions]
        fields["correct"] = batch.column("correct")[positions]
        fields["probabilities"] = batch.probabilities()[positions].astype(np.float32)
        if batch.prediction_kind == "logits":
            fields["logits"] = batch.predictions[positions].astype(np.float32)
        return fields
