"""The FiftyOne dataset built from an export directory: same records, vocabulary paths, rebuilds.

Example: ``./dev test tests/test_store_fiftyone.py -q``
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from PIL import Image

from armory_datasets import criteria as C
from armory_datasets.data import Images, ImageClassificationBatch
from armory_datasets.database import import_fiftyone
from armory_datasets.export import ImageClassificationExporter
from armory_datasets.schema import VOCABULARY
from armory_datasets.store.media import HEATMAP_LEVELS, read_heatmap
from armory_datasets.store import BY_SAMPLE_VIEW, ExportWriter, build_fiftyone_dataset, read_manifest, unified_schema


def batch(start: int, n: int, chain: str) -> ImageClassificationBatch:
    rng = np.random.default_rng(start + 7 * len(chain))
    return ImageClassificationBatch(
        Images(rng.integers(0, 256, (n, 5, 7, 3), dtype=np.uint8), layout="HWC"),
        targets=rng.integers(0, 3, n), predictions=rng.normal(size=(n, 3)),
        global_indices=np.arange(start, start + n), chain=chain, class_names=["a", "b", "c"],
        metadata={"weight": rng.random(n)},
        perturbations={"fgsm": {"epsilon": 0.03}} if chain == "fgsm" else None)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    path = tmp_path_factory.mktemp("fo") / "e"
    with ExportWriter(path, {"name": "fo-test", "description": "two chains"}) as writer:
        everything = ImageClassificationExporter(name="all", criterion=C.chains(["benign"]))
        wrong = ImageClassificationExporter(name="wrong", criterion=C.col("correct") == False)  # noqa: E712
        for exporter in (everything, wrong):
            exporter.setup(writer=writer)
        for chain in ("benign", "fgsm"):
            for i, start in enumerate(range(0, 11, 4)):
                b = batch(start, min(4, 11 - start), chain)
                everything.export(i, b)
                wrong.export(i, b)
                writer.end_batch()
    table = ds.dataset(path / "table", schema=unified_schema(path / "table")).to_table()
    return path, table, read_manifest(path)


def test_dataset_has_the_table_records_fields_and_readable_images(export):
    path, table, manifest = export
    fo = import_fiftyone()
    dataset = fo.load_dataset(manifest["fiftyone"]["dataset"])
    assert manifest["fiftyone"]["dataset"] == f"fo-test-{manifest['export_id']}"
    assert dataset.persistent and dataset.count() == table.num_rows == manifest["counts"]["records"]
    rows = {r["record_key"]: r for r in table.to_pylist()}
    assert sorted(dataset.values("record_key")) == sorted(rows)
    for sample in dataset:
        row = rows[sample.record_key]
        for key in ("export_id", "chain", "batch", "position", "sample_index", "exporters"):
            assert sample[key] == row[key], key
        assert sample.filepath == str(path.resolve() / row["image_path"])
        assert np.asarray(Image.open(sample.filepath)).shape == (5, 7, 3)
        assert sample.ground_truth.class_index == row["target"]
        assert sample.ground_truth.label == "abc"[row["target"]]
        assert sample.prediction.label == "abc"[row["prediction"]]
        assert np.allclose(sample.prediction.logits, row["logits"])
    for name in table.schema.names:
        if table.column(name).null_count < table.num_rows and name != "image_path":
            assert dataset.get_field(VOCABULARY.fiftyone_path(name)) is not None, name
    assert dataset.info["export_id"] == manifest["export_id"]
    assert dataset.default_classes == ["a", "b", "c"]


@pytest.mark.parametrize("text", [
    "correct == false", "target in [0, 2] & confidence < 0.6", "fgsm_epsilon > 0.01",
    "chain == \"fgsm\" | prediction == 1", "sample_index % 3 == 1", "weight < 0.5",
])
def test_criteria_select_the_same_records_in_fiftyone_and_parquet(export, text):
    _, table, manifest = export
    fo = import_fiftyone()
    dataset = fo.load_dataset(manifest["fiftyone"]["dataset"])
    criterion = C.parse(text)
    expected = sorted(table.filter(criterion.to_arrow()).column("record_key").to_pylist())
    assert sorted(dataset.match(criterion.to_fiftyone()).values("record_key")) == expected


def test_by_sample_view_puts_a_samples_chains_side_by_side(export):
    _, table, manifest = export
    dataset = import_fiftyone().load_dataset(manifest["fiftyone"]["dataset"])
    assert manifest["fiftyone"]["saved_views"] == [BY_SAMPLE_VIEW]
    view = dataset.load_saved_view(BY_SAMPLE_VIEW)
    assert len(view) == len(set(table.column("sample_index").to_pylist()))


def test_rebuild_elsewhere_under_another_name(export, tmp_path):
    path, table, manifest = export
    copy = tmp_path / "moved"
    shutil.copytree(path, copy)
    dataset = build_fiftyone_dataset(copy, name="fo-test-moved")
    assert sorted(dataset.values("record_key")) == sorted(table.column("record_key").to_pylist())
    assert all(p.startswith(str(copy.resolve())) for p in dataset.values("filepath"))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        build_fiftyone_dataset(copy, name="fo-test-moved")
    assert build_fiftyone_dataset(copy, name="fo-test-moved", overwrite=True).count() == table.num_rows


def test_overwriting_an_export_replaces_its_dataset(tmp_path):
    fo = import_fiftyone()
    names = []
    for run in range(2):
        with ExportWriter(tmp_path / "e", {"name": "ow"}, overwrite=run > 0) as writer:
            exporter = ImageClassificationExporter(criterion=C.always())
            exporter.setup(writer=writer)
            exporter.export(0, batch(0, 2 + run, "benign"))
        names.append(read_manifest(tmp_path / "e")["fiftyone"]["dataset"])
    assert not fo.dataset_exists(names[0])
    assert fo.load_dataset(names[1]).count() == 3


def test_saliency_path_columns_become_heatmaps(tmp_path):
    fo = import_fiftyone()
    with ExportWriter(tmp_path / "e", {"name": "hm"}) as writer:
        heat = np.arange(35, dtype=np.float32).reshape(5, 7)
        path = writer.write_heatmap("ig", "benign", 3, heat)
        # a {field}_path column is a heatmap only when an exporter declares it
        writer.register_exporter("saliency", "Manual", None, {}, {"ig_path": pa.string()})
        writer.add("saliency", "benign", 3, {"ig_path": path, "ig_min": 0.0, "ig_max": 34.0},
                   batch=0, position=0, image=np.zeros((5, 7, 3), np.uint8))
    sample = fo.load_dataset(writer.manifest["fiftyone"]["dataset"]).first()
    assert sample.ig_path == path and re.fullmatch(r"media/heatmaps/ig/benign/00000003-[0-9a-f]{16}\.png", path)
    assert sample.ig.map_path == str((tmp_path / "e" / path).resolve())
    assert list(sample.ig.range) == [0, HEATMAP_LEVELS]
    levels = sample.ig.get_map()  # FiftyOne's reader, as the App decodes it: 16-bit levels
    assert levels.dtype == np.uint16 and levels.min() == 0 and levels.max() == HEATMAP_LEVELS
    assert np.abs(levels / HEATMAP_LEVELS * 34.0 - heat).max() <= 34.0 / HEATMAP_LEVELS * 0.5001  # half a level
    assert np.abs(read_heatmap(sample.ig.map_path) - heat).max() <= 34.0 / HEATMAP_LEVELS * 0.5001  # half a level


def test_older_tiff_maps_get_png_maps_when_the_dataset_is_rebuilt(tmp_path):
    """Exports written before 16-bit PNG maps hold float32 TIFFs, which the App cannot decode."""
    import tifffile

    heat = np.linspace(-2.0, 3.0, 35, dtype=np.float32).reshape(5, 7)
    legacy = "media/heatmaps/ig/benign/00000003.tif"
    with ExportWriter(tmp_path / "e", {"name": "legacy"}, fiftyone=False) as writer:
        (tmp_path / "e" / legacy).parent.mkdir(parents=True)
        tifffile.imwrite(tmp_path / "e" / legacy, heat)
        writer.add("saliency", "benign", 3, {"ig_path": legacy, "ig_min": -2.0, "ig_max": 3.0},
                   batch=0, position=0, image=np.zeros((5, 7, 3), np.uint8))
    for _ in range(2):  # a second rebuild reuses the PNG written by the first
        sample = build_fiftyone_dataset(tmp_path / "e", name="legacy", overwrite=True).first()
        assert sample.ig_path == legacy  # the table is not rewritten
        png = sample.ig.map_path
        assert re.fullmatch(re.escape(str((tmp_path / "e").resolve() / legacy[:-4])) + r"-[0-9a-f]{16}\.png", png)
        assert list(sample.ig.range) == [0, HEATMAP_LEVELS] and sample.ig.get_map().dtype == np.uint16
        assert np.abs(read_heatmap(png) - heat).max() <= 5.0 / HEATMAP_LEVELS
    assert len(list((tmp_path / "e" / legacy).parent.iterdir())) == 2  # the TIFF and one PNG
    assert np.array_equal(read_heatmap(tmp_path / "e" / legacy), heat)


@pytest.mark.parametrize("path", ["media/heatmaps/../../outside.png", "media/heatmaps/ig\\..\\x.png"])
def test_a_heatmap_path_leaving_the_export_is_refused(tmp_path, path):
    with ExportWriter(tmp_path / "e", {"name": "hostile"}, fiftyone=False) as writer:
        writer.add("saliency", "benign", 0, {"ig_path": path, "ig_min": 0.0, "ig_max": 1.0},
                   batch=0, position=0, image=np.zeros((5, 7, 3), np.uint8))
    with pytest.raises(ValueError, match=r"record 'benign/0' ig_path: .*leaves the export directory"):
        build_fiftyone_dataset(tmp_path / "e", name=f"hostile-{tmp_path.name}", overwrite=True)


def test_app_config_groups_and_ticks_labels_and_heatmaps(tmp_path):
    with ExportWriter(tmp_path / "e", {"name": "config"}) as writer:
        path = writer.write_heatmap("ig", "benign", 0, np.eye(4))
        writer.add("saliency", "benign", 0, {"ig_path": path, "ig_min": 0.0, "ig_max": 1.0, "target": 1,
                                             "prediction": 1, "correct": True},
                   batch=0, position=0, image=np.zeros((4, 4, 3), np.uint8))
    config = import_fiftyone().load_dataset(writer.manifest["fiftyone"]["dataset"]).app_config
    groups = {group.name: group.paths for group in config.sidebar_groups}
    assert list(groups)[:5] == ["tags", "labels", "heatmaps", "metrics", "keys"]
    assert groups["labels"] == ["ground_truth", "prediction"] and groups["heatmaps"] == ["ig"]
    assert {"correct", "ig_min", "ig_max"} <= set(groups["metrics"])
    assert {"record_key", "chain", "sample_index", "ig_path"} <= set(groups["keys"])
    assert config.active_fields.paths == ["ground_truth", "prediction", "ig"]
    assert config.color_scheme.colorscales == [{"path": "ig", "name": "viridis"}]


@pytest.mark.parametrize("insert_batch", [2048, 3])
def test_fields_seen_only_in_later_documents_are_declared(tmp_path, monkeypatch, insert_batch):
    # One insert batch: the dataset is declared before the insert (while the indexes are
    # made); several: after it, once every document is made. Either way a column with
    # values only in the last records is a declared field with its App group.
    import armory_datasets.store.fiftyone_import as fi

    monkeypatch.setattr(fi, "INSERT_BATCH", insert_batch)
    with ExportWriter(tmp_path / "e", {"name": f"late-{insert_batch}"}) as writer:
        for i in range(5):
            late = {"late_score": 0.5} if i == 4 else {}
            writer.add("e", "benign", i, {"target": 0, "prediction": 0, "correct": True, **late},
                       batch=i, position=0, image=np.zeros((2, 2, 3), np.uint8))
            writer.end_batch()
    dataset = import_fiftyone().load_dataset(writer.manifest["fiftyone"]["dataset"])
    assert dataset.count() == 5
    assert dataset.get_field("late_score") is not None
    assert dataset.values("late_score") == [None] * 4 + [0.5]
    groups = {group.name: group.paths for group in dataset.app_config.sidebar_groups}
    assert "late_score" in groups["metrics"]
    assert dataset.list_saved_views() == [BY_SAMPLE_VIEW]
