"""Shared builders for the reading, CLI, sharing and App tests (no tests here).

``digits_export(path, criterion)`` runs the real engine on 96 held-out digits with the
tiny digits CNN, a benign and an FGSM chain, and one exporter that also writes a
float32 heatmap per record (the image's mean over channels, so tests can check it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from armory_datasets import criteria as C
from armory_datasets.demo.digits import CLASS_NAMES, DIGITS_MEAN, DIGITS_STD, train_classifier, \
    train_test_split_digits
from armory_datasets.engine import EvaluationEngine
from armory_datasets.evaluation import Evaluation
from armory_datasets.export import ImageClassificationExporter
from armory_datasets.perturbations import FGSM

torch.set_num_threads(1)
HEATMAP = "brightness"


@functools.lru_cache(maxsize=1)
def digits_model() -> torch.nn.Module:
    """The tiny digits CNN, trained once per test session."""
    return train_classifier(seed=0, epochs=2)


class HeatmapExporter(ImageClassificationExporter):
    """Classification records plus a float32 TIFF heatmap (mean over channels) per record."""

    def columns(self) -> dict[str, pa.DataType]:
        return {f"{HEATMAP}_path": pa.string(), f"{HEATMAP}_min": pa.float64(),
                f"{HEATMAP}_max": pa.float64()}

    def task_fields(self, batch, positions):
        fields = super().task_fields(batch, positions)
        maps = batch.inputs.to_unit_float_chw()[positions].mean(1).numpy()
        indices = batch.global_indices[positions]
        fields[f"{HEATMAP}_path"] = [self.writer.write_heatmap(HEATMAP, batch.chain, int(i), m)
                                     for i, m in zip(indices, maps)]
        fields[f"{HEATMAP}_min"] = maps.min(axis=(1, 2)).astype(np.float64)
        fields[f"{HEATMAP}_max"] = maps.max(axis=(1, 2)).astype(np.float64)
        return fields


def digits_export(path: Path, criterion: C.Criterion | None = None, n: int = 96,
                  batch_size: int = 16, fiftyone: bool = True, name: str = "digits-reading",
                  extra_exporters: Sequence[Any] = ()) -> Path:
    """Export ``n`` test digits (benign + fgsm chains) selected by ``criterion`` to ``path``."""
    model = digits_model()
    split = train_test_split_digits(seed=0)
    images = (split.test_images[:n] - DIGITS_MEAN) / DIGITS_STD
    labels = split.test_labels[:n]
    batches = [(images[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, n, batch_size)]
    evaluation = Evaluation(name, "digits for the reading tests", "tests")
    evaluation.use_dataset(batches, name="digits", scale="float", mean=DIGITS_MEAN, std=DIGITS_STD,
                           class_names=CLASS_NAMES)
    evaluation.use_model(model)
    evaluation.add_chain("fgsm", [FGSM(model, 0.15)])
    evaluation.use_exporters([HeatmapExporter(criterion=criterion if criterion is not None else C.always()),
                              *extra_exporters])
    EvaluationEngine(evaluation, export_dir=path, quiet=True, fiftyone=fiftyone).run()
    return Path(path)
