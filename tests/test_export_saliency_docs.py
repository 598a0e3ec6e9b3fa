"""The three exporter calls of upstream's "Exporting Data" page (Explainable AI), renamed
``armory.export`` -> ``armory_datasets.export``, run through the engine on the digits models.

The page's ``saliency_classes = [6, 23]`` is for a model with more than 23 classes; the
digits models have 10, so the classes here are ``[6, 3]`` (``[6, 23]`` is refused, naming
``classes``, in tests/test_export_saliency.py).

Example: ``./dev test tests/test_export_saliency_docs.py -q``
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import armory_datasets
import armory_datasets.export
from armory_datasets.demo.digits import (
    DIGITS_MEAN,
    DIGITS_STD,
    make_detection_canvases,
    normalize_digits,
    train_classifier,
    train_detector,
    train_test_split_digits,
)
from armory_datasets.engine import EvaluationEngine
from armory_datasets.evaluation import Evaluation

pytestmark = pytest.mark.slow


def test_captum_and_xaitk_calls_of_the_docs(tmp_path) -> None:
    torch.set_num_threads(1)
    model = train_classifier(seed=0, epochs=2)
    split = train_test_split_digits(seed=0)
    images = normalize_digits(torch.from_numpy(split.test_images[:32])).numpy()
    labels = split.test_labels[:32]

    # --- as on the page, with the rename (and classes of a 10-class model) ---
    saliency_n_steps = 50
    saliency_classes = [6, 3]
    is_saliency_class = armory_datasets.export.criteria.when_metric_in(
        armory_datasets.export.criteria.batch_targets(),
        saliency_classes,
    )

    exporter = armory_datasets.export.captum.CaptumImageClassificationExporter(
        model=model,
        criterion=is_saliency_class,
        n_steps=saliency_n_steps,
    )
    xaitk = armory_datasets.export.xaitksaliency.XaitkSaliencyBlackboxImageClassificationExporter(
        name="slidingwindow",
        model=model,
        classes=saliency_classes,
        criterion=is_saliency_class,
    )
    # ---

    evaluation = Evaluation(name="digits-saliency", description="docs calls", author="tests")
    evaluation.use_dataset([(images[:16], labels[:16]), (images[16:], labels[16:])],
                           scale="float", mean=DIGITS_MEAN, std=DIGITS_STD)
    evaluation.use_model(model)
    evaluation.use_exporters(exporter, xaitk)
    result = EvaluationEngine(evaluation, export_dir=tmp_path / "clf", quiet=True).run()

    table = armory_datasets.open_export(result.export_dir).to_pandas()
    assert sorted(table.sample_index) == [i for i in range(32) if labels[i] in saliency_classes]
    for field in ("captum_saliency", "xaitk_slidingwindow_6", "xaitk_slidingwindow_3"):
        assert table[f"{field}_path"].notna().all()
    dataset = armory_datasets.open_export(result.export_dir).fiftyone()
    assert dataset.count("captum_saliency") == dataset.count("xaitk_slidingwindow_6") == len(table)


class OneClass(torch.nn.Module):
    """The digits detector as a one-class ("digit") detector, like the page's ``num_classes=1``."""

    def __init__(self, detector: torch.nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": d["boxes"], "labels": torch.zeros_like(d["labels"]), "scores": d["scores"]}
                for d in self.detector(images)]


def test_drise_call_of_the_docs(tmp_path) -> None:
    torch.set_num_threads(1)
    model = OneClass(train_detector(seed=0, n_canvases=100)).eval()
    canvases, targets = make_detection_canvases(10, seed=2, split="test")
    targets = [{"boxes": t["boxes"], "labels": np.zeros_like(t["labels"])} for t in targets]

    # --- as on the page, with the rename ---
    export_every_n_batches = 5
    every_n = armory_datasets.export.criteria.every_n_batches(export_every_n_batches)

    exporter = armory_datasets.export.drise.DRiseSaliencyObjectDetectionExporter(
        model=model,
        criterion=every_n,
        num_classes=1,
        num_masks=10,
    )
    # ---

    evaluation = Evaluation(name="digits-drise", description="docs call", author="tests")
    evaluation.use_dataset([{"images": canvases[i:i + 2], "targets": targets[i:i + 2]} for i in range(0, 10, 2)],
                           task="detection", scale="float")
    evaluation.use_model(model)
    evaluation.use_exporters(exporter)
    result = EvaluationEngine(evaluation, export_dir=tmp_path / "det", quiet=True).run()

    table = armory_datasets.open_export(result.export_dir).to_pandas()
    assert sorted(table.sample_index) == [8, 9] and set(table.batch) == {4}
    assert (table.drise_boxes.map(len) == table.num_targets + table.num_predictions).all()
    assert table.drise_gt_0_path.notna().all()
