"""A tiny classification export written from numpy, for examples that need one.

Two chains (``benign``, ``noisy``) of 8 random 8x8 RGB images in 3 classes, every
record exported, no FiftyOne dataset built (``open_export(path).fiftyone()`` builds it
on demand). Needs pillow for the PNGs, nothing else beyond the core install.

Example:
    >>> from armory_datasets import open_export
    >>> open_export(tiny_export()).count("chains(['noisy'])")
    8
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

__all__ = ["CLASS_NAMES", "tiny_export"]

CLASS_NAMES = ["cat", "dog", "bird"]


def tiny_export(export_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Write the tiny export to ``export_dir`` (default: a new temporary directory); return it.

    Logits are seeded, so the same ``seed`` gives the same table. In ``noisy`` the
    predictions of samples 1, 4 and 6 are wrong (``correct`` is false).

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
                global_indices=np.arange(8)[part], class_names=CLASS_NAMES))
            writer.end_batch()
    writer.close()
    return path
