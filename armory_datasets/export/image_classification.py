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

    def record_columns(self, batch: ImageClassificationBatch) -> dict[str, Any]:
        """target, prediction, confidence, correct, probabilities and (for logits) logits.

        Example:
            >>> from armory_datasets.data import Images
            >>> b = ImageClassificationBatch(Images(np.zeros((1, 1, 1, 1), np.uint8)), [1], [[0.0, 2.0]])
            >>> sorted(ImageClassificationExporter().record_columns(b))
            ['confidence', 'correct', 'logits', 'prediction', 'probabilities', 'target']
        """
        columns: dict[str, Any] = {"target": batch.targets}
        if batch.predictions is None:
            return columns
        probabilities = batch.probabilities()
        prediction = batch.predictions.argmax(axis=1).astype(np.int64)
        columns["prediction"] = prediction
        columns["confidence"] = probabilities[np.arange(len(batch)), prediction]
        columns["correct"] = prediction == batch.targets
        columns["probabilities"] = probabilities.astype(np.float32)
        if batch.prediction_kind == "logits":
            columns["logits"] = batch.predictions.astype(np.float32)
        return columns
