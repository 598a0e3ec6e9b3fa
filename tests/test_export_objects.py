"""Object-level detection exports: per-box COCO matches, the objects table, run-level AP,
the FiftyOne eval fields, and their paths (own loop, resume, several writers, repair).

The reference is pycocotools' COCOeval, run on the boxes as the export stores them.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import armory_datasets
from armory_datasets.criteria import always, parse
from armory_datasets.data import Images, ObjectDetectionBatch, Objects
from armory_datasets.export import ObjectDetectionExporter
from armory_datasets.store import ExportWriter
from armory_datasets.store.commit import commit_export
from armory_datasets.verify import verify_export
from coco_reference import coco_ap, coco_eval, coco_matches

H, W, NUM_CLASSES = 96, 96, 4
CLASS_NAMES = ["zero", "one", "two", "three"]


def random_images(seed: int, n: int, crowd: bool = False) -> list[dict]:
    """Random ground truth, jittered copies (often several per box, some relabelled) and
    clutter, scores on a coarse grid (ties), boxes inside a WxH image."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        g = int(rng.integers(0, 8))
        xy = rng.uniform(0, 60, size=(g, 2))
        gt = np.hstack([xy, xy + rng.uniform(3, 30, size=(g, 2))])
        gt_labels = rng.integers(0, NUM_CLASSES, size=g)
        copies = rng.integers(0, g, size=int(rng.integers(0, 10))) if g else np.zeros(0, int)
        near = np.clip(gt[copies] + rng.normal(0, 3, size=(len(copies), 4)), 0, W) if g else np.zeros((0, 4))
        near = np.hstack([np.minimum(near[:, :2], near[:, 2:] - 0.5), np.maximum(near[:, 2:], near[:, :2] + 0.5)])
        c = int(rng.integers(0, 4))
        cxy = rng.uniform(0, 60, size=(c, 2))
        pred = np.clip(np.vstack([near, np.hstack([cxy, cxy + rng.uniform(3, 30, size=(c, 2))])]), 0, W)
        labels = np.concatenate([np.where(rng.random(len(copies)) < 0.2, rng.integers(0, NUM_CLASSES, len(copies)),
                                          gt_labels[copies] if g else 0),
                                 rng.integers(0, NUM_CLASSES, size=c)]).astype(np.int64)
        images.append({"gt_boxes": gt, "gt_labels": gt_labels,
                       "gt_crowd": (rng.random(g) < 0.15) if crowd else np.zeros(g, bool),
                       "pred_boxes": pred, "pred_labels": labels,
                       "pred_scores": np.round(rng.uniform(0.05, 1, size=len(pred)), 1)})
    return images


def batches_of(images: list[dict], sizes: list[int], chain: str = "benign", crowd: bool = False,
               start: int = 0) -> list[ObjectDetectionBatch]:
    """The images as batches of ``sizes`` (no global_indices: the exporter counts)."""
    out, at = [], start
    rng = np.random.default_rng(0)
    for size in sizes:
        part = images[at:at + size]
        at += size
        out.append(ObjectDetectionBatch(
            Images(rng.integers(0, 255, size=(len(part), 1, H, W), dtype=np.uint8)),
            [Objects(i["gt_boxes"], i["gt_labels"], iscrowd=i["gt_crowd"] if crowd else None) for i in part],
            [Objects(i["pred_boxes"], i["pred_labels"], i["pred_scores"]) for i in part],
            chain=chain, class_names=CLASS_NAMES))
    return out


def own_loop(export_dir: Path, batches: list[ObjectDetectionBatch], fiftyone: bool = False,
             criterion=None, **exporter_options) -> ObjectDetectionExporter:
    with ExportWriter(export_dir, {"name": "objects"}, fiftyone=fiftyone) as writer:
        exporter = ObjectDetectionExporter(criterion=criterion or always(), **exporter_options)
        exporter.setup(writer=writer)
        for batch_idx, batch in enumerate(batches):
            exporter.export(batch_idx, batch)
            writer.end_batch()
        exporter.close()
    return exporter


def stored_images(export_dir: Path) -> list[dict]:
    """The export's own boxes, by sample index, in COCO-reference form."""
    rows = sorted(armory_datasets.open_export(export_dir).table(columns=[
        "sample_index", "ground_truth_objects", "predicted_objects", "tp", "fp", "fn"]).to_pylist(),
        key=lambda r: r["sample_index"])

    def arrays(objects):
        boxes = np.array([[o["x_min"], o["y_min"], o["x_max"], o["y_max"]] for o in objects]).reshape(-1, 4)
        return boxes, np.array([o["label"] for o in objects], dtype=np.int64)

    out = []
    for row in rows:
        gb, gl = arrays(row["ground_truth_objects"])
        pb, pl = arrays(row["predicted_objects"])
        out.append({"gt_boxes": gb, "gt_labels": gl,
                    "gt_crowd": np.array([o["match"] == "ignored" for o in row["ground_truth_objects"]], bool),
                    "pred_boxes": pb, "pred_labels": pl,
                    "pred_scores": np.array([o["score"] for o in row["predicted_objects"]]), "row": row})
    return out


@pytest.fixture(scope="module")
def random_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("random")
    images = random_images(7, 210, crowd=True)
    own_loop(root / "e", batches_of(images, [64, 64, 64, 18], crowd=True), score_threshold=0.0)
    return root / "e"


@pytest.mark.parametrize("crowd", [True])
def test_tp_fp_and_ap_equal_cocoeval_on_the_export(random_export, crowd):
    images = stored_images(random_export)
    assert len(images) == 210 and sum(int(i["gt_crowd"].sum()) for i in images) > 20
    reference = coco_eval(images, NUM_CLASSES)
    matched_boxes = 0
    for i, image in enumerate(images):
        row = image["row"]
        expected = coco_matches(reference, i)
        for k, box in enumerate(row["predicted_objects"]):
            gt_index, ignored = expected[k]
            if ignored[0]:
                assert box["match"] == "ignored"
            elif gt_index[0] >= 0:
                matched_boxes += 1
                assert (box["match"], box["matched_index"]) == ("tp", gt_index[0]), (i, k)
                partner = row["ground_truth_objects"][box["matched_index"]]
                assert (partner["match"], partner["matched_index"]) == ("tp", k)
                assert box["iou"] == pytest.approx(partner["iou"]) and box["iou"] >= 0.5
            else:
                assert (box["match"], box["matched_index"], box["iou"]) == ("fp", None, None), (i, k)
        assert row["tp"] == sum(b["match"] == "tp" for b in row["predicted_objects"])
        assert row["fp"] == sum(b["match"] == "fp" for b in row["predicted_objects"])
        assert row["fn"] == sum(b["match"] == "fn" for b in row["ground_truth_objects"])
    assert matched_boxes > 150
    expected = coco_ap(reference)
    metrics = armory_datasets.open_export(random_export).manifest["metrics"]["object_detection"]["benign"]
    assert metrics["ap50"] == pytest.approx(expected["ap50"], abs=1e-6)
    assert metrics["map"] == pytest.approx(expected["map"], abs=1e-6)
    assert {CLASS_NAMES.index(k): v for k, v in metrics["ap50_per_class"].items()} == pytest.approx(
        expected["ap50_per_class"], abs=1e-6)


def test_objects_table_has_every_box_and_reads_in_pandas_pyarrow_duckdb(random_export):
    export = armory_datasets.open_export(random_export)
    boxes = export.sql("SELECT sum(len(ground_truth_objects)) + sum(len(predicted_objects)) FROM samples")
    total = boxes.column(0)[0].as_py()
    parts = sorted((random_export / "objects").glob("part-*.parquet"))
    assert [p.name for p in parts] == export.manifest["objects"]["parts"] and parts
    frame = pd.read_parquet(random_export / "objects")
    assert len(frame) == ds.dataset(random_export / "objects").count_rows() == total > 1000
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{random_export}/objects/*.parquet')").fetchall()[0][0] == total
    assert export.sql("SELECT count(*) AS n FROM objects").column("n")[0].as_py() == total
    # One row per box, at its index in its record's list, with the record's keys.
    table = export.table(columns=["record_key", "ground_truth_objects", "predicted_objects"]).to_pylist()
    by_key = {r["record_key"]: r for r in table}
    for row in frame.sample(200, random_state=0).itertuples():
        column = "ground_truth_objects" if row.kind == "gt" else "predicted_objects"
        box = by_key[row.record_key][column][row.index]
        assert (box["label"], box["x_min"], box["match"]) == (row.label, row.x_min, row.match)
        assert row.label_name == CLASS_NAMES[row.label]
        assert row.area == pytest.approx((box["x_max"] - box["x_min"]) * (box["y_max"] - box["y_min"]))


def test_only_repeated_strings_are_dictionary_encoded_in_every_parquet_file(random_export):
    """Chains, exporters, kinds, matches and label names repeat: dictionary pages. Keys,
    paths and numbers would only build a dictionary to drop it (slower, larger files)."""
    repeated = {"chain", "ground_truth_objects.list.element.match", "predicted_objects.list.element.match"}
    expected = {
        "table": repeated | {"export_id", "exporters.list.element"},
        "objects": {"chain", "export_id", "kind", "label_name", "match"},
        "media/images/metadata.parquet": repeated,
    }
    for folder, columns in expected.items():
        folder_path = random_export / folder
        paths = [folder_path] if folder.endswith(".parquet") else sorted(folder_path.glob("part-*"))
        assert paths
        for path in paths:
            meta = pq.ParquetFile(path).metadata
            encoded = {meta.schema.column(i).path for g in range(meta.num_row_groups) for i in range(meta.num_columns)
                       if "RLE_DICTIONARY" in meta.row_group(g).column(i).encodings}
            assert encoded == columns, path


@pytest.mark.parametrize("where", ['kind == "pred" & score > 0.8 & match == "fp"',
                                  'kind == "gt" & match == "fn" & label == 3',
                                  'iou >= 0.9 | (area < 50 & chains(["benign"]))'])
def test_objects_where_equals_pandas_and_duckdb(random_export, where):
    export = armory_datasets.open_export(random_export)
    frame = pd.read_parquet(random_export / "objects")
    expected = frame.query(where.replace("&", "and").replace("|", "or").replace(
        'chains(["benign"])', 'chain == "benign"').replace("==", "==").replace('"', "'"))
    found = export.objects(where).to_pandas()
    assert len(found) == len(expected) > 0
    assert sorted(zip(found.record_key, found.kind, found["index"])) == \
        sorted(zip(expected.record_key, expected.kind, expected["index"]))
    sql = export.sql(f"SELECT count(*) AS n FROM objects WHERE {parse(where).to_sql()}")
    assert sql.column("n")[0].as_py() == len(expected)


def test_objects_where_refuses_a_name_that_is_not_a_box_column(random_export):
    export = armory_datasets.open_export(random_export)
    with pytest.raises(ValueError, match="confidence"):
        export.objects("confidence > 0.5")


def test_fiftyone_has_the_eval_fields_and_filters_without_evaluate_detections(tmp_path):
    from armory_datasets.database import import_fiftyone

    fo = import_fiftyone()
    from fiftyone import ViewField as F

    images = random_images(3, 24)
    own_loop(tmp_path / "e", batches_of(images, [10, 10, 4]), fiftyone=True, score_threshold=0.3)
    export = armory_datasets.open_export(tmp_path / "e")
    dataset = fo.load_dataset(export.manifest["fiftyone"]["dataset"])
    fp_boxes = export.objects('kind == "pred" & match == "fp"').num_rows
    assert fp_boxes > 0
    declared = fo.load_dataset(dataset.name).get_field_schema(flat=True)  # as a fresh load sees it
    for label in ("ground_truth", "predictions"):
        for attribute, kind in (("class_index", fo.IntField), ("eval", fo.StringField),
                                ("eval_iou", fo.FloatField), ("eval_id", fo.StringField)):
            assert isinstance(declared[f"{label}.detections.{attribute}"], kind), (label, attribute)
    assert dataset.filter_labels("predictions", F("eval") == "fp").count("predictions.detections") == fp_boxes
    assert dataset.count_values("ground_truth.detections.eval") == {
        k: v for k, v in export.objects('kind == "gt"').to_pandas()["match"].value_counts().items()}
    assert sum(dataset.values("eval_tp")) == export.objects('kind == "pred" & match == "tp"').num_rows
    assert sum(dataset.values("eval_fn")) == export.objects('kind == "gt" & match == "fn"').num_rows
    sample = dataset.match(F("eval_tp") > 0).first()
    ids = {d.id: d for d in sample.ground_truth.detections}
    for detection in sample.predictions.detections:
        if detection.eval == "tp":
            partner = ids[detection.eval_id]
            assert partner.eval == "tp" and partner.eval_id == detection.id
            assert detection.eval_iou == pytest.approx(partner.eval_iou)


def test_exporter_iou_threshold_changes_matches_and_is_checked(tmp_path):
    images = random_images(5, 20)
    loose = own_loop(tmp_path / "loose", batches_of(images, [20]), iou_threshold=0.1, score_threshold=0)
    strict = own_loop(tmp_path / "strict", batches_of(images, [20]), iou_threshold=0.95, score_threshold=0)
    count = lambda d: armory_datasets.open_export(d).objects('match == "tp"').num_rows  # noqa: E731
    assert count(tmp_path / "loose") > count(tmp_path / "strict")
    # The run's AP is COCO's, whatever the exporter's own threshold.
    assert loose.run_metrics()["benign"]["map"] == strict.run_metrics()["benign"]["map"]
    for bad in (0, 0.0, 1.5, -0.1, "0.5", True, None, float("nan")):
        with pytest.raises(ValueError, match="iou_threshold"):
            ObjectDetectionExporter(iou_threshold=bad)
    assert not (tmp_path / "never").exists()


def test_label_outside_the_classes_is_refused_before_anything_is_written(tmp_path):
    images = random_images(5, 4)
    batch = batches_of(images, [4])[0]
    batch.predictions[0] = Objects([[1, 1, 5, 5]], [NUM_CLASSES], [0.9])
    with pytest.raises(ValueError, match=r"predictions\[0\].labels\[0\]: label 4 out of range; expected 0 <= label < 4"):
        own_loop(tmp_path / "e", [batch])
    assert not (tmp_path / "e").exists()


def test_edge_cases_empty_images_one_sided_classes_and_no_predictions(tmp_path):
    empty = {"gt_boxes": np.zeros((0, 4)), "gt_labels": np.zeros(0, np.int64), "gt_crowd": np.zeros(0, bool),
             "pred_boxes": np.zeros((0, 4)), "pred_labels": np.zeros(0, np.int64), "pred_scores": np.zeros(0)}
    only_gt = {**empty, "gt_boxes": np.array([[1., 1, 9, 9]]), "gt_labels": np.array([2])}
    only_pred = {**empty, "pred_boxes": np.array([[1., 1, 9, 9]]), "pred_labels": np.array([1]),
                 "pred_scores": np.array([0.9])}
    # Two predictions on one box, equal scores: the first in box order takes it.
    twice = {**only_gt, "pred_boxes": np.array([[1., 1, 9, 9], [1., 1, 9, 9]]), "pred_labels": np.array([2, 2]),
             "pred_scores": np.array([0.7, 0.7])}
    own_loop(tmp_path / "e", batches_of([empty, only_gt, only_pred, twice], [3, 1]), score_threshold=0)
    rows = {r["sample_index"]: r for r in armory_datasets.open_export(tmp_path / "e").table().to_pylist()}
    assert (rows[0]["tp"], rows[0]["fp"], rows[0]["fn"]) == (0, 0, 0)
    assert rows[0]["ground_truth_objects"] == [] and rows[0]["predicted_objects"] == []
    assert (rows[1]["tp"], rows[1]["fp"], rows[1]["fn"]) == (0, 0, 1)
    assert (rows[2]["tp"], rows[2]["fp"], rows[2]["fn"]) == (0, 1, 0)
    assert [b["match"] for b in rows[3]["predicted_objects"]] == ["tp", "fp"]
    assert rows[3]["ground_truth_objects"][0]["matched_index"] == 0
    metrics = armory_datasets.open_export(tmp_path / "e").manifest["metrics"]["object_detection"]["benign"]
    assert set(metrics["ap50_per_class"]) == {"two"}  # class 1 has predictions only: no AP, as COCO
    # Without predictions there is nothing to count: tp/fp are null, fn too.
    no_predictions = ObjectDetectionBatch(Images(np.zeros((1, 1, H, W), np.uint8)),
                                          [Objects([[1, 1, 5, 5]], [0])], None)
    own_loop(tmp_path / "gt-only", [no_predictions])
    row = armory_datasets.open_export(tmp_path / "gt-only").table().to_pylist()[0]
    assert row["ground_truth_objects"][0]["match"] == "fn" and row["tp"] is None


def test_resumed_and_multi_writer_exports_hold_the_same_objects_and_run_metrics(tmp_path):
    images = random_images(11, 40)
    one = own_loop(tmp_path / "one", batches_of(images, [8] * 5), score_threshold=0.2)
    expected = armory_datasets.open_export(tmp_path / "one")
    # Interrupted after two batches, then resumed (the exporter sees every batch again).
    batches = batches_of(images, [8] * 5)
    writer = ExportWriter(tmp_path / "resumed", {"name": "objects"}, fiftyone=False, rows_per_part=8)
    exporter = ObjectDetectionExporter(criterion=always(), score_threshold=0.2)
    exporter.setup(writer=writer)
    for batch_idx, batch in enumerate(batches[:2]):
        exporter.export(batch_idx, batch)
        writer.end_batch()
    writer.abort()
    own_loop(tmp_path / "resumed", batches_of(images, [8] * 5), score_threshold=0.2)
    # Two writers, one shard each, then one commit.
    for rank in (0, 1):
        with ExportWriter(tmp_path / "multi", {"name": "objects"}, fiftyone=False, writer_id=f"rank{rank}") as w:
            e = ObjectDetectionExporter(criterion=always(), score_threshold=0.2)
            e.setup(writer=w)
            for batch_idx, batch in enumerate(batches_of(images, [8] * 5)):
                if batch_idx % 2 == rank:
                    e.export(batch_idx, ObjectDetectionBatch(**{**batch.__dict__, "global_indices": np.arange(8) + 8 * batch_idx}))
                    w.end_batch()
            e.close()
    commit_export(tmp_path / "multi")
    key = ["record_key", "kind", "index"]
    reference = expected.objects().to_pandas().sort_values(key).reset_index(drop=True)
    for name in ("resumed", "multi"):
        export = armory_datasets.open_export(tmp_path / name)
        found = export.objects().to_pandas().sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(found.drop(columns="export_id"), reference.drop(columns="export_id"))
        metrics = export.manifest["metrics"]["object_detection"]["benign"]
        assert metrics["map"] == pytest.approx(one.run_metrics()["benign"]["map"], abs=1e-12), name
        assert metrics["ap50_per_class"] == pytest.approx(one.run_metrics()["benign"]["ap50_per_class"], abs=1e-12)
        assert verify_export(tmp_path / name).ok, name


def test_verify_finds_a_lost_or_damaged_objects_part_and_repair_derives_it(tmp_path):
    own_loop(tmp_path / "e", batches_of(random_images(2, 30), [10, 10, 10]))
    export_dir = tmp_path / "e"
    expected = armory_datasets.open_export(export_dir).objects().num_rows
    part = sorted((export_dir / "objects").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    (export_dir / "objects" / "part-99999.parquet").write_bytes(b"stray")
    report = verify_export(export_dir)
    assert not report.ok and {p.path for p in report.problems} >= {
        f"objects/{part.name}", "objects/part-99999.parquet"}
    assert verify_export(export_dir, repair=True).repaired
    assert verify_export(export_dir).ok
    assert armory_datasets.open_export(export_dir).objects().num_rows == expected
    assert (export_dir / "quarantine" / "objects" / part.name).exists()
    part.unlink()
    assert f"objects/{part.name}" in {p.path for p in verify_export(export_dir).problems}


def test_an_export_without_the_objects_table_still_reads_its_objects(tmp_path):
    """A version-1 manifest (written before the objects table): objects are derived in memory."""
    own_loop(tmp_path / "e", batches_of(random_images(4, 12), [12]))
    export_dir = tmp_path / "e"
    expected = armory_datasets.open_export(export_dir).objects().to_pandas()
    manifest = json.loads((export_dir / "manifest.json").read_text())
    for key in ("objects", "metrics"):
        del manifest[key]
    manifest["manifest_version"] = 1
    (export_dir / "manifest.json").write_text(json.dumps(manifest))
    old = armory_datasets.open_export(export_dir)
    pd.testing.assert_frame_equal(old.objects().to_pandas(), expected)  # the same rows, in the same order
    assert old.sql("SELECT count(*) AS n FROM objects").column("n")[0].as_py() == len(expected)
    manifest["manifest_version"] = 3
    (export_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="manifest_version 3 is not supported"):
        armory_datasets.open_export(export_dir)


def test_a_classification_export_has_an_empty_objects_table(tmp_path):
    from armory_datasets.demo.tiny import tiny_export

    export = armory_datasets.open_export(tiny_export(tmp_path / "c"))
    assert export.manifest["objects"]["parts"] == [] and export.objects().num_rows == 0
    assert export.sql("SELECT count(*) AS n FROM objects").column("n")[0].as_py() == 0


def test_the_digits_detectors_export_equals_cocoeval(tmp_path):
    """The real detector of the demo (trained here, ~2 s) on held-out canvases."""
    import torch

    from armory_datasets.demo.digits import CLASS_NAMES as DIGITS, make_detection_canvases, train_detector

    torch.set_num_threads(1)
    detector = train_detector(seed=0, n_canvases=100)
    images, targets = make_detection_canvases(40, seed=3, split="test")
    with torch.no_grad():
        outputs = detector(torch.from_numpy(images))
    batches = [ObjectDetectionBatch(
        Images(images[i:i + 16], scale="float"),
        [Objects(t["boxes"], t["labels"]) for t in targets[i:i + 16]],
        [Objects(o["boxes"], o["labels"], o["scores"]) for o in outputs[i:i + 16]], class_names=DIGITS)
        for i in range(0, 40, 16)]
    own_loop(tmp_path / "digits", batches, score_threshold=0.0)
    stored = stored_images(tmp_path / "digits")
    reference = coco_eval(stored, len(DIGITS))
    metrics = armory_datasets.open_export(tmp_path / "digits").manifest["metrics"]["object_detection"]["benign"]
    expected = coco_ap(reference)
    assert 0.3 < metrics["map"] == pytest.approx(expected["map"], abs=1e-6)
    assert metrics["ap50"] == pytest.approx(expected["ap50"], abs=1e-6)
    for i, image in enumerate(stored):
        matches = coco_matches(reference, i)
        for k, box in enumerate(image["row"]["predicted_objects"]):
            gt_index = matches[k][0][0]
            assert (box["match"], box["matched_index"]) == (("tp", gt_index) if gt_index >= 0 else ("fp", None))


@pytest.mark.parametrize("text", ['any(predicted_objects, score > 0.8 & match == "fp")',
                                  'count(ground_truth_objects, match == "fn") >= 2 & sample_index < 150',
                                  'all(ground_truth_objects, match == "tp")'])
def test_object_criteria_select_records_in_table_count_and_export_sets(random_export, text):
    from armory_datasets.reading_many import open_exports

    export = armory_datasets.open_export(random_export)
    rows = export.table(columns=["record_key", "sample_index", "ground_truth_objects", "predicted_objects"]).to_pylist()
    hand = {
        0: lambda r: any(b["score"] > 0.8 and b["match"] == "fp" for b in r["predicted_objects"]),
        1: lambda r: sum(b["match"] == "fn" for b in r["ground_truth_objects"]) >= 2 and r["sample_index"] < 150,
        2: lambda r: all(b["match"] == "tp" for b in r["ground_truth_objects"]),
    }[["any(", "count(", "all("].index(text[:text.index("(") + 1])]
    expected = sorted(r["record_key"] for r in rows if hand(r))
    assert 0 < len(expected) < len(rows)
    assert sorted(export.table(text, columns=["record_key"]).column(0).to_pylist()) == expected
    assert export.count(text) == len(expected) == len(export.to_pandas(text))
    duck = export.sql(f"SELECT count(*) AS n FROM samples WHERE {parse(text).to_sql()}")
    assert duck.column("n")[0].as_py() == len(expected)
    assert open_exports([random_export]).count(text) == len(expected)
