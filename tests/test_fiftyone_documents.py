"""The dataset documents written directly (store/fiftyone_dataset.py) are the ones FiftyOne's API writes.

The twin of each export's dataset is made with FiftyOne's public API alone (``fo.Dataset``,
``media_type``, ``add_sample_field``, the App config, ``save_view``) and the two raw
documents in MongoDB must be equal but for names, ids and times; FiftyOne must infer the
same schema from the samples; and FiftyOne's own operations must work on the dataset.

Example: ``./dev test tests/test_fiftyone_documents.py -q``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from armory_datasets.database import import_fiftyone
from armory_datasets.demo.tiny import tiny_export
from armory_datasets.store import BY_SAMPLE_VIEW, ExportWriter, read_manifest
from armory_datasets.store.fiftyone_import import build_fiftyone_dataset, export_fiftyone_dataset

from test_export_objects import batches_of, own_loop, random_images

_VOLATILE = {"_id", "name", "slug", "created_at", "last_modified_at", "last_loaded_at",
             "sample_collection_name", "saved_views"}


def classification(path: Path) -> Path:
    return tiny_export(path)


def detection(path: Path) -> Path:
    own_loop(path, batches_of(random_images(3, 12), [8, 4]), fiftyone=True, score_threshold=0.3)
    return path


def saliency(path: Path) -> Path:
    with ExportWriter(path, {"name": "twin-heatmaps", "description": "maps"}) as writer:
        for index in range(3):
            heat = writer.write_heatmap("ig", "benign", index, np.eye(4) * index)
            writer.add("saliency", "benign", index, {"ig_path": heat, "ig_min": 0.0, "ig_max": float(index),
                                                     "target": 1, "prediction": index % 2, "correct": index == 1,
                                                     "note": f"n{index}"},
                       batch=0, position=index, image=np.full((4, 4, 3), index, np.uint8))
    return path


def empty(path: Path) -> Path:
    with ExportWriter(path, {"name": "twin-empty"}):
        pass
    return path


KINDS = {"classification": classification, "detection": detection, "saliency": saliency, "empty": empty}


def raw(fo, name: str) -> dict:
    """A dataset's document without what differs between two builds (ids, names, times)."""
    import fiftyone.core.odm as foo

    doc = foo.get_db_conn().datasets.find_one({"name": name})

    def fields(docs: list[dict]) -> dict:
        return {f["name"]: {**{k: v for k, v in f.items() if k not in ("created_at", "fields")},
                            "fields": fields(f["fields"])} for f in docs}

    kept = {k: v for k, v in doc.items() if k not in _VOLATILE}
    kept["sample_fields"] = fields(kept["sample_fields"])
    kept["app_config"]["color_scheme"].pop("_id", None)
    return kept


def api_twin(fo, dataset, name: str):
    """The same dataset made with FiftyOne's public API, field by field, as a user would."""
    import fiftyone.core.odm as foo

    twin = fo.Dataset(name, persistent=True)
    twin.media_type = "image"
    for path, field in dataset.get_field_schema().items():
        if not twin.has_field(path):
            twin.add_sample_field(path, **foo.get_field_kwargs(field))
    for path, field in dataset.get_field_schema(flat=True).items():  # label attributes (class_index, eval...)
        if not twin.has_field(path):
            twin.add_sample_field(path, **foo.get_field_kwargs(field))
    twin.info = dataset.info
    twin.description = dataset.description
    twin.default_classes = dataset.default_classes
    twin.app_config = dataset.app_config
    twin.save()
    twin.save_view(BY_SAMPLE_VIEW, twin.group_by("sample_index", order_by="chain", create_index=True))
    return twin


@pytest.mark.parametrize("kind", list(KINDS))
def test_dataset_document_equals_the_one_fiftyones_api_writes(tmp_path, kind):
    fo = import_fiftyone()
    path = KINDS[kind](tmp_path / kind)
    dataset = export_fiftyone_dataset(path)
    twin = api_twin(fo, dataset, f"twin-{kind}-{tmp_path.name}")
    ours, theirs = raw(fo, dataset.name), raw(fo, twin.name)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == theirs[key], key
    import fiftyone.core.odm as foo

    views = foo.get_db_conn().views
    stages = [views.find_one({"_dataset_id": d._doc.id})["view_stages"] for d in (dataset, twin)]
    assert stages[0] == stages[1]
    collections = [foo.get_db_conn()[d._doc.sample_collection_name].index_information() for d in (dataset, twin)]
    assert {"filepath_1", "created_at_1", "last_modified_at_1"} <= collections[0].keys()
    assert collections[0]["record_key_1"]["unique"]
    foo.DatasetDocument.objects.get(name=dataset.name).validate()  # mongoengine's own check of every field


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "empty"])
def test_fiftyone_infers_the_declared_schema_from_the_samples(tmp_path, kind):
    fo = import_fiftyone()
    path = KINDS[kind](tmp_path / kind)
    dataset = export_fiftyone_dataset(path)
    inferred = fo.Dataset()
    inferred.add_samples(dataset, dynamic=True)  # FiftyOne declares what it finds in the documents

    def kinds(schema: dict) -> dict:
        return {p: (type(f).__name__, getattr(f, "document_type", None), type(getattr(f, "field", None)).__name__)
                for p, f in schema.items()}

    declared = kinds(dataset.get_field_schema(flat=True))
    found = kinds(inferred.get_field_schema(flat=True))
    for path, (field, document, element) in found.items():  # a list of dicts is inferred untyped
        assert declared[path][:2] == (field, document) and element in ("NoneType", declared[path][2]), path
    assert dataset.get_dynamic_field_schema() == {}  # nothing in the documents is undeclared


@pytest.mark.parametrize("kind", list(KINDS))
def test_fiftyones_own_operations_work_on_the_dataset(tmp_path, kind):
    fo = import_fiftyone()
    path = KINDS[kind](tmp_path / kind)
    dataset = export_fiftyone_dataset(path)
    name = dataset.name
    n = dataset.count()
    view = dataset.load_saved_view(BY_SAMPLE_VIEW)
    assert len(view) == len(set(dataset.values("sample_index")))
    assert "sample_index_1_chain_1" in dataset.list_indexes()  # FiftyOne made the view's index
    assert dataset.stats()["samples_count"] == n
    clone = dataset.clone()
    assert clone.count() == n and clone.list_saved_views() == [BY_SAMPLE_VIEW]
    dataset.add_sample_field("reviewed", fo.BooleanField)
    dataset.set_values("reviewed", [True] * n)
    assert fo.load_dataset(name).count_values("reviewed") == ({True: n} if n else {})
    exported = tmp_path / "fiftyone-format"
    dataset.export(str(exported), dataset_type=fo.types.FiftyOneDataset, export_media=False)
    again = fo.Dataset.from_dir(str(exported), dataset_type=fo.types.FiftyOneDataset)
    assert again.count() == n and again.media_type == "image"
    assert set(again.get_field_schema()) == set(dataset.get_field_schema())
    fo.delete_dataset(name)
    assert not fo.dataset_exists(name)


def test_a_failed_build_leaves_a_dataset_known_as_this_exports(tmp_path):
    """A hostile path fails the build after the dataset is inserted: its owner rebuilds it."""
    from armory_datasets.store.fiftyone_import import owned_by

    fo = import_fiftyone()
    with ExportWriter(tmp_path / "e", {"name": "half"}, fiftyone=False) as writer:
        for index, relative in enumerate(["media/heatmaps/ig/ok.png", "media/heatmaps/../../outside.png"]):
            writer.add("saliency", "benign", index, {"ig_path": relative, "ig_min": 0.0, "ig_max": 1.0},
                       batch=0, position=index, image=np.zeros((4, 4, 3), np.uint8))
    name = f"half-{tmp_path.name}"
    for overwrite in (False, True):  # the second replaces the half-built dataset, and fails the same way
        with pytest.raises(ValueError, match="record 'benign/1' ig_path: .*leaves the export directory"):
            build_fiftyone_dataset(tmp_path / "e", name=name, overwrite=overwrite)
        export_dir = (tmp_path / "e").resolve()
        assert owned_by(fo.load_dataset(name), read_manifest(export_dir)["export_id"], export_dir)
