"""Hugging Face ``datasets`` on exports: ``load_dataset(EXPORT_DIR)`` via the dataset card,
``load_dataset("parquet")`` on the table, and ``Export.to_hf()`` with maps as arrays."""

from __future__ import annotations

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

from armory_datasets import open_export, pack_export, unpack_export  # noqa: E402
from armory_datasets.criteria import always  # noqa: E402
from armory_datasets.data import ImageClassificationBatch, Images  # noqa: E402
from armory_datasets.demo.tiny import CLASS_NAMES, tiny_detection_export, tiny_export  # noqa: E402
from armory_datasets.export import ImageClassificationExporter  # noqa: E402
from armory_datasets.export.saliency_common import SaliencyFields, heatmap_columns  # noqa: E402


class Bright(SaliencyFields, ImageClassificationExporter):
    """Classification records plus a map per record: the image's first channel + sample index."""

    def columns(self):
        return heatmap_columns("bright")

    def task_fields(self, batch, positions):
        indices, _ = self.pending(batch, positions)
        pixels = batch.inputs.to_uint8_hwc()[positions][..., 0].astype(np.float32)
        maps = [p / 255 + i for p, i in zip(pixels, indices)]
        return {**super().task_fields(batch, positions),
                **self.store("bright", batch.chain, indices, maps)}


@pytest.fixture(scope="module")
def with_maps(tmp_path_factory):
    """6 records (5 + a short last batch of 1), each with a heatmap file under media/."""
    path = tmp_path_factory.mktemp("maps") / "bright"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 6, 5), dtype=np.uint8)
    with Bright(name="bright", criterion=always(), export_dir=path) as exporter:
        for batch_idx, part in enumerate((slice(0, 5), slice(5, 6))):
            exporter.export(batch_idx, ImageClassificationBatch(
                Images(images[part]), np.arange(6)[part] % 3, np.eye(3)[np.arange(6)[part] % 3],
                class_names=CLASS_NAMES))
    return open_export(path), images


def test_load_dataset_on_the_directory_gives_images_with_labels_not_heatmaps(with_maps, tmp_path):
    export, images = with_maps
    assert any((export.path / "media" / "heatmaps").rglob("*.*"))
    loaded = datasets.load_dataset(str(export.path), cache_dir=str(tmp_path / "cache"))["train"]
    assert loaded.num_rows == export.count() == 6  # one per record: no map read as an image
    assert loaded.features["target"].names == CLASS_NAMES
    assert loaded.features["prediction"].names == CLASS_NAMES
    rows = {r["sample_index"]: r for r in export.table().to_pylist()}
    for row in loaded:
        want = rows[row["sample_index"]]
        assert row["target"] == want["target"] and row["chain"] == want["chain"]
        pixels = np.asarray(row["image"])
        assert np.array_equal(pixels, images[row["sample_index"]].transpose(1, 2, 0))


def test_the_card_travels_with_a_packed_copy(with_maps, tmp_path):
    export, _ = with_maps
    archive = pack_export(export.path, tmp_path / "bright.tar.gz")
    copy = unpack_export(archive, tmp_path / "elsewhere" / "bright")
    loaded = datasets.load_dataset(str(copy.path), cache_dir=str(tmp_path / "cache"))["train"]
    assert loaded.num_rows == 6 and loaded.features["target"].names == CLASS_NAMES


def test_detection_card_carries_the_boxes(tmp_path):
    export = open_export(tiny_detection_export(tmp_path / "det"))
    loaded = datasets.load_dataset(str(export.path), cache_dir=str(tmp_path / "cache"))["train"]
    rows = {(r["chain"], r["sample_index"]): r for r in export.table().to_pylist()}
    assert loaded.num_rows == len(rows) == 16
    for row in loaded:
        want = rows[row["chain"], row["sample_index"]]
        assert row["ground_truth_objects"] == want["ground_truth_objects"]
        assert row["image"].size == (16, 12)


def test_a_rewritten_export_rewrites_its_card(tmp_path):
    from armory_datasets.store import ExportWriter

    path = tiny_export(tmp_path / "tiny")  # then a smaller export replaces it
    writer = ExportWriter(path, {"name": "again"}, overwrite=True, fiftyone=False)
    exporter = ImageClassificationExporter(criterion=always())
    exporter.setup(writer=writer)
    exporter.export(0, ImageClassificationBatch(Images(np.zeros((2, 3, 4, 4), np.uint8)), [0, 1],
                                                np.eye(3)[[0, 1]], class_names=["x", "y", "z"]))
    writer.close()
    loaded = datasets.load_dataset(str(path), cache_dir=str(tmp_path / "cache"))["train"]
    assert loaded.num_rows == 2 and loaded.features["target"].names == ["x", "y", "z"]
    assert "# again" in (path / "README.md").read_text()


def test_table_parquet_is_typed_by_load_dataset(with_maps, tmp_path):
    export, _ = with_maps
    table = datasets.load_dataset("parquet", data_files=str(export.path / "table" / "*.parquet"),
                                  cache_dir=str(tmp_path / "cache"))["train"]
    assert table.num_rows == 6 and set(export.columns) <= set(table.column_names)
    assert table.features["target"].names == CLASS_NAMES  # from the parts' HF metadata
    assert table.features["prediction"].names == CLASS_NAMES
    assert [r["target"] for r in table] == export.table(columns=["target"]).column(0).to_pylist()


def test_to_hf_gives_maps_as_arrays_and_images(with_maps):
    export, images = with_maps
    data = export.to_hf()
    assert isinstance(data.features["bright"], datasets.Array2D)
    assert data.features["bright"].shape == (6, 5)
    assert data.features["target"].names == CLASS_NAMES
    for row in data:
        index = row["sample_index"]
        expected = images[index][0].astype(np.float32) / 255 + index
        half_level = np.ptp(expected) / 65535 / 2  # maps are 16-bit PNGs over their range
        assert np.allclose(np.asarray(row["bright"], np.float32), expected, rtol=0, atol=half_level + 1e-6)
        assert np.array_equal(np.asarray(row["image"]), images[index].transpose(1, 2, 0))
    assert export.to_hf(heatmaps=False).column_names.count("bright") == 0
    assert export.to_hf("first_n_samples(0)").num_rows == 0
