"""ImageClassificationExporter and the Exporter base: selection, merging, indices, rejection.

Example: ``./dev test tests/test_export_classification.py -q``
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from armory_datasets import criteria as C
from armory_datasets.data import Images, ImageClassificationBatch
from armory_datasets.export import Exporter, ImageClassificationExporter
from armory_datasets.metrics import named_metric
from armory_datasets.store import ExportWriter, read_manifest, unified_schema

CLASS_NAMES = ["cat", "dog", "eel"]


def classification_batch(start: int, n: int, chain: str = "benign", indices: bool = True,
                         **changes: Any) -> ImageClassificationBatch:
    """Deterministic batch of ``n`` 6x6 RGB samples with global indices ``start..start+n``."""
    rng = np.random.default_rng(start + 100 * len(chain))
    fields: dict[str, Any] = dict(
        inputs=Images((rng.random((n, 3, 6, 6), dtype=np.float32) - 0.5) / 0.25, mean=0.5, std=0.25),
        targets=rng.integers(0, 3, n),
        predictions=rng.normal(size=(n, 3)).astype(np.float32),
        global_indices=np.arange(start, start + n) if indices else None,
        chain=chain,
        class_names=CLASS_NAMES,
        metadata={"file": [f"f{start + i}.png" for i in range(n)]},
        batch_metadata={"camera": "left"},
    )
    fields.update(changes)
    return ImageClassificationBatch(**fields)


def batches(total: int = 10, size: int = 4, chain: str = "benign", **changes: Any):
    return [classification_batch(s, min(size, total - s), chain, **changes)
            for s in range(0, total, size)]


def run(path, exporters, all_batches, **options) -> pa.Table:
    options.setdefault("fiftyone", False)
    with ExportWriter(path, {"name": "clf"}, **options) as writer:
        for exporter in exporters:
            exporter.setup(writer=writer)
        for batch_idx, batch in all_batches:
            for exporter in exporters:
                exporter.export(batch_idx, batch)
            writer.end_batch()
        for exporter in exporters:
            exporter.close()
    return read(path)


def read(path) -> pa.Table:
    table = ds.dataset(path / "table", schema=unified_schema(path / "table")).to_table()
    return table.sort_by([("chain", "ascending"), ("sample_index", "ascending")])


class MarkExporter(Exporter):
    """A second kind of exporter adding its own column (as saliency exporters do)."""

    batch_type = ImageClassificationBatch
    default_name = "mark"

    def task_fields(self, batch, positions):
        return {"mark": positions.astype(np.float64) + 0.5}


def test_exporters_with_different_criteria_give_one_record_each(tmp_path):
    wrong = ImageClassificationExporter(name="wrong", criterion=C.col("correct") == False)  # noqa: E712
    first = ImageClassificationExporter(name="first", criterion=C.first_n_samples(3))
    mark = MarkExporter(criterion=C.samples([2, 7]))
    data = [(i, b) for i, b in enumerate(batches())] + [(i, b) for i, b in enumerate(batches(chain="fgsm"))]
    table = run(tmp_path / "e", [wrong, first, mark], data)
    expected: dict[str, list[str]] = {}
    for _, batch in data:
        correct = batch.column("correct")
        for p, index in enumerate(batch.global_indices.tolist()):
            names = [n for n, chosen in (("wrong", not correct[p]), ("first", index < 3),
                                         ("mark", index in (2, 7))) if chosen]
            if names:
                expected[f"{batch.chain}/{index}"] = names
    rows = {r["record_key"]: r for r in table.to_pylist()}
    assert {k: r["exporters"] for k, r in rows.items()} == expected
    assert len(rows) == table.num_rows
    for key, row in rows.items():
        assert (row["mark"] is not None) == ("mark" in row["exporters"]), key
        only_mark = row["exporters"] == ["mark"]
        assert (row["target"] is None) == only_mark, key
        chain, index = key.split("/")
        assert row["image_path"] == f"media/images/{chain}/{int(index):08d}.png"
    manifest = read_manifest(tmp_path / "e")
    assert [(e["name"], e["criterion"]) for e in manifest["exporters"]] == [
        ("wrong", "correct == false"), ("first", "first_n_samples(3)"), ("mark", "samples([2, 7])")]
    assert manifest["class_names"] == CLASS_NAMES


def test_short_last_batch_gets_the_global_indices_of_its_samples(tmp_path):
    data = list(enumerate(batches(total=10, size=4)))
    assert len(data[-1][1]) == 2
    table = run(tmp_path / "e", [ImageClassificationExporter(criterion=C.first_n_samples(6))], data)
    assert table.column("sample_index").to_pylist() == [0, 1, 2, 3, 4, 5]
    assert table.column("batch").to_pylist() == [0, 0, 0, 0, 1, 1]
    assert table.column("position").to_pylist() == [0, 1, 2, 3, 0, 1]
    last = ImageClassificationExporter(criterion=C.always())
    table = run(tmp_path / "f", [last], [data[-1]])
    assert table.column("sample_index").to_pylist() == [8, 9]


def test_batches_without_global_indices_get_a_running_count_per_chain(tmp_path):
    data = list(enumerate(batches(total=10, size=4, indices=False)))
    data += list(enumerate(batches(total=10, size=4, chain="fgsm", indices=False)))
    table = run(tmp_path / "e", [ImageClassificationExporter(criterion=C.always())], data)
    assert table.column("sample_index").to_pylist() == list(range(10)) * 2
    exporter = ImageClassificationExporter(criterion=C.always())
    with ExportWriter(tmp_path / "g", {"name": "clf"}, fiftyone=False) as writer:
        exporter.setup(writer=writer)
        exporter.export(0, data[0][1])
        with pytest.raises(ValueError, match=r"batch_idx 2 is not the next batch \(1\)"):
            exporter.export(2, data[2][1])


def test_classification_columns(tmp_path):
    batch = classification_batch(0, 4, metrics={"brightness": np.arange(4.0)},
                                 perturbations={"noise": {"sigma": 0.25}})
    table = run(tmp_path / "e", [ImageClassificationExporter(criterion=C.always())], [(0, batch)])
    probabilities = batch.probabilities()
    assert table.column("target").to_pylist() == batch.targets.tolist()
    assert table.column("prediction").to_pylist() == probabilities.argmax(1).tolist()
    assert np.allclose(table.column("confidence").to_pylist(), probabilities.max(1))
    assert table.column("correct").to_pylist() == (probabilities.argmax(1) == batch.targets).tolist()
    assert np.allclose(table.column("probabilities").to_pylist(), probabilities, atol=1e-7)
    assert np.array_equal(table.column("logits").to_pylist(), batch.predictions)
    assert table.column("brightness").to_pylist() == [0.0, 1.0, 2.0, 3.0]
    assert table.column("noise_sigma").to_pylist() == [0.25] * 4
    assert table.column("camera").to_pylist() == ["left"] * 4
    assert table.column("file").to_pylist() == [f"f{i}.png" for i in range(4)]
    probs = classification_batch(0, 2, predictions=np.full((2, 3), 1 / 3), prediction_kind="probabilities")
    table = run(tmp_path / "p", [ImageClassificationExporter(criterion=C.always())], [(0, probs)])
    assert table.column("logits").to_pylist() == [None, None]


def test_the_criterions_named_metrics_are_recorded(tmp_path):
    brightness = named_metric("brightness", lambda b: b.inputs.to_uint8_hwc().mean(axis=(1, 2, 3)))
    exporter = ImageClassificationExporter(criterion=C.when_metric_gt(brightness, 0.0))
    batch = classification_batch(0, 3)
    table = run(tmp_path / "e", [exporter], [(0, batch)])
    assert np.allclose(table.column("brightness").to_pylist(), brightness(batch))


def test_no_criterion_exports_nothing_and_upstream_functions_work(tmp_path):
    data = list(enumerate(batches()))
    table = run(tmp_path / "e", [ImageClassificationExporter()], data)
    assert table.num_rows == 0 and read_manifest(tmp_path / "e")["counts"]["records"] == 0

    def odd_positions(batch_idx, batch):
        return [p for p in range(len(batch)) if p % 2]

    table = run(tmp_path / "f", [ImageClassificationExporter(criterion=odd_positions)], data)
    assert table.column("sample_index").to_pylist() == [1, 3, 5, 7, 9]


def bad_batches():
    def mutated(change):
        batch = classification_batch(0, 3)
        change(batch)
        return batch

    yield mutated(lambda b: b.targets.__setitem__(1, 7)), r"targets\[1\]: label 7 out of range"
    yield mutated(lambda b: b.metadata.__setitem__("file", np.array(["a"]))), \
        r"metadata\['file'\]: got 1 values; expected 3"
    yield mutated(lambda b: b.predictions.__setitem__((2, 0), np.nan)), r"predictions\[2\]: contains NaN"
    yield mutated(lambda b: b.metrics.__setitem__("m", np.zeros(2))), r"metrics\['m'\]: got shape \(2,\)"
    yield mutated(lambda b: setattr(b, "chain", "a/b")), r"chain: got 'a/b'"
    yield mutated(lambda b: b.metadata.__setitem__("when", np.array(["2020-01-01"] * 3, "M8[D]"))), \
        r"column 'when'.*expected bools, integers"


@pytest.mark.parametrize("batch, message", list(bad_batches()))
def test_bad_batches_are_rejected_before_anything_is_written(tmp_path, batch, message):
    with pytest.raises(ValueError, match=message):
        with ImageClassificationExporter(criterion=C.always(), export_dir=tmp_path / "e") as e:
            e.export(0, batch)
    assert not (tmp_path / "e").exists()


def test_wrong_batch_kind_and_missing_setup_are_errors(tmp_path):
    from armory_datasets.data import ObjectDetectionBatch

    detection = ObjectDetectionBatch(Images(np.zeros((1, 3, 4, 4), np.uint8)),
                                     targets=[{"boxes": [], "labels": []}])
    with pytest.raises(ValueError, match="batch: got ObjectDetectionBatch; expected ImageClassificationBatch"):
        with ImageClassificationExporter(criterion=C.always(), export_dir=tmp_path / "e") as e:
            e.export(0, detection)
    with pytest.raises(RuntimeError, match="before setup"):
        ImageClassificationExporter(criterion=C.always()).export(0, classification_batch(0, 1))
    assert not (tmp_path / "e").exists()


def test_standalone_exporter_writes_a_complete_export(tmp_path):
    with ImageClassificationExporter(criterion=C.always(), export_dir=tmp_path / "e") as e:
        for i, batch in enumerate(batches(total=6)):
            e.export(i, batch)
    manifest = read_manifest(tmp_path / "e")
    assert manifest["status"] == "complete" and manifest["counts"]["records"] == 6
    assert manifest["evaluation"]["name"] == "e"
