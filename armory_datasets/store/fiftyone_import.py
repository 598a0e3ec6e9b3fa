"""Build (or rebuild, on any machine) the FiftyOne dataset of an export directory.

One sample per table row, with fields at the FiftyOne paths of the vocabulary:
``ground_truth`` / ``prediction`` are ``fo.Classification`` (label = class name,
``class_index``, confidence, logits); detection exports get ``ground_truth`` /
``predictions`` ``fo.Detections`` (relative ``[x, y, w, h]`` boxes, ``class_index``, and
each box's COCO match under FiftyOne's own ``evaluate_detections`` names: ``eval``
"tp"/"fp"/"fn", ``eval_iou`` and ``eval_id``, the matched detection's id; the samples'
``tp``/``fp``/``fn`` are ``eval_tp``/``eval_fp``/``eval_fn``);
``filepath`` is the absolute image path; every other column is a top-level field of
the same name; a saliency column ``{field}_path`` also gets an ``fo.Heatmap`` ``{field}``
on its 16-bit PNG with ``range=[0, 65535]`` (the App compares the decoded levels with
``range``; values are ``{field}_min + level / 65535 * ({field}_max - {field}_min)``).
An older export's float32 TIFF maps, which the App cannot decode, get such a PNG
beside them (or, in a read-only directory, in ``~/.cache/armory_datasets``).

The App shows the dataset with sidebar groups ``labels``, ``heatmaps``, ``metrics``
and ``keys``, the labels and heatmaps ticked, and a colour scheme (``APP_COLORSCALE``
for heatmaps, colours by label value).

Layout: flat, with a ``chain`` field, and a saved view ``by_sample`` grouping the
chains of each sample side by side in the App (a dynamic group on ``sample_index``).
A grouped dataset (one slice per chain) was tried: ingestion was as easy, but every
``len``, ``count``, ``values`` and ``match`` on it sees only the active slice, so
``dataset.match(criterion.to_fiftyone())`` would silently select benign samples only,
and groups without a sample in the default slice are hidden from the default grid.

Samples are written in bulk as FiftyOne's own importer does (raw documents through
``fiftyone.core.odm.insert_documents``), not one ``add_sample`` at a time, because no
public FiftyOne API inserts prepared documents; this needs three private names,
``dataset._sample_collection``, ``dataset._doc`` (its id, and its info, app_config,
description and default_classes, set together and saved once where each public setter
saves) and ``fiftyone.core.odm.sample._generate_rand`` (pinned by fiftyone<1.23). The schema is declared with the public
``add_dynamic_sample_fields``. ``record_key`` gets a unique index.

Ownership: a dataset belongs to the export directory whose export id and absolute path
its ``info`` records (written first, so a dataset left half-built by a crash is still
recognised and rebuilt). Nothing here deletes or replaces a dataset another export or
another copy owns: a copy gets ``{name}-copy-{hash of its path}``. Building is
serialised per export by a lease in the database (:func:`dataset_lock`), so concurrent
rebuilds of one export, from any process or machine, make one dataset.

Example:
    >>> from armory_datasets.criteria import parse
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> dataset = build_fiftyone_dataset(tiny_export(), overwrite=True)
    >>> dataset.match(parse("correct == false").to_fiftyone()).count()
    3
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from armory_datasets.records.names import RESERVED_FIELDS
from armory_datasets.schema import VOCABULARY
from armory_datasets.store import media
from armory_datasets.store.manifest import default_dataset_name, read_manifest
from armory_datasets.untrusted import heatmap_fields, inside_export

BY_SAMPLE_VIEW = "by_sample"
INSERT_BATCH = 2048
_CLASSIFICATION_LABELS = ("ground_truth", "prediction")
_DETECTION_LABELS = {"ground_truth_objects": "ground_truth", "predicted_objects": "predictions"}
_HEATMAP_PREFIX = "media/heatmaps/"
LOCKS_COLLECTION = "armory_datasets_locks"
LEASE_S = 60.0
_KEYS = ("record_key", "chain", "sample_index")  # declared even when no record has them (empty export)
APP_COLORSCALE = "viridis"
"""Plotly colour scale of heatmaps in the App (perceptually uniform, readable on photos)."""
APP_OPACITY = 0.6
"""Opacity of labels and heatmaps over the image in the App."""
_KEY_KINDS = ("key", "bookkeeping")


def owned_by(dataset: Any, export_id: str, export_dir: Path) -> bool:
    """Whether ``dataset`` was built from export ``export_id`` in ``export_dir``.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> path = tiny_export().resolve()
        >>> owned_by(export_fiftyone_dataset(path), read_manifest(path)["export_id"], path)
        True
    """
    info = dataset.info or {}
    return info.get("export_id") == export_id and info.get("export_dir") == str(export_dir)


def copy_dataset_name(base: str, export_dir: Path) -> str:
    """The dataset name of a copy of an export: ``{base}-copy-{hash of its path}``.

    Example:
        >>> copy_dataset_name("digits-1", Path("/data/copy"))
        'digits-1-copy-392404ae'
    """
    return f"{base}-copy-{hashlib.sha1(str(export_dir).encode()).hexdigest()[:8]}"


def own_dataset_name(fo: Any, export_dir: Path, manifest: dict[str, Any]) -> str:
    """The name of the dataset ``export_dir`` owns or may create: the manifest's, unless
    another directory (or export) holds that name; then the copy name of this directory.

    Example:
        >>> from armory_datasets.database import import_fiftyone
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> path = tiny_export().resolve()
        >>> own_dataset_name(import_fiftyone(), path, read_manifest(path))  # nobody holds it yet
        'tiny-...'
    """
    base = manifest["fiftyone"]["dataset"] or default_dataset_name(manifest)
    candidates = (base, copy_dataset_name(base, export_dir))
    for name in candidates:
        if not fo.dataset_exists(name) or owned_by(fo.load_dataset(name), manifest["export_id"],
                                                   export_dir):
            return name
    raise FileExistsError(f"FiftyOne datasets {list(candidates)} belong to other exports; "
                          f"{export_dir} (export {manifest['export_id']}) replaces neither")


def delete_owned_datasets(export_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Delete the datasets of export ``manifest`` in ``export_dir`` (never another's).

    Example:
        >>> from armory_datasets.database import import_fiftyone
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> path = tiny_export()
        >>> name = export_fiftyone_dataset(path).name
        >>> delete_owned_datasets(path, read_manifest(path))
        >>> import_fiftyone().dataset_exists(name)
        False
    """
    from armory_datasets.database import import_fiftyone

    fo = import_fiftyone()
    export_dir = Path(export_dir).resolve()
    base = manifest["fiftyone"]["dataset"] or default_dataset_name(manifest)
    for name in (base, copy_dataset_name(base, export_dir)):
        if fo.dataset_exists(name) and owned_by(fo.load_dataset(name), manifest["export_id"],
                                                export_dir):
            fo.delete_dataset(name)


@contextmanager
def dataset_lock(name: str, lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the database-wide lock ``name`` (a lease renewed while held).

    A document in ``armory_datasets_locks`` with ``_id = name`` is the lock: inserting
    it is atomic, so one holder wins across processes and machines sharing the database.
    A holder that dies stops renewing, and its lease is taken over after ``lease_s``.

    Example:
        >>> with dataset_lock("tiny-lock-example"):
        ...     "built while holding the lease"
        'built while holding the lease'
    """
    import fiftyone.core.odm as foo
    import pymongo.errors

    locks = foo.get_db_conn()[LOCKS_COLLECTION]
    token = secrets.token_hex(8)
    while True:
        now = time.time()
        try:
            locks.insert_one({"_id": name, "token": token, "expires": now + lease_s})
            break
        except pymongo.errors.DuplicateKeyError:
            locks.delete_one({"_id": name, "expires": {"$lt": now}})  # a dead holder's lease
            time.sleep(0.2)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease_s / 4):
            try:
                locks.update_one({"_id": name, "token": token},
                                 {"$set": {"expires": time.time() + lease_s}})
            except pymongo.errors.PyMongoError:
                continue  # e.g. during an election; the next renewal retries
    renewer = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        locks.delete_one({"_id": name, "token": token})


def export_fiftyone_dataset(export_dir: str | Path, rebuild: bool = False,
                            expected_count: int | None = None) -> Any:
    """The dataset ``export_dir`` owns: loaded if it is up to date, else (re)built.

    Up to date means built from this export id and directory with ``expected_count``
    samples (when given). ``rebuild=True`` always builds. Runs under
    :func:`dataset_lock`, so concurrent callers build once and the others load it.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> export_fiftyone_dataset(tiny_export()).count()
        16
    """
    from armory_datasets.database import import_fiftyone

    export_dir = Path(export_dir).resolve()
    manifest = read_manifest(export_dir)
    if manifest is None:
        raise FileNotFoundError(f"{export_dir}: no manifest.json; expected an export directory")
    fo = import_fiftyone()
    base = manifest["fiftyone"]["dataset"] or default_dataset_name(manifest)
    with dataset_lock(base):
        name = own_dataset_name(fo, export_dir, manifest)
        if not rebuild and fo.dataset_exists(name):
            dataset = fo.load_dataset(name)
            if expected_count is None or dataset.count() == expected_count:
                return dataset
        return build_fiftyone_dataset(export_dir, name=name, overwrite=True)


def build_fiftyone_dataset(export_dir: str | Path, name: str | None = None, overwrite: bool = False) -> Any:
    """Create the persistent FiftyOne dataset of an export directory and return it.

    ``name`` defaults to the manifest's dataset name (``{evaluation}-{export_id}``). An
    existing dataset of that name is replaced when ``overwrite`` and this export
    directory owns it (:func:`owned_by`); otherwise FileExistsError, naming its owner.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> build_fiftyone_dataset(tiny_export(), name="tiny-copy", overwrite=True).count()
        16
    """
    from armory_datasets.database import database_errors

    export_dir = Path(export_dir).resolve()
    manifest = read_manifest(export_dir)
    if manifest is None:
        raise FileNotFoundError(f"{export_dir}: no manifest.json; expected an export directory")
    name = name or manifest["fiftyone"]["dataset"] or default_dataset_name(manifest)
    with database_errors(f"building FiftyOne dataset {name!r} from {export_dir}"):
        return _build(export_dir, manifest, name, overwrite)


def _build(export_dir: Path, manifest: dict[str, Any], name: str, overwrite: bool) -> Any:
    from armory_datasets.database import import_fiftyone

    fo = import_fiftyone()
    import fiftyone.core.odm as foo
    import fiftyone.core.utils as fou
    from pymongo import IndexModel

    if fo.dataset_exists(name):
        existing = fo.load_dataset(name)
        if not owned_by(existing, manifest["export_id"], export_dir):
            info = existing.info or {}
            raise FileExistsError(
                f"FiftyOne dataset {name!r} belongs to export {info.get('export_id')!r} in "
                f"{info.get('export_dir')!r}, not to {export_dir}; it is left as it is")
        if not overwrite:
            raise FileExistsError(f"FiftyOne dataset {name!r} exists; pass overwrite=True to rebuild it")
        fo.delete_dataset(name)
    dataset = fo.Dataset(name, persistent=True)
    # Each of FiftyOne's dataset setters saves the document: set them on it, save once.
    dataset._doc.info = {"export_dir": str(export_dir), "export_id": manifest["export_id"],
                         "evaluation": manifest["evaluation"]}
    dataset.media_type = "image"  # saves the info with it: ownership holds before any sample
    from armory_datasets.reading import listed_parts, part_schema  # reading imports store

    parts = listed_parts(export_dir, manifest)
    schema = pa.unify_schemas([part_schema(p, export_dir) for p in parts]) if parts else pa.schema([])
    builder = _DocumentBuilder(export_dir, schema, manifest["class_names"], dataset._doc.id, parts,
                               media.legacy_heatmap_cache(manifest["export_id"]))
    # Fixed-size batches keep memory flat (FiftyOne's default batcher grows them to 100k).
    foo.insert_documents(builder.documents(), dataset._sample_collection, progress=False,
                         batcher=partial(fou.StaticBatcher, batch_size=INSERT_BATCH))
    _declare_fields(fo, dataset, schema, builder)
    # Both indexes in one round trip; FiftyOne lists a collection's indexes from MongoDB.
    dataset._sample_collection.create_indexes([IndexModel("record_key", unique=True),
                                               IndexModel("sample_index")])
    dataset._doc.app_config = app_config(fo, dataset, schema, list(builder.heatmaps))
    dataset._doc.description = manifest["evaluation"]["description"]
    if manifest["class_names"] is not None:
        dataset._doc.default_classes = manifest["class_names"]
    dataset.save()
    dataset.save_view(BY_SAMPLE_VIEW, dataset.group_by("sample_index", order_by="chain"))
    return dataset


class _DocumentBuilder:
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
        from bson import ObjectId  # pymongo's; imported here, on the FiftyOne path only

        self.object_id = ObjectId
        # A heatmap field has the saliency columns ({field}_path, _min, _max): a metadata
        # column such as `source_path` alone never becomes a media field by its name.
        self.heatmaps = {field: f"{field}_path" for field in heatmap_fields(schema.names, VOCABULARY)
                         if field not in RESERVED_FIELDS}

    def documents(self) -> Iterator[dict[str, Any]]:
        from fiftyone.core.odm.sample import _generate_rand  # FiftyOne's own `_rand` values

        now = datetime.now(timezone.utc).replace(tzinfo=None)
        setters = [(name, self._setter(name)) for name in self.schema.names]
        seen = self.seen
        for path in self.parts:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=2048):
                columns = batch.to_pydict()
                for i in range(batch.num_rows):
                    doc: dict[str, Any] = {
                        "tags": [], "created_at": now, "last_modified_at": now,
                        "_dataset_id": self.dataset_id, "_media_type": "image",
                        "_rand": _generate_rand(),
                        "metadata": {"_cls": "ImageMetadata", "mime_type": "image/png"},
                    }
                    for name, setter in setters:
                        value = columns[name][i] if name in columns else None
                        if value is not None:
                            setter(doc, value)
                            seen.add(name)
                    self._finish(doc, columns, i)
                    yield doc

    def _setter(self, column: str) -> Callable[[dict[str, Any], Any], None]:
        path = VOCABULARY.fiftyone_path(column)
        top, _, rest = path.partition(".")
        if column == "image_path":
            def set_filepath(doc: dict[str, Any], value: Any) -> None:
                where = f"record {doc.get('record_key')!r} image_path"
                doc[path] = str(inside_export(self.export_dir, value, where, "media/images/"))
            return set_filepath
        if not rest:
            return lambda doc, value: doc.__setitem__(top, value)
        if top == "metadata":
            return lambda doc, value: doc["metadata"].__setitem__(rest, value)
        return lambda doc, value: _label(doc, top, self).__setitem__(rest, value)

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
        for column, field in _DETECTION_LABELS.items():
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
        for field in _CLASSIFICATION_LABELS:
            label = doc.get(field)
            if label is not None and label.get("class_index") is not None:
                label["label"] = self._class_name(label["class_index"])
        for field, column in self.heatmaps.items():
            path = columns[column][i]
            if path is not None:
                map_path = inside_export(self.export_dir, path, f"record {doc.get('record_key')!r} "
                                         f"{column}", f"{_HEATMAP_PREFIX}{field}/")
                doc[field] = {"_id": self.object_id(), "_cls": "Heatmap", "tags": [],
                              "map_path": str(self._app_map(map_path)),
                              "range": [0, media.HEATMAP_LEVELS]}

    def _app_map(self, path: Path) -> Path:
        """The PNG the App draws for a record's (confined) map; an older export's TIFF gets one beside it."""
        if path.suffix not in (".tif", ".tiff"):
            return path
        return media.legacy_heatmap_png(self.export_dir, path.relative_to(self.export_dir).as_posix(),
                                        self.cache_dir)


def _label(doc: dict[str, Any], field: str, builder: _DocumentBuilder) -> dict[str, Any]:
    """The record's Classification at ``field``, created on first use."""
    label = doc.get(field)
    if label is None:
        label = doc[field] = {"_id": builder.object_id(), "_cls": "Classification", "tags": []}
        builder.classification = True
    return label


def _declare_fields(fo: Any, dataset: Any, schema: pa.Schema, builder: _DocumentBuilder) -> None:
    """Declare the inserted documents' fields in one schema merge (public API, few reloads)."""
    if builder.classification and builder.detection:
        raise ValueError("table: holds both classification (target/prediction) and detection "
                         "(ground_truth_objects/predicted_objects) records; expected one task "
                         "per export")
    from fiftyone.core.odm.utils import create_field

    # Label attributes are declared inside their label's field, not as paths of their own:
    # FiftyOne merges nested paths one level per save and reload (about 30 ms each).
    fields: dict[str, Any] = {}
    if builder.classification:
        for field in _CLASSIFICATION_LABELS:
            fields[field] = create_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification,
                                         fields=[create_field("class_index", fo.IntField)])
    if builder.detection:
        attributes = [create_field("class_index", fo.IntField)]
        if builder.evaluated:
            attributes += [create_field("eval", fo.StringField), create_field("eval_iou", fo.FloatField),
                           create_field("eval_id", fo.StringField)]
        for field in _DETECTION_LABELS.values():
            detections = create_field("detections", fo.ListField, subfield=fo.EmbeddedDocumentField,
                                      embedded_doc_type=fo.Detection, fields=attributes)
            fields[field] = create_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections,
                                         fields=[detections])
    for field in builder.heatmaps:
        fields[field] = fo.EmbeddedDocumentField(fo.Heatmap)
    for arrow_field in schema:
        path = VOCABULARY.fiftyone_path(arrow_field.name)
        if "." in path or path == "filepath" or (arrow_field.name not in builder.seen
                                                 and arrow_field.name not in _KEYS):
            continue  # label attributes, built-ins, and columns without a value
        fields[path] = _field(fo, arrow_field.type)
    dataset.add_dynamic_sample_fields(fields=fields)


def _field(fo: Any, arrow_type: pa.DataType) -> Any:
    """A FiftyOne field holding values of an Arrow type."""
    if pa.types.is_boolean(arrow_type):
        return fo.BooleanField()
    if pa.types.is_integer(arrow_type):
        return fo.IntField()
    if pa.types.is_floating(arrow_type):
        return fo.FloatField()
    if pa.types.is_string(arrow_type):
        return fo.StringField()
    if pa.types.is_list(arrow_type):
        return fo.ListField(_field(fo, arrow_type.value_type))
    return fo.DictField()


def app_config(fo: Any, dataset: Any, schema: pa.Schema, heatmaps: list[str]) -> Any:
    """The App settings of an export's dataset: sidebar groups, ticked fields, colours.

    Groups ``labels`` (ticked), ``heatmaps`` (ticked), ``metrics`` (numeric and boolean
    columns) and ``keys`` (which record it is) come first; FiftyOne's default groups
    keep every other field.

    Example:
        >>> [g.name for g in build_fiftyone_dataset("exports/run1").app_config.sidebar_groups][:5]  # doctest: +SKIP
        ['tags', 'labels', 'heatmaps', 'metrics', 'keys']
    """
    labels = [name for name, field in dataset.get_field_schema(embedded_doc_type=fo.Label).items()
              if name not in heatmaps]
    keys, metrics = [], []
    for arrow_field in schema:
        path = VOCABULARY.fiftyone_path(arrow_field.name)
        if "." in path or path == "filepath" or not dataset.has_field(path) or path in labels:
            continue
        column = VOCABULARY.columns.get(arrow_field.name)
        if (column is not None and column.kind in _KEY_KINDS) or arrow_field.name.endswith("_path"):
            keys.append(path)
        elif _numeric(arrow_field.type):
            metrics.append(path)
    taken = set(labels + heatmaps + metrics + keys)
    defaults = {group.name: [p for p in group.paths if p not in taken]
                for group in fo.DatasetAppConfig.default_sidebar_groups(dataset)}
    groups = [("tags", defaults.pop("tags", [])), ("labels", labels),
              ("heatmaps", heatmaps), ("metrics", metrics), ("keys", keys),
              *((name, paths) for name, paths in defaults.items() if paths)]
    return fo.DatasetAppConfig(
        sidebar_groups=[fo.SidebarGroupDocument(name=name, paths=paths, expanded=name != "keys")
                        for name, paths in groups],
        active_fields=fo.ActiveFields(paths=labels + heatmaps),
        color_scheme=fo.ColorScheme(
            color_by="value", opacity=APP_OPACITY,
            default_colorscale={"name": APP_COLORSCALE, "list": None},
            colorscales=[{"path": field, "name": APP_COLORSCALE} for field in heatmaps]),
    )


def _numeric(arrow_type: pa.DataType) -> bool:
    if pa.types.is_list(arrow_type):
        return _numeric(arrow_type.value_type)
    return pa.types.is_boolean(arrow_type) or pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
