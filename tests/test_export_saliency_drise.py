"""D-RISE exporter on the trained digits detector and 64x96 canvases, through the engine:
meaning, equality with DRise called directly, box <-> map links in Parquet and FiftyOne,
seeding, chunking, selection by a metric criterion, and errors before any work.

Example: ``./dev test tests/test_export_saliency_drise.py -q``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import armory_datasets
from armory_datasets import criteria as C
from armory_datasets.data import Images, ObjectDetectionBatch
from armory_datasets.database import import_fiftyone
from armory_datasets.demo.digits import CLASS_NAMES, make_detection_canvases, train_detector
from armory_datasets.engine import EvaluationEngine, EvaluationResult
from armory_datasets.evaluation import Evaluation
from armory_datasets.export import ObjectDetectionExporter
from armory_datasets.export.drise import DRiseSaliencyObjectDetectionExporter
from armory_datasets.metrics import NumTargets
from armory_datasets.saliency.drise import DRise, box_saliency_stats
from armory_datasets.store import ExportWriter
from armory_datasets.store.media import HEATMAP_LEVELS, read_heatmap
from rejection import assert_rejected

pytestmark = pytest.mark.slow

NUM_MASKS = 300
SEED = 7


@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    torch.set_num_threads(1)
    return train_detector(seed=0, n_canvases=300)


@pytest.fixture(scope="module")
def canvases() -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    return make_detection_canvases(8, height=64, width=96, seed=3, split="test")


def run(export_dir: Path, detector: torch.nn.Module, canvases, *exporters: Any,
        fiftyone: bool = True) -> EvaluationResult:
    images, targets = canvases
    evaluation = Evaluation("drise", "D-RISE on digit canvases", "tests")
    evaluation.use_dataset([{"images": images[i:i + 4], "targets": targets[i:i + 4]}
                            for i in range(0, len(images), 4)],
                           task="detection", scale="float", class_names=CLASS_NAMES)
    evaluation.use_model(detector)
    evaluation.use_exporters(*exporters)
    return EvaluationEngine(evaluation, export_dir=export_dir, quiet=True, fiftyone=fiftyone).run()


@pytest.fixture(scope="module")
def export(tmp_path_factory, detector, canvases) -> EvaluationResult:
    return run(tmp_path_factory.mktemp("drise") / "run", detector, canvases,
               ObjectDetectionExporter(criterion=C.always()),
               DRiseSaliencyObjectDetectionExporter(detector, num_classes=10, num_masks=NUM_MASKS, seed=SEED,
                                                    criterion=C.when_metric_gt(NumTargets(), 1)))


@pytest.fixture(scope="module")
def table(export: EvaluationResult) -> pd.DataFrame:
    return armory_datasets.open_export(export.export_dir).to_pandas().sort_values("sample_index")


def explained(table: pd.DataFrame) -> list[tuple[pd.Series, dict[str, Any]]]:
    """(row, drise_boxes entry) for every explained box."""
    return [(row, entry) for _, row in table.iterrows() if row.drise_boxes is not None
            for entry in row.drise_boxes]


def stored(export_dir: Path, path: str) -> np.ndarray:
    heatmap = read_heatmap(export_dir / path)
    assert heatmap.dtype == np.float32 and heatmap.shape == (64, 96)
    return heatmap


def level(heatmap: np.ndarray) -> float:
    """One step of a stored map: its range over the 16-bit PNG's 65535 levels."""
    return float(np.ptp(heatmap)) / HEATMAP_LEVELS


def test_maps_only_for_images_the_metric_criterion_chose(table: pd.DataFrame) -> None:
    chosen = table.num_targets > 1
    assert 0 < chosen.sum() < len(table) == 8
    assert (table.drise_boxes.notna() == chosen).all()
    assert (table.drise_gt_0_path.notna() == chosen).all()
    for _, row in table[chosen].iterrows():
        kinds = [(e["kind"], e["index"]) for e in row.drise_boxes]
        assert kinds == ([("gt", k) for k in range(len(row.ground_truth_objects))]
                         + [("pred", k) for k in range(len(row.predicted_objects))])


def test_a_map_is_higher_inside_its_box_than_outside(export, table) -> None:
    higher = total = 0
    shares = []
    for _, entry in explained(table):
        heatmap = stored(export.export_dir, entry["path"])
        x0, y0, x1, y1 = (int(round(entry[k])) for k in ("x_min", "y_min", "x_max", "y_max"))
        inside = np.zeros(heatmap.shape, dtype=bool)
        inside[y0:y1, x0:x1] = True
        higher += heatmap[inside].mean() > heatmap[~inside].mean()
        total += 1
        assert entry["in_box"] > 2 * inside.mean()  # above-mean saliency: in the box, twice its area share
        shares.append(entry["in_box"])
    assert total >= 8 and higher == total, (higher, total)
    assert np.median(shares) > 0.25  # box: 9.4% of the image


def test_stored_maps_equal_drise_called_directly(export, detector, canvases, table) -> None:
    images, _ = canvases
    drise = DRise(num_masks=NUM_MASKS, seed=SEED, score_threshold=0.5)
    for _, row in table[table.drise_boxes.notna()].iterrows():
        boxes = np.array([[e[k] for k in ("x_min", "y_min", "x_max", "y_max")] for e in row.drise_boxes])
        labels = np.array([e["label"] for e in row.drise_boxes])
        expected = drise.attribute(detector, torch.from_numpy(images[row.sample_index]), boxes, labels, 10)
        for entry, heatmap in zip(row.drise_boxes, expected):
            np.testing.assert_allclose(stored(export.export_dir, entry["path"]), heatmap, rtol=1e-5,
                                       atol=1e-7 + level(heatmap))
            box = [entry[k] for k in ("x_min", "y_min", "x_max", "y_max")]
            stats = box_saliency_stats(heatmap, box)
            for stat in ("min", "max", "mean"):
                assert entry[stat] == pytest.approx(stats[stat], rel=1e-5, abs=1e-9)
                assert row[f"{entry['field']}_{stat}"] == entry[stat]
            above_mean = box_saliency_stats(heatmap - heatmap.mean(), box)["in_box_positive_share"]
            assert entry["in_box"] == pytest.approx(above_mean, rel=1e-5)
            assert row[f"{entry['field']}_in_box"] == entry["in_box"]


def test_boxes_lead_to_maps_and_back_in_parquet(table: pd.DataFrame) -> None:
    for row, entry in explained(table):
        objects = row.ground_truth_objects if entry["kind"] == "gt" else row.predicted_objects
        box = objects[entry["index"]]  # map -> box
        assert entry["field"] == f"drise_{entry['kind']}_{entry['index']}"  # box -> map
        assert row[f"{entry['field']}_path"] == entry["path"]
        assert {k: box[k] for k in ("label", "x_min", "y_min", "x_max", "y_max", "score")} == \
               {k: entry[k] for k in ("label", "x_min", "y_min", "x_max", "y_max", "score")}


def test_boxes_lead_to_maps_and_back_in_fiftyone(export, table) -> None:
    dataset = import_fiftyone().load_dataset(export.dataset_name)
    by_key = table.set_index("record_key")
    checked = 0
    for sample in dataset:
        row = by_key.loc[sample.record_key]
        if row.drise_boxes is None:
            continue
        for kind, label_field in (("gt", "ground_truth"), ("pred", "predictions")):
            for k, detection in enumerate(sample[label_field].detections):
                heatmap = sample[f"drise_{kind}_{k}"]  # box -> map
                entry = next(e for e in sample["drise_boxes"] if e["field"] == f"drise_{kind}_{k}")
                assert heatmap.map_path == str(export.export_dir.resolve() / entry["path"])
                assert heatmap.range == [0, HEATMAP_LEVELS]
                x, y, w, h = detection.bounding_box  # map -> box, relative xywh
                assert [x * 96, y * 64, (x + w) * 96, (y + h) * 64] == pytest.approx(
                    [entry["x_min"], entry["y_min"], entry["x_max"], entry["y_max"]])
                assert detection.class_index == entry["label"]
                levels = heatmap.get_map()
                expected = stored(export.export_dir, entry["path"])
                assert levels.dtype == np.uint16
                read = entry["min"] + levels / HEATMAP_LEVELS * (entry["max"] - entry["min"])
                assert np.abs(read - expected).max() <= 1e-3 * (expected.max() - expected.min())
                checked += 1
    assert checked == len(explained(table))


# ------------------------------------------------------------------ seeding, chunking, errors


class Counting(torch.nn.Module):
    """The detector, noting how many images each call gets."""

    def __init__(self, detector: torch.nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.calls: list[int] = []

    def forward(self, images: torch.Tensor) -> Any:
        self.calls.append(len(images))
        return self.detector(images)


def one_image_maps(tmp_path: Path, name: str, detector, canvases, **options: Any) -> dict[str, np.ndarray]:
    images, targets = canvases
    batch = ObjectDetectionBatch(Images(images[:1]), targets[:1], predictions=detector(torch.from_numpy(images[:1])),
                                 class_names=CLASS_NAMES)
    exporter = DRiseSaliencyObjectDetectionExporter(detector, 10, criterion=C.always(),
                                                    export_dir=tmp_path / name, **options)
    with exporter:
        exporter.export(0, batch)
    row = armory_datasets.open_export(tmp_path / name).to_pandas().iloc[0]
    return {e["field"]: read_heatmap(tmp_path / name / e["path"]) for e in row.drise_boxes}


def test_maps_are_deterministic_for_a_seed_and_chunked(tmp_path, detector, canvases) -> None:
    counting = Counting(detector).eval()
    first = one_image_maps(tmp_path, "a", counting, canvases, num_masks=40, seed=1, batch_size=16)
    assert counting.calls == [1, 16, 16, 8]  # the batch's prediction, then 40 masks in chunks
    again = one_image_maps(tmp_path, "b", detector, canvases, num_masks=40, seed=1, batch_size=7)
    other = one_image_maps(tmp_path, "c", detector, canvases, num_masks=40, seed=2, batch_size=16)
    assert first.keys() == again.keys() == other.keys()
    for field in first:
        np.testing.assert_allclose(first[field], again[field], rtol=1e-6, atol=2 * level(first[field]))
        assert not np.allclose(first[field], other[field])


def test_a_label_outside_num_classes_is_refused_before_any_work(tmp_path, detector, canvases) -> None:
    images, targets = canvases
    batch = ObjectDetectionBatch(Images(images[:4]), targets[:4], predictions=detector(torch.from_numpy(images[:4])))
    label = int(targets[1]["labels"][0])
    exporter = DRiseSaliencyObjectDetectionExporter(detector, num_classes=label, criterion=C.always())
    assert_rejected(exporter, batch, tmp_path / "labels",
                    rf"(targets|predictions)\[\d\]\.labels\[\d\]: label \d outside 0\.\.{label - 1}")


def test_an_image_with_nan_is_refused_before_any_work(tmp_path, detector, canvases) -> None:
    images, targets = canvases
    batch = ObjectDetectionBatch(Images(images[:4].copy()), targets[:4])
    batch.inputs.data[2, 0, 1, 1] = np.nan
    exporter = DRiseSaliencyObjectDetectionExporter(detector, num_classes=10, criterion=C.always())
    assert_rejected(exporter, batch, tmp_path / "nan", r"inputs\[2\]: contains NaN")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_classes": 0}, r"num_classes: got 0; expected a positive int"),
    ({"num_masks": 0}, r"num_masks: expected an int >= 1"),
    ({"batch_size": 0}, r"batch_size: expected an int >= 1"),
    ({"p": 0.0}, r"p: expected a probability"),
    ({"name": "d-rise"}, r"name: got 'd-rise'"),
    ({"model": "detector"}, r"model: got str; expected a callable detector"),
])
def test_bad_drise_settings_raise_naming_the_argument(detector, kwargs, match) -> None:
    options = {"model": detector, "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        DRiseSaliencyObjectDetectionExporter(**options)


def test_another_score_threshold_in_the_export_is_refused(tmp_path, detector, canvases) -> None:
    """predicted_objects comes from either exporter: one threshold keeps drise_pred_{k} on its box."""
    images, targets = canvases
    batch = ObjectDetectionBatch(Images(images[:4]), targets[:4], predictions=detector(torch.from_numpy(images[:4])))
    with ExportWriter(tmp_path / "t", {"name": "thresholds"}, fiftyone=False) as writer:
        ObjectDetectionExporter(score_threshold=0.3, criterion=C.always()).setup(writer=writer)
        exporter = DRiseSaliencyObjectDetectionExporter(detector, 10, criterion=C.always())
        exporter.setup(writer=writer)
        with pytest.raises(ValueError, match=r"score_threshold: 0\.5 here, 0\.3 in exporter 'object_detection'"):
            exporter.export(0, batch)
