"""Captum and XAITK saliency exporters on the trained digits classifier, through the engine:
meaning, equality with the libraries called directly, TIFF / Parquet / FiftyOne round trip,
selection by metric criteria, and errors before any work.

Example: ``./dev test tests/test_export_saliency.py -q``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from reference_blackbox import SoftmaxOneAtATime
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from torch import nn
from xaitk_saliency.impls.gen_image_classifier_blackbox_sal.slidingwindow import SlidingWindowStack

import armory_datasets
from armory_datasets import criteria as C
from armory_datasets.data import Images, ImageClassificationBatch
from armory_datasets.database import import_fiftyone
from armory_datasets.demo.digits import (
    CLASS_NAMES,
    DIGITS_MEAN,
    DIGITS_STD,
    normalize_digits,
    train_classifier,
    train_test_split_digits,
)
from armory_datasets.engine import EvaluationEngine, EvaluationResult
from armory_datasets.evaluation import Evaluation
from armory_datasets.export import ImageClassificationExporter
from armory_datasets.export.captum import CaptumImageClassificationExporter
from armory_datasets.export.xaitksaliency import XaitkSaliencyBlackboxImageClassificationExporter
from armory_datasets.store.media import HEATMAP_LEVELS, read_heatmap
from armory_datasets.metrics import Correct
from armory_datasets.store import ExportWriter
from rejection import assert_rejected

pytestmark = pytest.mark.slow

SALIENCY_CLASSES = [6, 3]
N_STEPS = 17


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.set_num_threads(1)
    return train_classifier(seed=0)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The first 48 held-out digits, normalised as the model expects, and their labels."""
    split = train_test_split_digits(seed=0)
    return normalize_digits(torch.from_numpy(split.test_images[:48])).numpy(), split.test_labels[:48]


def unit(normalised: np.ndarray) -> torch.Tensor:
    """The 0..1 images an exporter attributes on (the batch's own de-normalisation)."""
    return Images(normalised, mean=DIGITS_MEAN, std=DIGITS_STD).to_unit_float_chw()


def run(export_dir: Path, model: nn.Module, digits: tuple[np.ndarray, np.ndarray], *exporters: Any,
        fiftyone: bool = True) -> EvaluationResult:
    images, labels = digits
    evaluation = Evaluation("saliency", "saliency exporters on digits", "tests")
    evaluation.use_dataset([(images[i:i + 16], labels[i:i + 16]) for i in range(0, len(labels), 16)],
                           scale="float", mean=DIGITS_MEAN, std=DIGITS_STD, class_names=CLASS_NAMES)
    evaluation.use_model(model)
    evaluation.use_exporters(*exporters)
    return EvaluationEngine(evaluation, export_dir=export_dir, quiet=True, fiftyone=fiftyone).run()


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory, model: nn.Module, digits) -> EvaluationResult:
    is_saliency_class = C.when_metric_in(C.batch_targets(), SALIENCY_CLASSES)
    unsure = C.when_metric_eq(Correct(), False) | (C.col("confidence") < 0.9)
    return run(
        tmp_path_factory.mktemp("saliency") / "run", model, digits,
        ImageClassificationExporter(name="all", criterion=C.always()),
        CaptumImageClassificationExporter(model, do_integrated_grads=True, do_deeplift=True,
                                          layer="conv2", n_steps=N_STEPS, criterion=is_saliency_class),
        CaptumImageClassificationExporter(model, name="captum_unsure", explain="prediction",
                                          criterion=unsure),
        XaitkSaliencyBlackboxImageClassificationExporter("slidingwindow", model, SALIENCY_CLASSES,
                                                         criterion=is_saliency_class),
    )


@pytest.fixture(scope="module")
def table(export: EvaluationResult) -> pd.DataFrame:
    return armory_datasets.open_export(export.export_dir).to_pandas().sort_values("sample_index")


def stored(export_dir: Path, path: str) -> np.ndarray:
    assert path.endswith(".png")
    heatmap = read_heatmap(export_dir / path)
    assert heatmap.dtype == np.float32
    return heatmap


def level(heatmap: np.ndarray) -> float:
    """One step of a stored map: its range over the 16-bit PNG's 65535 levels."""
    return float(np.ptp(heatmap)) / HEATMAP_LEVELS


def assert_close_to(actual: np.ndarray, expected: np.ndarray, share: float = 1e-3) -> None:
    """Equal within ``share`` of the expected map's range."""
    assert actual.shape == expected.shape
    span = float(expected.max() - expected.min()) or 1.0
    assert np.abs(actual - expected).max() <= share * span


def test_maps_only_for_samples_the_criteria_chose(table: pd.DataFrame) -> None:
    chosen = table.target.isin(SALIENCY_CLASSES)
    assert 6 <= chosen.sum() < len(table) == 48
    for field in ("captum_saliency", "captum_ig", "captum_deeplift", "captum_gradcam",
                  "xaitk_slidingwindow_6", "xaitk_slidingwindow_3"):
        assert (table[f"{field}_path"].notna() == chosen).all(), field
    unsure = ~table.correct | (table.confidence < 0.9)
    assert unsure.any()
    assert (table.captum_unsure_saliency_path.notna() == unsure).all()
    assert (table.captum_unsure_class[unsure] == table.prediction[unsure]).all()
    assert (table.captum_class[chosen] == table.target[chosen]).all()
    assert table.exporters[chosen].map(lambda names: {"all", "captum", "slidingwindow"} <= set(names)).all()


def test_integrated_gradients_mass_lies_on_the_digit(export: EvaluationResult, table: pd.DataFrame) -> None:
    rows = table[table.captum_ig_path.notna()]
    shares = []
    for row in rows.itertuples():
        pixels = np.asarray(Image.open(export.export_dir / row.image_path))
        mass = np.abs(stored(export.export_dir, row.captum_ig_path))
        shares.append(mass[pixels > 0.2 * 255].sum() / mass.sum())
    # digit pixels are ~47% of the image; measured share of |IG| on them: 0.89..0.96
    assert min(shares) > 0.75 and np.mean(shares) > 0.85, shares


@pytest.fixture(scope="module")
def direct(model, digits, table) -> dict[str, Any]:
    """Captum and xaitk called directly on the chosen samples: {field: (N, H, W)}, IG's delta, rows."""
    images, _ = digits
    forward = lambda x: model(normalize_digits(x))  # noqa: E731  the model on the 0..1 image
    rows = table[table.captum_ig_path.notna()]
    x = unit(images[rows.sample_index.to_numpy()])
    target = torch.from_numpy(rows.target.to_numpy().copy())
    ig, delta = IntegratedGradients(forward).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=N_STEPS, return_convergence_delta=True)
    grads = Saliency(forward).attribute(x.clone().requires_grad_(), target=target, abs=True)
    cam = LayerGradCam(forward, model.conv2).attribute(x, target=target, relu_attributions=False)
    cam = LayerAttribution.interpolate(cam, (32, 32), interpolate_mode="bilinear")
    maps = {field: m.detach().sum(1).numpy()
            for field, m in (("captum_ig", ig), ("captum_saliency", grads), ("captum_gradcam", cam))}
    algorithm = SlidingWindowStack(window_size=(8, 8), stride=(4, 4), threads=0)
    xaitk = np.stack([algorithm.generate(image, SoftmaxOneAtATime(model, SALIENCY_CLASSES))
                      for image in x.permute(0, 2, 3, 1).numpy()])
    for k, c in enumerate(SALIENCY_CLASSES):
        maps[f"xaitk_slidingwindow_{c}"] = xaitk[:, k]
    return {"maps": maps, "ig_delta": delta.numpy(), "rows": rows}


def test_stored_maps_equal_captum_and_xaitk_called_directly(export, direct, table) -> None:
    rows = direct["rows"]
    assert (table.xaitk_slidingwindow_6_path.notna() == table.captum_ig_path.notna()).all()
    for field, maps in direct["maps"].items():
        for k, row in enumerate(rows.itertuples()):
            heatmap = stored(export.export_dir, getattr(row, f"{field}_path"))
            np.testing.assert_allclose(heatmap, maps[k], rtol=1e-4,
                                       atol=1e-5 * np.abs(maps[k]).max() + level(maps[k]))
            assert getattr(row, f"{field}_min") == pytest.approx(maps[k].min(), rel=1e-4, abs=1e-7)
            assert getattr(row, f"{field}_max") == pytest.approx(maps[k].max(), rel=1e-4, abs=1e-7)
            assert getattr(row, f"{field}_mean") == pytest.approx(maps[k].mean(), rel=1e-3, abs=1e-7)
    np.testing.assert_allclose(rows.captum_ig_delta, direct["ig_delta"], rtol=1e-3, atol=1e-6)
    assert rows.captum_deeplift_delta.notna().all() and "captum_saliency_delta" not in table


def test_integrated_gradients_honours_n_steps(model, digits, tmp_path) -> None:
    images, labels = digits
    chosen = C.samples([3])
    deltas = {}
    for n_steps in (2, 64):
        exporter = CaptumImageClassificationExporter(model, do_saliency=False, do_integrated_grads=True,
                                                     n_steps=n_steps, criterion=chosen)
        run(tmp_path / f"n{n_steps}", model, (images[:16], labels[:16]), exporter, fiftyone=False)
        deltas[n_steps] = abs(armory_datasets.open_export(tmp_path / f"n{n_steps}").to_pandas()
                              .captum_ig_delta.item())
    assert deltas[64] < deltas[2] / 4, deltas


def test_heatmaps_read_back_through_fiftyone_and_parquet(export: EvaluationResult, direct, table) -> None:
    """FiftyOne's ``Heatmap`` (16-bit levels over ``[min, max]``) and the Parquet paths' PNGs
    give the computed maps."""
    dataset = import_fiftyone().load_dataset(export.dataset_name)
    fields = ["captum_saliency", "captum_ig", "captum_deeplift", "captum_gradcam",
              "captum_unsure_saliency", "xaitk_slidingwindow_6", "xaitk_slidingwindow_3"]
    computed = {(field, index): maps[k] for field, maps in direct["maps"].items()
                for k, index in enumerate(direct["rows"].sample_index)}
    by_key = table.set_index("record_key")
    checked = 0
    for sample in dataset.select_fields(fields + ["record_key", "sample_index"]):
        row = by_key.loc[sample.record_key]
        for field in fields:
            if pd.isna(row[f"{field}_path"]):
                assert sample[field] is None
                continue
            assert sample[field].range == [0, HEATMAP_LEVELS]
            levels = sample[field].get_map()
            assert levels.dtype == np.uint16
            low, high = row[f"{field}_min"], row[f"{field}_max"]
            read = low + levels / HEATMAP_LEVELS * (high - low)
            expected = computed.get((field, sample.sample_index), stored(export.export_dir, row[f"{field}_path"]))
            assert_close_to(read, expected)
            assert_close_to(stored(export.export_dir, row[f"{field}_path"]), expected)
            checked += 1
    assert checked == sum(table[f"{f}_path"].notna().sum() for f in fields) > len(computed) > 0


def test_uint8_images_give_the_maps_of_the_same_pixels_as_floats(model, tmp_path) -> None:
    """A model fed 0..255 floats (uint8 images) is attributed on the same 0..1 image."""
    split = train_test_split_digits(seed=0)
    images, labels = split.test_images[:16], split.test_labels[:16]
    pixels = np.round(images * 255).astype(np.uint8)
    on_255 = nn.Sequential(Scale(1 / 255), Normalize(), model).eval()
    maps = {}
    for name, batch, net in (
        ("uint8", ImageClassificationBatch(Images(pixels), labels), on_255),
        ("float", ImageClassificationBatch(Images(normalize_digits(torch.from_numpy(pixels / 255.0).float()),
                                                  mean=DIGITS_MEAN, std=DIGITS_STD), labels), model),
    ):
        exporter = CaptumImageClassificationExporter(net, criterion=C.always(), export_dir=tmp_path / name)
        with exporter:
            exporter.export(0, batch)
        table = armory_datasets.open_export(tmp_path / name).to_pandas().sort_values("sample_index")
        maps[name] = np.stack([stored(tmp_path / name, p) for p in table.captum_saliency_path])
    np.testing.assert_allclose(maps["uint8"], maps["float"], rtol=1e-3, atol=1e-5 + 2 * level(maps["float"]))


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_digits(x)


def test_xaitk_black_box_of_a_probability_model_is_not_softmaxed_twice(model, digits, tmp_path) -> None:
    images, labels = digits
    probabilities = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    maps = {}
    for kind, net in (("logits", model), ("probabilities", probabilities)):
        evaluation = Evaluation("xaitk", "kinds", "tests")
        evaluation.use_dataset([(images[:16], labels[:16])], scale="float", mean=DIGITS_MEAN, std=DIGITS_STD)
        evaluation.use_model(net, prediction_kind=kind)
        evaluation.use_exporters(XaitkSaliencyBlackboxImageClassificationExporter(
            "sw", net, [3], criterion=C.samples([0, 5])))
        EvaluationEngine(evaluation, export_dir=tmp_path / kind, quiet=True, fiftyone=False).run()
        table = armory_datasets.open_export(tmp_path / kind).to_pandas().sort_values("sample_index")
        maps[kind] = np.stack([stored(tmp_path / kind, p) for p in table.xaitk_sw_3_path])
    np.testing.assert_allclose(maps["probabilities"], maps["logits"], atol=1e-5 + 2 * level(maps["logits"]))


# ---------------------------------------------------------------------------- errors


def digits_batch(model: nn.Module, digits, n: int = 8) -> ImageClassificationBatch:
    images, labels = digits
    x = torch.from_numpy(images[:n])
    with torch.no_grad():
        logits = model(x)
    return ImageClassificationBatch(Images(x.clone(), mean=DIGITS_MEAN, std=DIGITS_STD), labels[:n],
                                    predictions=logits, class_names=CLASS_NAMES)


def test_a_class_out_of_range_is_refused_before_any_work(model, digits, tmp_path) -> None:
    batch = digits_batch(model, digits)
    assert_rejected(CaptumImageClassificationExporter(model, explain=[6, 23], criterion=C.always()),
                    batch, tmp_path / "captum", r"explain: class 23 outside the model's classes 0\.\.9")
    assert_rejected(XaitkSaliencyBlackboxImageClassificationExporter("sw", model, [6, 23], criterion=C.always()),
                    batch, tmp_path / "xaitk", r"classes: \[23\] outside the model's classes 0\.\.9")


def test_an_image_with_nan_is_refused_before_any_work(model, digits, tmp_path) -> None:
    batch = digits_batch(model, digits)
    batch.inputs.data[3, 0, 5, 5] = float("nan")
    assert_rejected(CaptumImageClassificationExporter(model, criterion=C.always()), batch, tmp_path / "c",
                    r"inputs\[3\]: contains NaN")
    assert_rejected(XaitkSaliencyBlackboxImageClassificationExporter("sw", model, [6], criterion=C.always()),
                    batch, tmp_path / "x", r"inputs\[3\]: contains NaN")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"layer": "conv9"}, r"layer: the model has no submodule 'conv9'"),
    ({"layer": nn.Conv2d(1, 1, 1)}, r"layer: expected a submodule of the model"),
    ({"explain": "argmax"}, r"explain: got 'argmax'"),
    ({"explain": [3, 3]}, r"explain: .*distinct"),
    ({"do_saliency": False}, r"do_saliency, .*all off"),
    ({"name": "my captum"}, r"name: got 'my captum'"),
    ({"n_steps": 0}, r"n_steps: expected a positive int"),
])
def test_bad_captum_settings_raise_naming_the_argument(model, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        CaptumImageClassificationExporter(model, **kwargs)


def test_a_model_in_training_mode_is_refused(digits, tmp_path) -> None:
    model = train_classifier(seed=0, epochs=1)
    batch = digits_batch(model, digits)
    model.train()
    assert_rejected(CaptumImageClassificationExporter(model, criterion=C.always()), batch, tmp_path / "t",
                    r"model: in training mode")


def test_two_saliency_exporters_with_one_name_are_refused(model, tmp_path) -> None:
    writer = ExportWriter(tmp_path / "w", {"name": "two"}, fiftyone=False)
    CaptumImageClassificationExporter(model).setup(writer=writer)
    with pytest.raises(ValueError, match="name: another exporter of this export is already named 'captum'"):
        CaptumImageClassificationExporter(model, do_integrated_grads=True).setup(writer=writer)


class Counting(nn.Module):
    """The model, noting how many images each call gets."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        return self.model(x)


def test_a_resumed_export_computes_maps_only_for_samples_not_yet_written(model, digits, tmp_path) -> None:
    batches = [digits_batch(model, digits, n=16)]
    batches.append(ImageClassificationBatch(batches[0].inputs, batches[0].targets, batches[0].predictions,
                                            global_indices=np.arange(16, 32)))
    batches[0].global_indices = np.arange(16)
    interrupted = ExportWriter(tmp_path / "e", {"name": "resume"}, fiftyone=False, rows_per_part=1)
    first = CaptumImageClassificationExporter(model, criterion=C.always())
    first.setup(writer=interrupted)
    first.export(0, batches[0])
    interrupted.end_batch()
    interrupted.abort()

    counting = Counting(model).eval()
    with ExportWriter(tmp_path / "e", {"name": "resume"}, fiftyone=False) as writer:
        assert writer.resuming
        again = CaptumImageClassificationExporter(counting, criterion=C.always())
        again.setup(writer=writer)
        for batch_idx, batch in enumerate(batches):
            again.export(batch_idx, batch)
            writer.end_batch()
    assert counting.calls == [1, 16]  # a probe of the classes, then the 16 new samples only
    table = armory_datasets.open_export(tmp_path / "e").to_pandas().sort_values("sample_index")
    assert table.sample_index.tolist() == list(range(32)) and table.captum_saliency_path.notna().all()
    maps = [stored(tmp_path / "e", path) for path in table.captum_saliency_path]
    for k in range(16):
        np.testing.assert_allclose(maps[k], maps[16 + k], rtol=1e-5, atol=2 * level(maps[k]))  # same images
