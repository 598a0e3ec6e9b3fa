"""The shared Parquet footers follow the file: a part rewritten or damaged is read again."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from armory_datasets.store.footers import arrow_schema, footer, parquet_file, shared_footers


@shared_footers()
def test_a_part_renamed_over_or_rewritten_in_place_is_read_again(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    assert arrow_schema(path).names == ["x"] and footer(path) is footer(path)
    pq.write_table(pa.table({"x": [1, 2], "y": ["a", "b"]}), tmp_path / "tmp")
    os.replace(tmp_path / "tmp", path)  # as conform_parts gives a part new columns
    assert arrow_schema(path).names == ["x", "y"]
    assert parquet_file(path).read().column("y").to_pylist() == ["a", "b"]
    pq.write_table(pa.table({"z": [3.0]}), path)  # the same inode, new bytes
    assert parquet_file(path).read().to_pydict() == {"z": [3.0]}


@shared_footers()
def test_a_truncated_part_is_refused_not_read_with_its_old_footer(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"x": list(range(1000))}), path)
    footer(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises((OSError, pa.ArrowInvalid)):
        parquet_file(path).read()
    path.unlink()
    with pytest.raises(FileNotFoundError):
        arrow_schema(path)


def test_footers_are_shared_only_while_an_export_is_finished(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"x": [1]}), path)
    with shared_footers():
        with shared_footers():  # nested, as a build inside a close
            shared = footer(path)
        assert footer(path) is shared
    assert footer(path) is not footer(path)
