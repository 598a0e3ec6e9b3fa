"""The examples run end to end (quick configuration) and export what a user relies on.

Example: ``./dev test tests/test_examples.py -q``
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import armory_datasets
from armory_datasets.criteria import parse
from armory_datasets.database import import_fiftyone
from armory_datasets.engine import EvaluationResult

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def load_example(name: str) -> ModuleType:
    """Import ``examples/{name}.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def classification(tmp_path_factory: pytest.TempPathFactory) -> EvaluationResult:
    export_dir = tmp_path_factory.mktemp("examples") / "digits-classification"
    return load_example("digits_classification").main(export_dir=export_dir, quiet=True, quick=True)


@pytest.fixture(scope="module")
def detection(tmp_path_factory: pytest.TempPathFactory) -> EvaluationResult:
    export_dir = tmp_path_factory.mktemp("examples") / "digits-detection"
    return load_example("digits_detection").main(export_dir=export_dir, quiet=True, quick=True)


def test_classification_exports_both_chains_with_shared_samples(classification: EvaluationResult) -> None:
    export = armory_datasets.open_export(classification.export_dir)
    assert export.status == "complete" and (classification.export_dir / "manifest.json").is_file()
    assert classification.counts == {"benign": 160, "fgsm": 160}
    records = export.to_pandas(columns=["chain", "batch", "sample_index", "exporters", "image_path"])
    assert sorted(records.chain.unique()) == ["benign", "fgsm"]
    sampled = records[records.exporters.map(lambda names: "every_n_batches" in names)]
    by_chain = {chain: set(group.sample_index) for chain, group in sampled.groupby("chain")}
    assert by_chain["benign"] == by_chain["fgsm"] == set(range(64, 80)) | set(range(144, 160))
    assert set(sampled.batch) == {4, 9}
    assert all((classification.export_dir / path).is_file() for path in records.image_path)


def test_classification_exports_every_misclassified_sample(classification: EvaluationResult) -> None:
    export = armory_datasets.open_export(classification.export_dir)
    wrong = export.to_pandas(where="~correct", columns=["chain", "exporters"])
    for chain, count in classification.counts.items():
        misclassified = round(count * (1 - classification.metrics[chain]["accuracy"]))
        assert (wrong.chain == chain).sum() == misclassified
    assert wrong.exporters.map(lambda names: "misclassified" in names).all()
    assert classification.metrics["fgsm"]["accuracy"] < classification.metrics["benign"]["accuracy"]


def test_classification_fiftyone_dataset_matches_the_table(classification: EvaluationResult) -> None:
    export = armory_datasets.open_export(classification.export_dir)
    dataset = import_fiftyone().load_dataset(classification.dataset_name)
    assert len(dataset) == export.count()
    misclassified = parse("~correct")
    assert dataset.match(misclassified.to_fiftyone()).count() == export.count(misclassified)


def test_classification_saliency_maps_of_the_sampled_sixes_and_threes(classification: EvaluationResult) -> None:
    export = armory_datasets.open_export(classification.export_dir)
    fields = ["captum_saliency", "captum_ig", "captum_gradcam", "xaitk_slidingwindow_6", "xaitk_slidingwindow_3"]
    records = export.to_pandas(columns=["record_key", "target", "exporters", *[f"{f}_path" for f in fields]])
    explained = records.exporters.map(lambda names: "every_n_batches" in names) & records.target.isin([6, 3])
    assert explained.sum() >= 4
    for field in fields:
        assert (records[f"{field}_path"].notna() == explained).all(), field
        assert all((classification.export_dir / path).is_file() for path in records[f"{field}_path"][explained])
    dataset = import_fiftyone().load_dataset(classification.dataset_name)
    assert dataset.exists("captum_ig").count() == explained.sum()
    sample = dataset.exists("captum_ig").first()
    path = records.set_index("record_key").captum_ig_path[sample.record_key]
    assert sample["captum_ig"].map_path == str(classification.export_dir.resolve() / path)
    assert sample["captum_ig"].get_map().dtype == np.uint16  # the 16-bit PNG the App draws


def test_detection_exports_boxes_and_per_image_metrics(detection: EvaluationResult) -> None:
    export = armory_datasets.open_export(detection.export_dir)
    assert detection.counts == {"benign": 16, "fgsm": 16}
    records = export.to_pandas(columns=["chain", "batch", "fn", "width", "height",
                                        "ground_truth_objects", "predicted_objects"])
    assert sorted(records.chain.unique()) == ["benign", "fgsm"]
    assert set(zip(records.width, records.height)) == {(96, 64)}
    assert records.ground_truth_objects.map(len).min() >= 1
    assert records.predicted_objects.map(len).sum() > 0
    dataset = import_fiftyone().load_dataset(detection.dataset_name)
    assert len(dataset) == len(records)
    assert dataset.count("ground_truth.detections") == records.ground_truth_objects.map(len).sum()
    assert dataset.count("predictions.detections") == records.predicted_objects.map(len).sum()
    # The attack works: it costs AP (the run's COCO figures, in the result and the manifest).
    assert detection.metrics["fgsm"]["map"] < detection.metrics["benign"]["map"]
    assert export.manifest["metrics"]["object_detection"]["fgsm"]["map"] == detection.metrics["fgsm"]["map"]


def _hand_counts(export) -> dict[str, int]:
    """The example's object criteria evaluated by hand, box by box, over every record."""
    rows = export.table(columns=["chain", "fn", "ground_truth_objects", "predicted_objects"]).to_pylist()
    return {
        "missed digit": sum(r["fn"] > 0 for r in rows),
        "fp above 0.8 under attack": sum(r["chain"] == "fgsm" and any(
            b["score"] > 0.8 and b["match"] == "fp" for b in r["predicted_objects"]) for r in rows),
        "a missed 3": sum(sum(b["label"] == 3 and b["match"] == "fn" for b in r["ground_truth_objects"]) >= 1
                          for r in rows),
        "every digit found": sum(all(b["match"] == "tp" for b in r["ground_truth_objects"]) for r in rows),
    }


def test_detection_object_criteria_agree_with_hand_counts_in_every_backend(detection: EvaluationResult) -> None:
    module = load_example("digits_detection")
    export = armory_datasets.open_export(detection.export_dir)
    hand = _hand_counts(export)
    rows = export.table(columns=["chain", "fn", "predicted_objects"]).to_pylist()
    # Every exported record satisfies the export-time criterion.
    assert all(r["fn"] > 0 or (r["chain"] == "fgsm" and any(b["score"] > 0.8 and b["match"] == "fp"
                                                            for b in r["predicted_objects"])) for r in rows)
    assert hand["missed digit"] > 0 and hand["fp above 0.8 under attack"] > 0
    dataset = import_fiftyone().load_dataset(detection.dataset_name)
    for name, criterion in module.OBJECT_QUERIES.items():
        duck = export.sql(f"SELECT count(*) AS n FROM samples WHERE {criterion.to_sql()}").column("n")[0].as_py()
        assert export.count(criterion) == duck == dataset.match(criterion.to_fiftyone()).count() == hand[name], name
    fp_boxes = export.objects('kind == "pred" & match == "fp" & score > 0.8').num_rows
    assert fp_boxes == sum(b["score"] > 0.8 and b["match"] == "fp" for r in rows for b in r["predicted_objects"])


def test_detection_drise_maps_of_every_box_of_benign_images_with_a_miss(detection: EvaluationResult) -> None:
    export = armory_datasets.open_export(detection.export_dir)
    records = export.to_pandas(columns=["record_key", "chain", "recall", "num_targets", "num_predictions",
                                        "drise_boxes"])
    explained = (records.chain == "benign") & (records.recall < 1)
    assert explained.sum() > 0 and (records.drise_boxes.notna() == explained).all()
    boxes = records.drise_boxes[explained]
    assert (boxes.map(len) == (records.num_targets + records.num_predictions)[explained]).all()
    assert all((detection.export_dir / box["path"]).is_file() for entries in boxes for box in entries)
    dataset = import_fiftyone().load_dataset(detection.dataset_name)
    for sample in dataset.match(parse("chain == 'benign' & recall < 1").to_fiftyone()):
        for k, _ in enumerate(sample.ground_truth.detections):
            entry = next(e for e in sample["drise_boxes"] if e["field"] == f"drise_gt_{k}")
            assert sample[f"drise_gt_{k}"].map_path == str(detection.export_dir.resolve() / entry["path"])


def test_script_runs_and_a_rerun_replaces_its_export(tmp_path: Path) -> None:
    export_dir = tmp_path / "digits-classification"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "examples/digits_classification.py", "--quick", "--export-dir", str(export_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Exported " in done.stdout and f"armory-datasets app {export_dir}" in done.stdout
    first = armory_datasets.open_export(export_dir).manifest

    again = load_example("digits_classification").main(export_dir=export_dir, quiet=True, quick=True)
    second = armory_datasets.open_export(export_dir).manifest
    assert second["status"] == "complete" and second["export_id"] != first["export_id"]
    assert first["fiftyone"]["dataset"] not in import_fiftyone().list_datasets()
    assert len(import_fiftyone().load_dataset(again.dataset_name)) == second["counts"]["records"]
