"""Tiny exports written from numpy, for examples and tests that need one.

Two chains (``benign``, ``noisy``) of 8 random RGB images in 3 classes, every record
exported, no FiftyOne dataset built (``open_export(path).fiftyone()`` builds it on
demand). Needs nothing beyond the core install. ``tiny_export`` is classification
(8x8 images), ``tiny_detection_export`` detection (16x12 images, 1-2 boxes each).

Example:
    >>> from armory_datasets import open_export
    >>> open_export(tiny_export()).count("chains(['noisy'])")
    8
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

__all__ = ["CLASS_NAMES", "tiny_detection_export", "tiny_export"]

CLASS_NAMES = ["cat", "dog", "bird"]


def tiny_export(export_dir: str | Path | None = None, seed: int = 0,
                class_names: list[str] | None = CLASS_NAMES) -> Path:
    """Write the tiny export to ``export_dir`` (default: a new temporary directory); return it.

    Logits are seeded, so the same ``seed`` gives the same table. In ``noisy`` the
    predictions of samples 1, 4 and 6 are wrong (``correct`` is false). ``class_names``
    (3 names, or None for none in the manifest) name the classes.

    Example:
        >>> from armory_datasets import open_export
        >>> export = open_export(tiny_export())
        >>> export.table("~correct", columns=["record_key"]).column(0).to_pylist()
        ['noisy/1', 'noisy/4', 'noisy/6']
    """
    from armory_datasets.criteria import always
    from armory_datasets.data import ImageClassificationBatch, Images
    from armory_datasets.export import ImageClassificationExporter
    from armory_datasets.store import ExportWriter

    path = Path(export_dir) if export_dir is not None else \
        Path(tempfile.mkdtemp(prefix="armory-tiny-")) / "tiny"
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(8, 3, 8, 8), dtype=np.uint8)
    targets = np.arange(8) % 3
    logits = rng.normal(size=(8, 3)) + 4.0 * np.eye(3)[targets]
    info = {"name": "tiny", "description": "random images, two chains", "author": "demo"}
    writer = ExportWriter(path, info, fiftyone=False)
    exporter = ImageClassificationExporter(criterion=always())
    exporter.setup(writer=writer)
    for chain, wrong in (("benign", []), ("noisy", [1, 4, 6])):
        chain_logits = logits.copy()
        chain_logits[wrong] = 4.0 * np.eye(3)[(targets[wrong] + 1) % 3]
        for batch_idx, start in enumerate((0, 5)):  # a short last batch of 3
            part = slice(start, start + 5)
            exporter.export(batch_idx, ImageClassificationBatch(
                Images(images[part]), targets[part], chain_logits[part], chain=chain,
                global_indices=np.arange(8)[part], class_names=class_names))
            writer.end_batch()
    writer.close()
    return path


def tiny_detection_export(export_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Write the tiny detection export (default: to a new temporary directory); return it.

    Sample ``i`` has ``1 + i % 2`` ground-truth boxes labelled ``(i + 2) % 3`` and
    ``i % 3`` (so labels are first seen out of class order); predictions are the boxes shifted by one pixel (``noisy``: the
    labels of samples 1, 4 and 6 are wrong).

    Example:
        >>> from armory_datasets import open_export
        >>> export = open_export(tiny_detection_export())
        >>> export.table("chains(['benign'])", columns=["num_targets"]).column(0).to_pylist()
        [1, 2, 1, 2, 1, 2, 1, 2]
    """
    from armory_datasets.criteria import always
    from armory_datasets.data import Images, ObjectDetectionBatch, Objects
    from armory_datasets.export import ObjectDetectionExporter
    from armory_datasets.store import ExportWriter

    path = Path(export_dir) if export_dir is not None else \
        Path(tempfile.mkdtemp(prefix="armory-tiny-")) / "tiny-detection"
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(8, 3, 12, 16), dtype=np.uint8)
    boxes = [np.array([[1, 1, 6, 5], [8, 4, 15, 11]][: 1 + i % 2], np.float64) for i in range(8)]
    labels = [np.array([(i + 2) % 3, i % 3][: 1 + i % 2]) for i in range(8)]
    info = {"name": "tiny-detection", "description": "random images, boxes", "author": "demo"}
    writer = ExportWriter(path, info, fiftyone=False)
    exporter = ObjectDetectionExporter(criterion=always())
    exporter.setup(writer=writer)
    for chain, wrong in (("benign", ()), ("noisy", (1, 4, 6))):
        targets = [Objects(b, l) for b, l in zip(boxes, labels)]
        predictions = [Objects(np.clip(b + 1, 0, [16, 12, 16, 12]),
                               (l + 1) % 3 if i in wrong else l, np.full(len(l), 0.9))
                       for i, (b, l) in enumerate(zip(boxes, labels))]
        for batch_idx, start in enumerate((0, 5)):  # a short last batch of 3
            part = slice(start, start + 5)
            exporter.export(batch_idx, ObjectDetectionBatch(
                Images(images[part]), targets[part], predictions[part], chain=chain,
                global_indices=np.arange(8)[part], class_names=CLASS_NAMES))
            writer.end_batch()
    exporter.close()
    writer.close()
    return path
