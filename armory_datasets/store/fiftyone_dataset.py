"""A FiftyOne image dataset's documents, written with FiftyOne's own document classes.

FiftyOne's ``Dataset`` API saves its document, and often reloads it, after every change:
creation, the media type, each schema merge, each saved view. That is about 0.15 s per
dataset, more than an export of 256 samples spends on everything else. Here the same
documents are built in memory with FiftyOne's ODM classes (``DatasetDocument``,
``SampleFieldDocument.from_field``, ``DatasetAppConfig``, ``SavedViewDocument``), as
``fiftyone.core.dataset`` builds them, and written in two round trips:
:func:`insert_dataset` (the empty dataset, whose ``info`` says who owns it) and
:func:`declare_dataset` (its schema, App config and saved views, once every sample
document is made). ``fo.load_dataset`` reads the result as any other dataset; the tests
check it against what FiftyOne's API makes. The sample collection and its indexes (FiftyOne's
three defaults and the caller's) come first, from :func:`new_sample_collection` in a
thread, while the caller does other work: a spare that the previous build left is
renamed into place (:mod:`~armory_datasets.store.spare_collections`), or a new one is made.

Example:
    >>> from armory_datasets.database import import_fiftyone
    >>> fo = import_fiftyone()
    >>> with new_sample_collection() as collection:
    ...     new = insert_dataset("fiftyone-dataset-example", {"owner": "me"}, collection)
    ...     declare_dataset(new, {"score": fo.FloatField()}, fo.DatasetAppConfig(), views={})
    >>> collection.indexes.result()
    ['filepath_1', 'created_at_1', 'last_modified_at_1']
    >>> fo.load_dataset("fiftyone-dataset-example").get_field("score")
    <fiftyone.core.fields.FloatField object at ...>
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import Any

from armory_datasets.store.spare_collections import make_spare_later, prepare_collection
from armory_datasets.store.threads import background

DEFAULT_INDEXES = ("filepath", "created_at", "last_modified_at")
"""The indexes ``fo.Dataset()`` gives every sample collection."""


@dataclass
class SampleCollection:
    """A new sample collection: its id (the dataset's to be), its index build, and whether
    a dataset has adopted it."""

    id: Any
    indexes: Future[list[str]]
    adopted: bool = False

    @property
    def name(self) -> str:
        """The collection's name, as FiftyOne names a dataset's samples.

        Example:
            >>> from bson import ObjectId
            >>> SampleCollection(ObjectId("6b115f17c66f1d3583966af2"), Future()).name
            'samples.6b115f17c66f1d3583966af2'
        """
        return f"samples.{self.id}"


@dataclass(frozen=True)
class NewDataset:
    """An inserted, still empty dataset: its name, creation time and sample collection."""

    name: str
    created_at: datetime
    collection: SampleCollection

    @property
    def id(self) -> Any:
        """The dataset's id, which is its sample collection's.

        Example:
            >>> NewDataset("d", None, SampleCollection("6b115f17c66f1d3583966af2", Future())).id
            '6b115f17c66f1d3583966af2'
        """
        return self.collection.id


@contextmanager
def new_sample_collection(indexes: tuple[Any, ...] = ()) -> Iterator[SampleCollection]:
    """Start making a sample collection with FiftyOne's default indexes and ``indexes``
    (pymongo ``IndexModel``s) in the database, from a spare when there is one, and
    return at once. On exit: wait for them, and drop the collection unless
    :func:`insert_dataset` adopted it; if it did, start making a spare for the next.

    Example:
        >>> from pymongo import IndexModel
        >>> with new_sample_collection((IndexModel("score"),)) as collection:
        ...     collection.indexes.result()
        ['filepath_1', 'created_at_1', 'last_modified_at_1', 'score_1']
    """
    import fiftyone.core.odm as foo
    from bson import ObjectId
    from pymongo import IndexModel
    from pymongo.errors import ConnectionFailure

    from armory_datasets.database import database_errors

    collection_id = ObjectId()
    with database_errors("connecting to make a FiftyOne sample collection"):
        database = foo.get_db_conn()
    target = database[f"samples.{collection_id}"]
    models = [IndexModel(field) for field in DEFAULT_INDEXES] + list(indexes)
    collection = SampleCollection(
        collection_id, background("fiftyone-indexes").submit(prepare_collection, database, target.name, models))
    try:
        yield collection
    finally:
        failed = collection.indexes.exception()  # never leave the index build running
        if not collection.adopted and failed is None:
            try:
                target.drop()
            except ConnectionFailure:
                pass  # the database went away: the error of the work it was for is the one to show
    if collection.adopted:
        make_spare_later(database, models)  # the next dataset's, unless one is left


def insert_dataset(name: str, info: dict[str, Any], collection: SampleCollection) -> NewDataset:
    """Insert a persistent, empty image dataset ``name`` with ``info``, on ``collection``.
    Raises ValueError if a dataset holds the name or its slug.

    Example:
        >>> with new_sample_collection() as collection:
        ...     insert_dataset("insert-example", {}, collection).name
        'insert-example'
    """
    import fiftyone.core.odm as foo
    import fiftyone.core.utils as fou

    slug = fou.to_slug(name)
    conn = foo.get_db_conn()
    clash = conn.datasets.find_one({"$or": [{"name": name}, {"slug": slug}]}, {"name": True})
    if clash is not None:
        raise ValueError(f"FiftyOne dataset name {name!r}: dataset {clash['name']!r} holds it "
                         f"or its slug {slug!r}; expected a free name")
    now = _utcnow()
    doc = {**deepcopy(_new_dataset_document()), "_id": collection.id, "name": name, "slug": slug,
           "created_at": now, "last_modified_at": now, "sample_collection_name": collection.name,
           "sample_fields": _field_documents(default_fields(), now), "info": info}
    conn.datasets.insert_one(doc)
    collection.adopted = True
    return NewDataset(name, now, collection)


def declare_dataset(new: NewDataset, fields: dict[str, Any], app_config: Any, views: dict[str, list[Any]],
                    description: str | None = None, default_classes: list[str] | None = None) -> None:
    """Declare ``fields`` (name to FiftyOne field) beside FiftyOne's defaults, and set the App
    config, description, default classes and ``views`` (name to view stages) in one update.

    Example:
        >>> import fiftyone as fo
        >>> with new_sample_collection() as collection:
        ...     new = insert_dataset("declare-example", {}, collection)
        ...     declare_dataset(new, {}, fo.DatasetAppConfig(), {"first": [fo.Limit(1)]})
        >>> fo.load_dataset("declare-example").list_saved_views()
        ['first']
    """
    import fiftyone.core.odm as foo
    import fiftyone.core.utils as fou
    from bson import ObjectId, json_util

    now = _utcnow()
    view_docs = [foo.SavedViewDocument(
        id=ObjectId(), dataset_id=new.id, name=name, slug=fou.to_slug(name), created_at=now, last_modified_at=now,
        # FiftyOne's saved-view format: each stage's `_serialize`, as Dataset.save_view writes it
        view_stages=[json_util.dumps(stage._serialize(include_uuid=False)) for stage in stages],
    ) for name, stages in views.items()]
    conn = foo.get_db_conn()
    if view_docs:
        conn.views.insert_many([view.to_mongo() for view in view_docs])
    sample_fields = _field_documents(default_fields(), new.created_at) + _field_documents(fields, now)
    update = {"sample_fields": sample_fields,
              "app_config": app_config.to_mongo(), "default_classes": default_classes or [],
              "saved_views": [view.id for view in view_docs], "last_modified_at": now}
    if description is not None:  # FiftyOne stores no key for an unset description
        update["description"] = description
    conn.datasets.update_one({"_id": new.id}, {"$set": update})


def default_fields(public: bool = False) -> dict[str, Any]:
    """The fields ``fo.Dataset()`` declares, with ``metadata`` as an image dataset's;
    ``public``: without the private ones (``_rand`` ...), as ``get_field_schema()`` lists them.

    Example:
        >>> list(default_fields(public=True))
        ['id', 'filepath', 'tags', 'metadata', 'created_at', 'last_modified_at']
    """
    return dict(_default_fields(public))


@cache
def _default_fields(public: bool) -> dict[str, Any]:
    import fiftyone.core.fields as fof
    import fiftyone.core.metadata as fome
    import fiftyone.core.odm as foo

    fields: dict[str, Any] = {}
    for name, field in foo.DatasetSampleDocument._fields.items():
        if name == "media_reference" or (public and name.startswith("_")):
            continue  # as fo.Dataset(): declared only when a dataset adopts media references
        fields[name] = (foo.create_field(name, fof.EmbeddedDocumentField, embedded_doc_type=fome.ImageMetadata)
                        if name == "metadata" else field.copy())
    return fields


@cache
def _new_dataset_document() -> dict[str, Any]:
    """FiftyOne's document of a new persistent image dataset, but what each sets (id, names, times, fields)."""
    import fiftyone.constants as focn
    import fiftyone.core.odm as foo

    return foo.DatasetDocument(version=focn.VERSION, media_type="image", persistent=True,
                               app_config=foo.DatasetAppConfig()).to_mongo().to_dict()


_FIELD_DOCUMENTS: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}


def _field_documents(fields: dict[str, Any], created_at: datetime) -> list[dict[str, Any]]:
    """FiftyOne's documents of ``fields`` (``SampleFieldDocument.from_field``), made ``created_at``.

    mongoengine takes about 0.3 ms a field, as long as the rest of a dataset's
    documents together, so each distinct field is converted once per process.
    """
    import fiftyone.core.odm as foo

    documents = []
    for name, field in fields.items():
        key = (name, _signature(field))
        document = _FIELD_DOCUMENTS.get(key)
        if document is None:
            if field.name != name:  # e.g. fo.IntField(): named (and its db_field set) as FiftyOne names fields
                field = foo.create_field(name, **foo.get_field_kwargs(field))
            document = _FIELD_DOCUMENTS[key] = foo.SampleFieldDocument.from_field(field).to_mongo().to_dict()
        documents.append(_made_at(document, created_at))
    return documents


def _signature(field: Any) -> tuple[Any, ...]:
    """What a field's document is made of: its type, document type, flags, element and nested fields."""
    element = getattr(field, "field", None)
    return (type(field), getattr(field, "document_type", None), field.db_field, field.read_only,
            field.description, repr(field.info), None if element is None else _signature(element),
            tuple((nested.name, _signature(nested)) for nested in getattr(field, "fields", None) or ()))


def _made_at(document: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    return {**document, "created_at": created_at,
            "fields": [_made_at(nested, created_at) for nested in document["fields"]]}


def _utcnow() -> datetime:
    """Now, as FiftyOne stores times (naive UTC, to the millisecond as BSON keeps them)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
