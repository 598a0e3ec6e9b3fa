"""FiftyOne sample documents from an export's table rows (see ``fiftyone_import`` for the layout).

Rows become raw documents, as FiftyOne's own importers insert them, not ``fo.Sample``
objects: building a sample object costs more than the rest of an export's sample.

Example:
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> from armory_datasets.reading import listed_parts, part_schema
    >>> from armory_datasets.store.manifest import read_manifest
    >>> export = tiny_export().resolve()
    >>> manifest = read_manifest(export)
    >>> parts = listed_parts(export, manifest)
    >>> builder = SampleDocuments(export, part_schema(parts[0], export), manifest["class_names"], None, parts, export)
    >>> next(builder.documents())["ground_truth"]["label"]
    'cat'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from armory_datasets.records.names import RESERVED_FIELDS
from armory_datasets.schema import VOCABULARY
from armory_datasets.store import media
from armory_datasets.store.footers import parquet_file
from armory_datasets.untrusted import Confinement, heatmap_fields

CLASSIFICATION_LABELS = ("ground_truth", "prediction")
DETECTION_LABELS = {"ground_truth_objects": "ground_truth", "predicted_objects": "predictions"}
_HEATMAP_PREFIX = "media/heatmaps/"


class SampleDocuments:
    """Turns table rows into FiftyOne sample documents, noting which label kinds it made."""

    def __init__(self, export_dir: Path, schema: pa.Schema, class_names: list[str] | None,
                 dataset_id: Any, parts: list[Path], cache_dir: Path) -> None:
        self.export_dir = export_dir
        self.parts = parts
        self.cache_dir = cache_dir
        self.schema = schema
        self.class_names = class_names
        self.dataset_id = dataset_id
        self.classification = False
        self.detection = False
        self.evaluated = False
        self.seen: set[str] = set()
        self.confine = Confinement(export_dir)
        from bson import ObjectId  # pymongo's; imported here, on the FiftyOne path only

        self.object_id = ObjectId
        # A heatmap field has the saliency columns ({field}_path, _min, _max): a metadata
        # column such as `source_path` alone never becomes a media field by its name.
        self.heatmaps = {field: f"{field}_path" for field in heatmap_fields(schema.names, VOCABULARY)
                         if field not in RESERVED_FIELDS}

    def documents(self) -> Iterator[dict[str, Any]]:
        """One document per row of the parts, in order."""
        from fiftyone.core.odm.sample import _generate_rand  # FiftyOne's own `_rand` values

        now = datetime.now(timezone.utc).replace(tzinfo=None)
        setters = [(name, self._setter(name)) for name in self.schema.names]
        seen = self.seen
        for path in self.parts:
            for batch in parquet_file(path).iter_batches(batch_size=2048):
                # Columns without a value in this batch (a classification export's boxes,
                # say) are neither converted nor visited per row.
                filled = [name for name in batch.schema.names
                          if batch.column(name).null_count < batch.num_rows]
                seen.update(filled)
                columns = batch.select(filled).to_pydict()
                present = [(setter, columns[name]) for name, setter in setters if name in columns]
                for i in range(batch.num_rows):
                    doc: dict[str, Any] = {
                        "tags": [], "created_at": now, "last_modified_at": now,
                        "_dataset_id": self.dataset_id, "_media_type": "image",
                        "_rand": _generate_rand(),
                        "metadata": {"_cls": "ImageMetadata", "mime_type": "image/png"},
                    }
                    for setter, values in present:
                        value = values[i]
                        if value is not None:
                            setter(doc, value)
                    self._finish(doc, columns, i)
                    yield doc

    def _setter(self, column: str) -> Callable[[dict[str, Any], Any], None]:
        path = VOCABULARY.fiftyone_path(column)
        top, _, rest = path.partition(".")
        if column == "image_path":
            def set_filepath(doc: dict[str, Any], value: Any) -> None:
                doc[path] = self.confine(value, f"record {doc.get('record_key')!r} image_path",
                                         "media/images/")
            return set_filepath
        if not rest:
            return lambda doc, value: doc.__setitem__(top, value)
        if top == "metadata":
            return lambda doc, value: doc["metadata"].__setitem__(rest, value)
        return lambda doc, value: self._label(doc, top).__setitem__(rest, value)

    def _label(self, doc: dict[str, Any], field: str) -> dict[str, Any]:
        """The record's Classification at ``field``, created on first use."""
        label = doc.get(field)
        if label is None:
            label = doc[field] = {"_id": self.object_id(), "_cls": "Classification", "tags": []}
            self.classification = True
        return label

    def _detection(self, obj: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        width, height = doc["metadata"]["width"], doc["metadata"]["height"]
        x0, y0, x1, y1 = obj["x_min"], obj["y_min"], obj["x_max"], obj["y_max"]
        detection = {
            "_id": self.object_id(), "_cls": "Detection", "tags": [], "attributes": {},
            "label": self._class_name(obj["label"]), "class_index": obj["label"],
            "bounding_box": [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height],
            "confidence": obj["score"],
        }
        if obj.get("match") is not None:  # FiftyOne's evaluate_detections names (eval key "eval")
            detection["eval"] = obj["match"]
            detection["eval_iou"] = obj.get("iou")
            self.evaluated = True
        return detection

    def _class_name(self, index: int) -> str:
        names = self.class_names
        return names[index] if names is not None and 0 <= index < len(names) else str(index)

    def _finish(self, doc: dict[str, Any], columns: dict[str, list[Any]], i: int) -> None:
        made: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        for column, field in DETECTION_LABELS.items():
            objects = doc.get(column)
            if objects is not None:
                made[column] = (objects, [self._detection(o, doc) for o in objects])
                doc[field] = {"_cls": "Detections", "detections": made[column][1]}
                self.detection = True
        for column, other in (("ground_truth_objects", "predicted_objects"),
                              ("predicted_objects", "ground_truth_objects")):
            if column in made and other in made:  # eval_id: the matched detection's id, as FiftyOne
                partners = made[other][1]
                for obj, detection in zip(*made[column]):
                    j = obj.get("matched_index")
                    if j is not None and 0 <= j < len(partners):
                        detection["eval_id"] = str(partners[j]["_id"])
        for field in CLASSIFICATION_LABELS:
            label = doc.get(field)
            if label is not None and label.get("class_index") is not None:
                label["label"] = self._class_name(label["class_index"])
        for field, column in self.heatmaps.items():
            paths = columns.get(column)
            path = None if paths is None else paths[i]
            if path is not None:
                map_path = self.confine(path, f"record {doc.get('record_key')!r} {column}",
                                        f"{_HEATMAP_PREFIX}{field}/")
                doc[field] = {"_id": self.object_id(), "_cls": "Heatmap", "tags": [],
                              "map_path": self._app_map(map_path, path),
                              "range": [0, media.HEATMAP_LEVELS]}

    def _app_map(self, confined: str, relative: str) -> str:
        """The PNG the App draws for a record's (confined) map; an older export's TIFF gets one beside it."""
        if not relative.endswith((".tif", ".tiff")):
            return confined
        return str(media.legacy_heatmap_png(Path(self.confine.root), relative, self.cache_dir))
