"""ExportWriter and the Parquet table: merging, schema, streaming, atomicity, resume/refuse.

These tests write no FiftyOne dataset (``fiftyone=False``); tests/test_store_fiftyone.py
covers that side.

Example: ``./dev test tests/test_store_writer.py -q``
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import duckdb
import jsonschema
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from armory_datasets.schema import VOCABULARY, parse_arrow_type
from armory_datasets.store import ExportWriter, part_paths, read_manifest, unified_schema
from armory_datasets.store.manifest import MANIFEST_SCHEMA_FILE


def images(n: int, size: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def writer(path, **options) -> ExportWriter:
    options.setdefault("fiftyone", False)
    return ExportWriter(path, {"name": "test", "description": "d", "author": "a"}, **options)


def add_batch(w: ExportWriter, exporter: str, chain: str, indices, batch: int = 0, **fields) -> None:
    indices = list(indices)
    w.add_records(exporter, chain, indices, fields, batch=batch,
                  positions=list(range(len(indices))), images=images(len(indices)))


def read(path) -> pa.Table:
    table = ds.dataset(path / "table", schema=unified_schema(path / "table")).to_table()
    return table.sort_by([("chain", "ascending"), ("sample_index", "ascending")])


def test_exporters_merge_into_one_record_per_chain_and_sample(tmp_path):
    with writer(tmp_path / "e") as w:
        a = w.register_exporter("a", "T", "always()", {})
        b = w.register_exporter("b", "T", "target == 1", {})
        add_batch(w, a, "benign", [0, 1, 2], target=[0, 1, 2])
        w.add_records(b, "benign", [1, 5], {"target": [1, 1], "score": [0.5, 0.7]}, batch=0,
                      positions=[1, 3], images=images(2))
        add_batch(w, a, "fgsm", [1], target=[1])
        w.end_batch()
    table = read(tmp_path / "e")
    assert table.column("record_key").to_pylist() == ["benign/0", "benign/1", "benign/2",
                                                      "benign/5", "fgsm/1"]
    assert table.column("exporters").to_pylist() == [["a"], ["a", "b"], ["a"], ["b"], ["a"]]
    assert table.column("score").to_pylist() == [None, 0.5, None, 0.7, None]
    assert table.column("target").to_pylist() == [0, 1, 2, 1, 1]
    assert table.column("position").to_pylist() == [0, 1, 2, 3, 0]
    assert len(set(table.column("export_id").to_pylist())) == 1
    counts = read_manifest(tmp_path / "e")["counts"]
    assert counts == {"records": 5, "per_chain": {"benign": 4, "fgsm": 1},
                      "per_exporter": {"a": 4, "b": 2}}


contributions = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["benign", "fgsm"]),
              st.sets(st.integers(0, 12), min_size=1, max_size=6)),
    min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contributions)
def test_merge_matches_a_plain_python_reference(tmp_path_factory, given_contributions):
    path = tmp_path_factory.mktemp("merge") / "e"
    expected: dict[str, dict] = {}
    with writer(path) as w:
        for k, (exporter, chain, indices) in enumerate(given_contributions):
            indices = sorted(indices)
            values = [100 * k + i for i in indices]
            w.add_records(exporter, chain, indices, {f"v_{exporter}": values, "first": values},
                          batch=0, positions=indices, images=images(len(indices)))
            for i, value in zip(indices, values):
                row = expected.setdefault(f"{chain}/{i}", {"exporters": [], "first": value})
                row.setdefault(f"v_{exporter}", value)
                if exporter not in row["exporters"]:
                    row["exporters"].append(exporter)
        w.end_batch()
    order = list(dict.fromkeys(exporter for exporter, _, _ in given_contributions))
    table = read(path)
    assert sorted(table.column("record_key").to_pylist()) == sorted(expected)
    for row in table.to_pylist():
        want = expected[row["record_key"]]
        assert row["exporters"] == sorted(want["exporters"], key=order.index)  # batch call order
        assert row["first"] == want["first"]
        for exporter in "abc":
            assert row.get(f"v_{exporter}") == want.get(f"v_{exporter}")


def test_each_record_image_is_written_once_losslessly(tmp_path):
    from PIL import Image

    pixels = images(2, size=6, seed=3)
    with writer(tmp_path / "e") as w:
        w.add_records("a", "benign", [7, 8], {}, batch=0, positions=[0, 1], images=pixels)
        w.add_records("b", "benign", [7], {}, batch=0, positions=[0], images=np.zeros((1, 6, 6, 3), np.uint8))
        w.end_batch()
    row = read(tmp_path / "e").to_pylist()[0]
    assert row["image_path"] == "media/images/benign/00000007.png"
    assert (row["width"], row["height"]) == (6, 6)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "e" / row["image_path"])), pixels[0])


def test_every_part_has_the_vocabulary_types_and_the_manifest_matches_its_schema(tmp_path):
    with writer(tmp_path / "e") as w:
        add_batch(w, "a", "benign", [0, 1], target=[0, 1], logits=np.ones((2, 3), np.float32),
                  site=["x", "y"])
        w.end_batch()
        add_batch(w, "a", "benign", [2], batch=1, target=[2], fgsm_epsilon=[0.1])
        w.end_batch()
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    jsonschema.validate(manifest, json.loads(MANIFEST_SCHEMA_FILE.read_text()))
    dynamic = {c["name"]: parse_arrow_type(c["arrow_type"]) for c in manifest["dynamic_columns"]}
    assert dynamic == {"site": pa.string(), "fgsm_epsilon": pa.float64()}
    parts = part_paths(tmp_path / "e" / "table")
    assert [p.name for p in parts] == manifest["table"]["parts"] == ["part-00000.parquet",
                                                                      "part-00001.parquet"]
    for part in parts:
        schema = pq.read_schema(part)
        for column in VOCABULARY.columns.values():
            field = schema.field(column.name)
            assert field.type == column.arrow_type, column.name
            assert field.nullable == column.nullable, column.name
        for name in schema.names:
            assert name in VOCABULARY or schema.field(name).type == dynamic[name]
    assert manifest["status"] == "complete"
    assert manifest["exporters"] == []


def test_pyarrow_pandas_and_duckdb_read_every_part(tmp_path):
    with writer(tmp_path / "e") as w:
        add_batch(w, "a", "benign", [0, 1], target=[0, 1])
        w.end_batch()
        add_batch(w, "a", "benign", [2, 3], batch=1, target=[2, 3], late=["p", "q"])
        w.end_batch()
    table_dir = tmp_path / "e" / "table"
    assert len(part_paths(table_dir)) == 2  # the new column started a new part
    arrow = read(tmp_path / "e")
    assert arrow.column("late").to_pylist() == [None, None, "p", "q"]
    # at close every part gets the unified schema, so plain reads of the folder see it all
    assert {pq.read_schema(p) == unified_schema(table_dir) for p in part_paths(table_dir)} == {True}
    plain = pq.read_table(table_dir).sort_by("sample_index")
    assert plain.column("late").to_pylist() == [None, None, "p", "q"]
    frame = pd.read_parquet(table_dir).sort_values("sample_index")
    assert frame["late"].tolist()[2:] == ["p", "q"] and frame["target"].tolist() == [0, 1, 2, 3]
    rows = duckdb.sql(f"SELECT sample_index, late FROM read_parquet('{table_dir}/*.parquet') "
                      f"ORDER BY sample_index").fetchall()
    assert rows == [(0, None), (1, None), (2, "p"), (3, "q")]


def test_row_groups_stream_and_parts_roll_by_size(tmp_path):
    with writer(tmp_path / "e", rows_per_group=3, rows_per_part=6) as w:
        for b in range(5):
            add_batch(w, "a", "benign", range(2 * b, 2 * b + 2), batch=b, target=[0, 1])
            w.end_batch()
        open_parts = sorted(p.name for p in (tmp_path / "e" / "table").iterdir())
    assert open_parts == [".part-00001.parquet.tmp", "part-00000.parquet"]  # hidden: readers skip it
    parts = part_paths(tmp_path / "e" / "table")
    assert [pq.ParquetFile(p).metadata.num_rows for p in parts] == [6, 4]
    assert pq.ParquetFile(parts[0]).metadata.num_row_groups == 2


def test_bad_input_raises_and_writes_nothing(tmp_path):
    w = writer(tmp_path / "e")
    with pytest.raises(ValueError, match=r"column 'target': got 1 values; expected 2"):
        w.add_records("a", "benign", [0, 1], {"target": [1]}, batch=0, positions=[0, 1],
                      images=images(2))
    with pytest.raises(ValueError, match=r"column 'target'.*expected values of type int64"):
        w.add_records("a", "benign", [0], {"target": ["cat"]}, batch=0, positions=[0], images=images(1))
    with pytest.raises(ValueError, match=r"images: got float64 array"):
        w.add_records("a", "benign", [0], {}, batch=0, positions=[0], images=np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"column 'tags': got 'tags'; expected a column name"):
        w.add_records("a", "benign", [0], {"tags": ["x"]}, batch=0, positions=[0], images=images(1))
    with pytest.raises(ValueError, match=r"sample_indices: \[3, 3\] repeats"):
        w.add_records("a", "benign", [3, 3], {}, batch=0, positions=[0, 1], images=images(2))
    w.add_records("a", "benign", [0], {"target": [1]}, batch=0, positions=[0])
    with pytest.raises(ValueError, match=r"record benign/0: no image"):
        w.end_batch()
    w.abort()
    assert not (tmp_path / "e").exists()


def test_a_sample_index_repeated_in_a_later_batch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"sample_index 1 of chain 'benign' \(batch 1\) was already"):
        with writer(tmp_path / "e") as w:
            add_batch(w, "a", "benign", [0, 1])
            w.end_batch()
            add_batch(w, "a", "benign", [1, 2], batch=1)


def test_complete_export_is_refused_unless_overwrite(tmp_path):
    with writer(tmp_path / "e") as w:
        add_batch(w, "a", "benign", [0, 1])
    first = read_manifest(tmp_path / "e")["export_id"]
    with pytest.raises(FileExistsError, match="complete export .*overwrite=True"):
        writer(tmp_path / "e")
    with writer(tmp_path / "e", overwrite=True) as w:
        add_batch(w, "a", "benign", [5])
    assert read(tmp_path / "e").column("record_key").to_pylist() == ["benign/5"]
    assert read_manifest(tmp_path / "e")["export_id"] != first
    assert sorted(p.name for p in (tmp_path / "e" / "media" / "images" / "benign").iterdir()) == [
        "00000005.png"]


def test_foreign_directory_is_refused_unless_overwrite_which_keeps_foreign_files(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty and not an export"):
        writer(tmp_path / "e")
    with writer(tmp_path / "e", overwrite=True) as w:
        add_batch(w, "a", "benign", [0])
    assert (tmp_path / "e" / "notes.txt").read_text() == "mine"


def interrupted_export(path, batches: int) -> str:
    """Write ``batches`` batches of 2 records with one part per batch; never close."""
    w = writer(path, rows_per_part=1)
    w.register_exporter("a", "T", "always()", {"k": 1})
    for b in range(batches):
        add_batch(w, "a", "benign", [2 * b, 2 * b + 1], batch=b, target=[0, 1])
        w.end_batch()
    (path / "table" / ".part-00099.parquet.tmp").write_bytes(b"half a part")
    return w.export_id


def test_resume_skips_finished_records_and_keeps_the_export_id(tmp_path):
    export_id = interrupted_export(tmp_path / "e", batches=2)
    assert read_manifest(tmp_path / "e")["status"] == "writing"
    png = tmp_path / "e" / "media" / "images" / "benign" / "00000000.png"
    png.write_bytes(b"not rewritten for a finished record")
    with writer(tmp_path / "e") as w:
        assert w.resuming and w.export_id == export_id
        w.register_exporter("a", "T", "always()", {"k": 1})
        for b in range(3):
            add_batch(w, "a", "benign", [2 * b, 2 * b + 1], batch=b, target=[0, 1])
            w.end_batch()
    table = read(tmp_path / "e")
    assert table.column("sample_index").to_pylist() == list(range(6))
    assert set(table.column("export_id").to_pylist()) == {export_id}
    assert png.read_bytes() == b"not rewritten for a finished record"
    assert not list((tmp_path / "e").rglob("*.tmp"))
    assert read_manifest(tmp_path / "e")["counts"]["records"] == 6


def test_resume_replaces_the_torn_image_of_a_record_whose_part_was_not_finished(tmp_path):
    from PIL import Image

    interrupted_export(tmp_path / "e", batches=2)  # records 0-3 are in finished parts
    torn = tmp_path / "e" / "media" / "images" / "benign" / "00000004.png"
    torn.write_bytes(b"\x89PNG\r\n\x1a\n half")  # what a kill mid-write leaves under the name
    with writer(tmp_path / "e") as w:
        w.register_exporter("a", "T", "always()", {"k": 1})
        for b in range(3):
            add_batch(w, "a", "benign", [2 * b, 2 * b + 1], batch=b, target=[0, 1])
            w.end_batch()
    assert np.array_equal(np.asarray(Image.open(torn)), images(2)[0])
    assert read(tmp_path / "e").column("image_path").to_pylist()[4] == "media/images/benign/00000004.png"


def test_resume_refuses_other_exporters_or_evaluations_and_resume_false(tmp_path):
    interrupted_export(tmp_path / "e", batches=1)
    with pytest.raises(ValueError, match="exporter 'a' was"):
        writer(tmp_path / "e").register_exporter("a", "T", "always()", {"k": 2})
    with pytest.raises(ValueError, match="of evaluation 'test', not 'other'"):
        ExportWriter(tmp_path / "e", {"name": "other"}, fiftyone=False)
    with pytest.raises(FileExistsError, match="unfinished export .*resume=True"):
        writer(tmp_path / "e", resume=False)


def test_constants_and_null_only_columns(tmp_path):
    with writer(tmp_path / "e") as w:
        w.add_records("a", "benign", [0, 1], {"maybe": [None, None]}, batch=0, positions=[0, 1],
                      constants={"site": "lab", "shape": [1, 2]}, images=images(2))
        w.end_batch()
        w.add_records("a", "benign", [2], {"maybe": [np.float32(2.5)]}, batch=1, positions=[0],
                      images=images(1))
        w.end_batch()
    table = read(tmp_path / "e")
    assert table.column("site").to_pylist() == ["lab", "lab", None]
    assert table.column("shape").to_pylist() == [[1, 2], [1, 2], None]
    assert table.column("maybe").to_pylist() == [None, None, 2.5]
    assert table.schema.field("maybe").type == pa.float64()


def test_parquet_only_export_never_imports_fiftyone(tmp_path):
    code = f"""
        import sys
        import numpy as np
        from armory_datasets.criteria import always
        from armory_datasets.data import Images, ImageClassificationBatch
        from armory_datasets.export import ImageClassificationExporter
        from armory_datasets.store import ExportWriter
        batch = ImageClassificationBatch(Images(np.zeros((2, 1, 4, 4), np.uint8)), [0, 1],
                                         predictions=np.eye(2))
        with ExportWriter({str(tmp_path / 'e')!r}, {{"name": "p"}}, fiftyone=False) as w:
            e = ImageClassificationExporter(criterion=always())
            e.setup(writer=w)
            e.export(0, batch)
        assert "fiftyone" not in sys.modules, "fiftyone was imported"
        print("ok")
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@st.composite
def _arrow_arrays(draw):
    """Arrays of one nested type (strings, lists, structs, nulls), sometimes a slice."""
    kind = draw(st.sampled_from(["string", "float", "list", "list_of_lists", "struct"]))
    value = {"string": st.text(max_size=9), "float": st.floats(allow_nan=False),
             "list": st.lists(st.text(max_size=4), max_size=4),
             "list_of_lists": st.lists(st.lists(st.integers(0, 9), max_size=3), max_size=3),
             "struct": st.fixed_dictionaries({"a": st.text(max_size=4),
                                              "bb": st.lists(st.floats(0, 1), max_size=3)}),
             }[kind]
    rows = draw(st.lists(st.none() | value, min_size=1, max_size=8)
                .filter(lambda r: any(v is not None for v in r)))
    array = pa.array(rows)
    start = draw(st.integers(0, len(rows) - 1))
    return array.slice(start, draw(st.integers(1, len(rows) - start)))


@given(_arrow_arrays())
@settings(max_examples=200, deadline=None)
def test_the_record_size_bound_is_never_below_the_rows_estimates(array):
    """check_record_size skips its pass over the rows when this bound fits: it must hold."""
    from armory_datasets.store.column_types import _row_bytes, _total_bytes

    assert _total_bytes(array) >= int(np.broadcast_to(_row_bytes(array), len(array)).sum())


def test_rows_that_fit_are_accepted_even_when_the_batch_is_over_the_record_limit():
    from armory_datasets.store.column_types import MAX_RECORD_BYTES, check_record_size

    third = pa.array(["x" * (MAX_RECORD_BYTES // 3)] * 4)  # 4/3 of the limit in all, each row fits
    check_record_size({"notes": third}, 4)
    with pytest.raises(ValueError, match=r"record at position 2: about 8 MiB \(column 'notes'"):
        check_record_size({"notes": pa.array(["", "", "x" * MAX_RECORD_BYTES, ""])}, 4)
