"""ObjectDetectionExporter: pixel xyxy boxes in Parquet, relative xywh in FiftyOne, metrics.

Example: ``./dev test tests/test_export_detection.py -q``
"""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds
import pytest

from armory_datasets import criteria as C
from armory_datasets import metrics
from armory_datasets.data import Images, ObjectDetectionBatch, Objects
from armory_datasets.database import import_fiftyone
from armory_datasets.export import ObjectDetectionExporter
from armory_datasets.store import ExportWriter, unified_schema

WIDTH, HEIGHT = 37, 23  # not square, so swapped axes would show


def random_objects(rng: np.random.Generator, k: int, scores: bool) -> Objects:
    x = np.sort(rng.uniform(0, WIDTH, (k, 2)), axis=1)
    y = np.sort(rng.uniform(0, HEIGHT, (k, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    return Objects(boxes, rng.integers(0, 2, k), rng.uniform(0, 1, k) if scores else None)


def detection_batch(start: int, n: int, seed: int = 0) -> ObjectDetectionBatch:
    rng = np.random.default_rng(seed + start)
    return ObjectDetectionBatch(
        Images(rng.integers(0, 256, (n, HEIGHT, WIDTH, 3), dtype=np.uint8), layout="HWC"),
        targets=[random_objects(rng, int(rng.integers(0, 4)), False) for _ in range(n)],
        predictions=[random_objects(rng, int(rng.integers(0, 5)), True) for _ in range(n)],
        global_indices=np.arange(start, start + n),
        class_names=["car", "person"],
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("detection") / "e"
    data = [detection_batch(s, 3) for s in (0, 3, 6)]
    with ExportWriter(path, {"name": "det"}) as writer:
        exporter = ObjectDetectionExporter(score_threshold=0.4, criterion=C.always())
        exporter.setup(writer=writer)
        for i, batch in enumerate(data):
            exporter.export(i, batch)
            writer.end_batch()
    table = ds.dataset(path / "table", schema=unified_schema(path / "table")).to_table()
    return path, data, table.sort_by("sample_index"), writer.manifest


def test_boxes_are_pixel_xyxy_in_parquet_with_metrics_at_the_threshold(exported):
    _, data, table, manifest = exported
    rows = table.to_pylist()
    samples = [(b, p) for b in data for p in range(len(b))]
    assert len(rows) == len(samples) == 9
    for row, (batch, p) in zip(rows, samples):
        truth, predicted = batch.targets[p], batch.predictions[p].above(0.4)
        assert [[o["x_min"], o["y_min"], o["x_max"], o["y_max"]] for o in row["ground_truth_objects"]] \
            == truth.boxes.tolist()
        assert [o["label"] for o in row["ground_truth_objects"]] == truth.labels.tolist()
        assert all(o["score"] is None for o in row["ground_truth_objects"])
        assert [o["score"] for o in row["predicted_objects"]] == predicted.scores.tolist()
        assert (row["width"], row["height"]) == (WIDTH, HEIGHT)
        assert row["num_targets"] == len(truth) and row["num_predictions"] == len(predicted)
        for metric in (metrics.MeanIoU(score_threshold=0.4), metrics.Precision(score_threshold=0.4),
                       metrics.Recall(score_threshold=0.4)):
            value = metric(batch)[p]
            assert (row[metric.name] is None) if np.isnan(value) else row[metric.name] == value
    assert manifest["exporters"][0]["params"] == {"score_threshold": 0.4, "iou_threshold": 0.5}


def test_boxes_round_trip_through_fiftyone_relative_xywh(exported):
    path, data, table, manifest = exported
    fo = import_fiftyone()
    dataset = fo.load_dataset(manifest["fiftyone"]["dataset"])
    by_key = {s.record_key: s for s in dataset}
    assert sorted(by_key) == sorted(table.column("record_key").to_pylist())
    for row in table.to_pylist():
        sample = by_key[row["record_key"]]
        for column, field in (("ground_truth_objects", "ground_truth"), ("predicted_objects", "predictions")):
            detections = sample[field].detections
            assert len(detections) == len(row[column])
            for obj, det in zip(row[column], detections):
                x, y, w, h = det.bounding_box
                back = [x * WIDTH, y * HEIGHT, (x + w) * WIDTH, (y + h) * HEIGHT]
                assert np.abs(np.subtract(back, [obj["x_min"], obj["y_min"], obj["x_max"], obj["y_max"]])).max() < 1e-6
                assert det.class_index == obj["label"]
                assert det.label == ["car", "person"][obj["label"]]
                assert det.confidence == obj["score"]
    assert dataset.get_field("ground_truth.detections.class_index") is not None
    predicted = C.col("num_predictions") > 1
    expected = sorted(r["record_key"] for r in table.to_pylist() if r["num_predictions"] > 1)
    assert sorted(dataset.match(predicted.to_fiftyone()).values("record_key")) == expected
