"""Batches of evaluated samples: images, targets, predictions, metadata, metrics.

Arrays arrive as torch tensors (any device), numpy arrays or lists and are stored as
numpy (images keep their original container). Constructors validate; call
``batch.validate()`` again after mutating a batch. Every error is a ``ValueError``
naming the field, the sample position and the expected form.

torch is imported lazily, so criteria code can use batches without importing it.

Example:
    >>> import numpy as np
    >>> images = Images(np.zeros((2, 1, 4, 4), dtype=np.uint8))
    >>> batch = ImageClassificationBatch(images, targets=[3, 1],
    ...                                  predictions=np.eye(4)[[3, 0]] * 5.0)
    >>> batch.column("correct").tolist()
    [True, False]
"""

from armory_datasets.data.arrays import to_numpy
from armory_datasets.data.batches import Batch, ImageClassificationBatch, ObjectDetectionBatch
from armory_datasets.data.images import Images
from armory_datasets.data.objects import Objects

__all__ = [
    "Images",
    "Objects",
    "ImageClassificationBatch",
    "ObjectDetectionBatch",
    "Batch",
    "to_numpy",
]
