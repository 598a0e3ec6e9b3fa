"""Spare sample collections: each dataset build renames a spare into place and leaves the next.

What the user relies on: every dataset has its own collection with FiftyOne's indexes
and a unique ``record_key``, whether its collection was a spare, a spare a killed
process left half made, one that builds raced for, or none (dropped by hand, or by
FiftyOne's orphan cleanup).
"""

from __future__ import annotations

import threading

import pytest
from pymongo import IndexModel

from armory_datasets.database import import_fiftyone
from armory_datasets.store.fiftyone_dataset import DEFAULT_INDEXES
from armory_datasets.store.spare_collections import SPARE_PREFIX, _prefix, make_spare_later, prepare_collection

from test_fiftyone_ownership import small_export

EXPORT_INDEXES = [IndexModel(field) for field in DEFAULT_INDEXES] + [IndexModel("record_key", unique=True)]
EXPECTED = {"_id_": False, "filepath_1": False, "created_at_1": False, "last_modified_at_1": False,
            "record_key_1": True}  # index name: unique


@pytest.fixture
def database():
    import fiftyone.core.odm as foo

    import_fiftyone()
    database = foo.get_db_conn()
    make_spare_later(database, EXPORT_INDEXES).result()  # none in flight from an earlier test
    for name in spares(database):
        database.drop_collection(name)
    return database


def spares(database) -> list[str]:
    return sorted(n for n in database.list_collection_names() if n.startswith(SPARE_PREFIX))


def unique_flags(collection) -> dict[str, bool]:
    """Each index of ``collection``: whether it is unique."""
    return {name: bool(info.get("unique")) for name, info in collection.index_information().items()}


def indexes_of(database, dataset_name: str) -> dict[str, bool]:
    return unique_flags(database[import_fiftyone().load_dataset(dataset_name)._sample_collection_name])


def export(tmp_path, name: str, n: int = 20) -> str:
    """An export built with its dataset at close; the dataset's name."""
    from armory_datasets import open_export
    from armory_datasets.reading_fiftyone import dataset_name

    name = dataset_name(open_export(small_export(tmp_path / name, n)))
    assert import_fiftyone().load_dataset(name).count() == n
    return name


def test_each_build_takes_the_spare_the_previous_one_left(database, tmp_path):
    first = export(tmp_path, "first")  # the database had no spare: made its own, and one for the next
    make_spare_later(database, EXPORT_INDEXES).result()
    (left,) = spares(database)
    second = export(tmp_path, "second")
    assert left not in spares(database)  # renamed into the second dataset
    make_spare_later(database, EXPORT_INDEXES).result()
    assert len(spares(database)) == 1  # and the next one made, not more
    for name in (first, second):
        assert indexes_of(database, name) == EXPECTED
    sample_collections = {import_fiftyone().load_dataset(n)._sample_collection_name for n in (first, second)}
    assert len(sample_collections) == 2


def test_a_spare_left_half_made_is_completed(database, tmp_path):
    """A process killed while making a spare leaves a collection without some indexes."""
    half = f"{_prefix(EXPORT_INDEXES)}halfmade"
    database[half].create_index("filepath")
    name = export(tmp_path, "after-a-kill")
    assert half not in spares(database)
    assert indexes_of(database, name) == EXPECTED


def test_a_spare_with_other_indexes_is_not_taken(database, tmp_path):
    other = f"{_prefix([IndexModel('elsewhere')])}other"
    database[other].create_index("elsewhere")
    name = export(tmp_path, "own-indexes")
    assert other in spares(database)
    assert indexes_of(database, name) == EXPECTED
    database.drop_collection(other)


def test_builds_racing_for_one_spare_each_get_a_complete_collection(database):
    make_spare_later(database, EXPORT_INDEXES).result()
    (spare,) = spares(database)
    targets = [f"race.{i}" for i in range(6)]
    failures = []

    def build(target: str) -> None:
        try:
            prepare_collection(database, target, EXPORT_INDEXES)
        except Exception as error:  # noqa: BLE001 -- reported below
            failures.append(error)

    threads = [threading.Thread(target=build, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert spare not in spares(database)
    for target in targets:
        assert unique_flags(database[target]) == EXPECTED
        database.drop_collection(target)


def test_fiftyones_orphan_cleanup_keeps_spares_and_builds_survive_losing_them(database, tmp_path):
    import fiftyone.core.odm as foo

    export(tmp_path, "before-cleanup")
    make_spare_later(database, EXPORT_INDEXES).result()
    kept = spares(database)
    foo.drop_orphan_collections()
    assert spares(database) == kept and len(kept) == 1
    database.drop_collection(kept[0])  # dropped by hand
    name = export(tmp_path, "after-drop")
    assert indexes_of(database, name) == EXPECTED
