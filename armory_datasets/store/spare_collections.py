"""Spare sample collections: made after one dataset is built, renamed into the next.

A new sample collection with FiftyOne's indexes and ours is six WiredTiger tables, and
the database makes each one durable as it creates it (six fdatasync calls a table, traced).
That costs 25-40 ms on this machine's disk whatever the export's size, and it is the
largest fixed cost of a small export. Renaming a collection within its database changes
only the catalog (about 1 ms). So a build renames a spare collection with its indexes
into place, and then a spare for the next build, in any process that shares the
database, is made in the background: once the build is done, or at once by a build
that found no spare (the first in a database). MongoDB offers no pool of prepared
collections, so this one is written here.

A spare is named ``armory_datasets_spare_samples.<digest of its indexes>.<id>``, so a
build only takes a spare made with its own indexes. FiftyOne's
``drop_orphan_collections`` leaves these names alone, because it only drops
``samples.``, ``frames.``, ``patches.`` and ``clips.`` names. Dropping a spare by hand
does no harm. Whoever takes a spare still asks for every index, so a spare that its
maker left half made (a killed process) is completed.

Example:
    >>> import fiftyone.core.odm as foo
    >>> from pymongo import IndexModel
    >>> database, models = foo.get_db_conn(), [IndexModel("spare_example")]
    >>> prepare_collection(database, "spare_example", models)  # made, and a spare started
    ['spare_example_1']
    >>> make_spare_later(database, models).result()  # waits for that spare
    >>> prepare_collection(database, "spare_example_2", models)  # renamed from the spare
    ['spare_example_1']
    >>> database.drop_collection("spare_example"), database.drop_collection("spare_example_2")  # doctest: +ELLIPSIS
    (...)
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import Future
from typing import Any

from armory_datasets.store.threads import background

__all__ = ["SPARE_PREFIX", "make_spare_later", "prepare_collection"]

SPARE_PREFIX = "armory_datasets_spare_samples."

_NAMESPACE_NOT_FOUND = 26  # MongoDB's code when another build renamed the spare first
_MAKING: Future[None] | None = None  # the spare this process is making


def prepare_collection(database: Any, name: str, models: list[Any]) -> list[str]:
    """Make the collection ``name`` with the index ``models``, from a spare when there is
    one; return the index names. When none was left, a spare for the next build is
    started at once.

    Every index is asked for even on a spare (a no-op, 1 ms), so a spare that its maker
    left half made is completed.
    """
    taken = _take_spare(database, name, models)
    made = database[name].create_indexes(models)
    if not taken:
        make_spare_later(database, models)
    return made


def make_spare_later(database: Any, models: list[Any]) -> Future[None]:
    """Start making a spare with the index ``models`` in the background, unless one is
    left or this process is making one."""
    global _MAKING
    if _MAKING is None or _MAKING.done():
        _MAKING = background("fiftyone-spare").submit(_make_spare, database, models)
    return _MAKING


def _take_spare(database: Any, target: str, models: list[Any]) -> bool:
    """Rename a spare made with the index ``models`` to ``target``; False when there is none.

    The spare this process is still making is waited for first. Two builds racing for one
    spare cannot both take it: a rename is atomic, and the build that loses tries the next.
    """
    if _MAKING is not None:
        _MAKING.exception()  # a spare that failed to be made is only a spare fewer
    from pymongo.errors import OperationFailure

    for name in sorted(_spares(database, models)):
        try:
            database[name].rename(target)
        except OperationFailure as error:
            if error.code != _NAMESPACE_NOT_FOUND:
                return False  # e.g. a role without renameCollectionSameDB: make the collection instead
            continue
        return True
    return False


def _make_spare(database: Any, models: list[Any]) -> None:
    from bson import ObjectId
    from pymongo.errors import PyMongoError

    try:
        if not _spares(database, models):
            database[f"{_prefix(models)}{ObjectId()}"].create_indexes(models)
    except PyMongoError:
        pass  # a spare is an optimization: the next build makes its own collection


def _spares(database: Any, models: list[Any]) -> list[str]:
    return database.list_collection_names(filter={"name": {"$regex": f"^{re.escape(_prefix(models))}"}})


def _prefix(models: list[Any]) -> str:
    """The name every spare with the index ``models`` starts with.

    Example:
        >>> from pymongo import IndexModel
        >>> _prefix([IndexModel("filepath")])
        'armory_datasets_spare_samples.31898f270407379e.'
    """
    from bson import json_util

    digest = hashlib.sha256(json_util.dumps([model.document for model in models]).encode()).hexdigest()
    return f"{SPARE_PREFIX}{digest[:16]}."


def _forget_in_child() -> None:
    global _MAKING
    _MAKING = None  # a forked child has no thread to finish its parent's spare


os.register_at_fork(after_in_child=_forget_in_child)
