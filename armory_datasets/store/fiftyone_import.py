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

Samples are written in bulk as FiftyOne's own importer does (raw documents, see
``fiftyone_samples``, through ``fiftyone.core.odm.insert_documents``), and the dataset's
own documents in two round trips (``fiftyone_dataset``), not through ``fo.Dataset`` and
its setters, which save and reload after each change. This relies on FiftyOne's
document format (pinned by fiftyone<1.23) and its private names
``fiftyone.core.odm.sample._generate_rand``, ``SampleFieldDocument._set_created_at``,
``ViewStage._serialize``, ``DatasetSampleDocument._fields`` (mongoengine's) and, on
:func:`app_config`'s stand-in collection, ``_has_frame_fields``; the tests compare the
result with what FiftyOne's API builds.
``record_key`` gets a unique index.

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
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import Any

import pyarrow as pa

from armory_datasets.schema import VOCABULARY
from armory_datasets.store import media
from armory_datasets.store.cyclic_gc import paused_cyclic_gc
from armory_datasets.store.fiftyone_dataset import (
    SampleCollection,
    declare_dataset,
    default_fields,
    insert_dataset,
    new_sample_collection,
)
from armory_datasets.store.fiftyone_samples import CLASSIFICATION_LABELS, DETECTION_LABELS, SampleDocuments
from armory_datasets.store.manifest import default_dataset_name, read_manifest

BY_SAMPLE_VIEW = "by_sample"
INSERT_BATCH = 2048
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
    return _owns(dataset.info or {}, export_id, export_dir)


def _owns(info: dict[str, Any], export_id: str, export_dir: Path) -> bool:
    return info.get("export_id") == export_id and info.get("export_dir") == str(export_dir)


def copy_dataset_name(base: str, export_dir: Path) -> str:
    """The dataset name of a copy of an export: ``{base}-copy-{hash of its path}``.

    Example:
        >>> copy_dataset_name("digits-1", Path("/data/copy"))
        'digits-1-copy-392404ae'
    """
    return f"{base}-copy-{hashlib.sha1(str(export_dir).encode()).hexdigest()[:8]}"


def own_dataset_name(export_dir: Path, manifest: dict[str, Any]) -> tuple[str, bool]:
    """The name of the dataset ``export_dir`` owns or may create, and whether a dataset
    holds it: the manifest's name, unless another directory (or export) holds it; then
    the copy name of this directory. One query for both (a build is mostly round trips).

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> path = tiny_export().resolve()
        >>> own_dataset_name(path, read_manifest(path))  # nobody holds it yet
        ('tiny-...', False)
    """
    candidates = _candidates(export_dir, manifest)
    for name, info in candidates.items():
        if info is None or _owns(info, manifest["export_id"], export_dir):
            return name, info is not None
    raise FileExistsError(f"FiftyOne datasets {list(candidates)} belong to other exports; "
                          f"{export_dir} (export {manifest['export_id']}) replaces neither")


def _candidates(export_dir: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The names the directory's dataset may have (the manifest's, then the copy name), each
    with the ``info`` of the dataset holding it (None when free), in one query."""
    import fiftyone.core.odm as foo

    base = manifest["fiftyone"]["dataset"] or default_dataset_name(manifest)
    names = [base, copy_dataset_name(base, export_dir)]
    held = {doc["name"]: doc.get("info") or {} for doc in foo.get_db_conn().datasets.find(
        {"name": {"$in": names}}, {"name": True, "info": True})}
    return {name: held.get(name) for name in names}


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
    for name, info in _candidates(export_dir, manifest).items():
        if info is not None and _owns(info, manifest["export_id"], export_dir):
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


def fiftyone_dataset_name(export_dir: str | Path, rebuild: bool = False,
                          expected_count: int | None = None,
                          manifest: dict[str, Any] | None = None,
                          collection: SampleCollection | None = None) -> str:
    """The name of the dataset ``export_dir`` owns, (re)built unless it is up to date.

    Up to date means built from this export id and directory with ``expected_count``
    samples (when given). ``rebuild=True`` always builds. Runs under
    :func:`dataset_lock`, so concurrent callers build once and the others find it.
    ``manifest``: the directory's manifest, when the caller has just written it;
    ``collection``: a sample collection the caller started (:func:`export_collection`).

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> fiftyone_dataset_name(tiny_export())
        'tiny-...'
    """
    from armory_datasets.database import import_fiftyone

    export_dir = Path(export_dir).resolve()
    manifest = manifest if manifest is not None else _manifest_of(export_dir)
    fo = import_fiftyone()
    base = manifest["fiftyone"]["dataset"] or default_dataset_name(manifest)
    with dataset_lock(base):
        name, exists = own_dataset_name(export_dir, manifest)
        if not rebuild and exists:
            if expected_count is None or fo.load_dataset(name).count() == expected_count:
                return name
        return _build_logged(export_dir, manifest, name, overwrite=True, collection=collection,
                             exists=exists)


def export_collection() -> AbstractContextManager[SampleCollection]:
    """Start making the sample collection of an export's dataset, with a unique
    ``record_key`` index, while the caller finishes the directory. (The saved view's
    ``(sample_index, chain)`` index is FiftyOne's to make when the view is first used.)

    Example:
        >>> with export_collection() as collection:
        ...     collection.indexes.result()[-1]
        'record_key_1'
    """
    from pymongo import IndexModel

    return new_sample_collection((IndexModel("record_key", unique=True),))


def export_fiftyone_dataset(export_dir: str | Path, rebuild: bool = False,
                            expected_count: int | None = None) -> Any:
    """The dataset ``export_dir`` owns: loaded if it is up to date, else (re)built
    (:func:`fiftyone_dataset_name`).

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> export_fiftyone_dataset(tiny_export()).count()
        16
    """
    from armory_datasets.database import import_fiftyone

    return import_fiftyone().load_dataset(fiftyone_dataset_name(export_dir, rebuild, expected_count))


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
    from armory_datasets.database import import_fiftyone

    export_dir = Path(export_dir).resolve()
    manifest = _manifest_of(export_dir)
    name = name or manifest["fiftyone"]["dataset"] or default_dataset_name(manifest)
    return import_fiftyone().load_dataset(_build_logged(export_dir, manifest, name, overwrite))


def _manifest_of(export_dir: Path) -> dict[str, Any]:
    manifest = read_manifest(export_dir)
    if manifest is None:
        raise FileNotFoundError(f"{export_dir}: no manifest.json; expected an export directory")
    return manifest


def _build_logged(export_dir: Path, manifest: dict[str, Any], name: str, overwrite: bool,
                  collection: SampleCollection | None = None, exists: bool | None = None) -> str:
    from armory_datasets.database import database_errors

    with (database_errors(f"building FiftyOne dataset {name!r} from {export_dir}"),
          export_collection() if collection is None else nullcontext(collection) as collection,
          paused_cyclic_gc()):  # thousands of documents alive at once, none in a cycle
        return _build(export_dir, manifest, name, overwrite, collection, exists)


def _build(export_dir: Path, manifest: dict[str, Any], name: str, overwrite: bool,
           collection: SampleCollection, exists: bool | None = None) -> str:
    """Build dataset ``name``; ``exists``: whether a dataset holds the name, when the caller
    has just looked it up under the dataset's lock (else it is looked up)."""
    from armory_datasets.database import import_fiftyone

    fo = import_fiftyone()
    import fiftyone.core.odm as foo
    import fiftyone.core.utils as fou

    if fo.dataset_exists(name) if exists is None else exists:
        existing = fo.load_dataset(name)
        if not owned_by(existing, manifest["export_id"], export_dir):
            info = existing.info or {}
            raise FileExistsError(
                f"FiftyOne dataset {name!r} belongs to export {info.get('export_id')!r} in "
                f"{info.get('export_dir')!r}, not to {export_dir}; it is left as it is")
        if not overwrite:
            raise FileExistsError(f"FiftyOne dataset {name!r} exists; pass overwrite=True to rebuild it")
        fo.delete_dataset(name)
    from armory_datasets.reading import listed_parts, part_schema  # reading imports store

    parts = listed_parts(export_dir, manifest)
    schema = pa.unify_schemas([part_schema(p, export_dir) for p in parts]) if parts else pa.schema([])
    # The info first: a dataset a crash leaves half-built is still known as this export's.
    new = insert_dataset(name, {"export_dir": str(export_dir), "export_id": manifest["export_id"],
                                "evaluation": manifest["evaluation"]}, collection)
    builder = SampleDocuments(export_dir, schema, manifest["class_names"], new.id, parts,
                              media.legacy_heatmap_cache(manifest["export_id"]))
    documents = builder.documents()

    def declare() -> None:  # the fields and App config of the documents made
        declare_dataset(new, *_declarations(fo, schema, builder), {BY_SAMPLE_VIEW: [by_sample(fo)]},
                        description=manifest["evaluation"]["description"],
                        default_classes=manifest["class_names"])

    # While the database makes the indexes: the first documents and, when they are all
    # of them, the dataset's declaration, so that only their insert waits for the indexes.
    first = list(islice(documents, INSERT_BATCH))
    complete = len(first) < INSERT_BATCH
    if complete:
        declare()
    collection.indexes.result()
    # Fixed-size batches keep memory flat (FiftyOne's default batcher grows them to 100k).
    foo.insert_documents(chain(first, documents), foo.get_db_conn()[collection.name],
                         progress=False, batcher=partial(fou.StaticBatcher, batch_size=INSERT_BATCH))
    if not complete:
        declare()
    return name


def by_sample(fo: Any) -> Any:
    """The stage of the ``by_sample`` view: the chains of each sample side by side. FiftyOne
    makes its ``(sample_index, chain)`` index when the view is first used (``create_index``).

    Example:
        >>> import fiftyone as fo
        >>> by_sample(fo)
        GroupBy(field_or_expr='sample_index', order_by='chain', ..., create_index=True, order_by_key=None)
    """
    return fo.GroupBy("sample_index", order_by="chain", create_index=True)


def _declarations(fo: Any, schema: pa.Schema, builder: SampleDocuments) -> tuple[dict[str, Any], Any]:
    """The fields of the documents ``builder`` made, and the App config over them."""
    fields = _fields(fo, schema, builder)
    config = app_config(fo, {**default_fields(public=True), **fields}, schema, list(builder.heatmaps))
    return fields, config


def _fields(fo: Any, schema: pa.Schema, builder: SampleDocuments) -> dict[str, Any]:
    """The FiftyOne fields of the inserted documents, label attributes nested in their labels."""
    if builder.classification and builder.detection:
        raise ValueError("table: holds both classification (target/prediction) and detection "
                         "(ground_truth_objects/predicted_objects) records; expected one task "
                         "per export")
    from fiftyone.core.odm.utils import create_field

    fields: dict[str, Any] = {}
    if builder.classification:
        for field in CLASSIFICATION_LABELS:
            fields[field] = create_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification,
                                         fields=[create_field("class_index", fo.IntField)])
    if builder.detection:
        attributes = [create_field("class_index", fo.IntField)]
        if builder.evaluated:
            attributes += [create_field("eval", fo.StringField), create_field("eval_iou", fo.FloatField),
                           create_field("eval_id", fo.StringField)]
        for field in DETECTION_LABELS.values():
            detections = create_field("detections", fo.ListField, subfield=fo.EmbeddedDocumentField,
                                      embedded_doc_type=fo.Detection, fields=attributes)
            fields[field] = create_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections,
                                         fields=[detections])
    for field in builder.heatmaps:
        fields[field] = create_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Heatmap)
    for arrow_field in schema:
        path = VOCABULARY.fiftyone_path(arrow_field.name)
        if "." in path or path == "filepath" or (arrow_field.name not in builder.seen
                                                 and arrow_field.name not in _KEYS):
            continue  # label attributes, built-ins, and columns without a value
        fields[path] = _field(fo, arrow_field.type)
    return fields


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


def app_config(fo: Any, fields: dict[str, Any], schema: pa.Schema, heatmaps: list[str]) -> Any:
    """The App settings of an export's dataset: sidebar groups, ticked fields, colours.

    ``fields``: the dataset's schema (name to FiftyOne field, without private fields).
    Groups ``labels`` (ticked), ``heatmaps`` (ticked), ``metrics`` (numeric and boolean
    columns) and ``keys`` (which record it is) come first; FiftyOne's default groups
    keep every other field.

    Example:
        >>> import fiftyone as fo
        >>> config = app_config(fo, {"tags": fo.ListField(fo.StringField()), "correct": fo.BooleanField()},
        ...                     pa.schema([("correct", pa.bool_())]), [])
        >>> [(g.name, g.paths) for g in config.sidebar_groups][:5]
        [('tags', ['tags', '_label_tags']), ('labels', []), ('heatmaps', []), ('metrics', ['correct']), ('keys', [])]
    """
    labels = [name for name, field in fields.items() if name not in heatmaps
              and isinstance(field, fo.EmbeddedDocumentField) and issubclass(field.document_type, fo.Label)]
    keys, metrics = [], []
    for arrow_field in schema:
        path = VOCABULARY.fiftyone_path(arrow_field.name)
        if "." in path or path == "filepath" or path not in fields or path in labels:
            continue
        column = VOCABULARY.columns.get(arrow_field.name)
        if (column is not None and column.kind in _KEY_KINDS) or arrow_field.name.endswith("_path"):
            keys.append(path)
        elif _numeric(arrow_field.type):
            metrics.append(path)
    taken = set(labels + heatmaps + metrics + keys)
    defaults = {group.name: [p for p in group.paths if p not in taken]
                for group in fo.DatasetAppConfig.default_sidebar_groups(_Schema(fields))}
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


class _Schema:
    """What ``DatasetAppConfig.default_sidebar_groups`` reads of a sample collection, for a
    dataset whose schema is declared but not loaded (loading it costs a round trip)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def get_field_schema(self) -> dict[str, Any]:
        return self.fields

    def _has_frame_fields(self) -> bool:
        return False


def _numeric(arrow_type: pa.DataType) -> bool:
    if pa.types.is_list(arrow_type):
        return _numeric(arrow_type.value_type)
    return pa.types.is_boolean(arrow_type) or pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
