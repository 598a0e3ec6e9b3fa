"""Object criteria (any / all / count of boxes): one meaning in numpy, pyarrow, DuckDB,
Polars, Spark SQL and FiftyOne, the text syntax, and refusals of bad input. Spark needs
pyspark and Java; without them its tests are skipped with the reason."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from object_criteria_cases import (
    export_time_keys,
    make_object_table,
    object_criteria,
)
from engine_fixtures import spark  # noqa: F401 (pytest fixtures)

from armory_datasets import criteria as C
from armory_datasets.criteria import parse

EXAMPLES = 300


def arrow_keys(path: Path, criterion) -> set[str]:
    table = ds.dataset(path, format="parquet").to_table()
    return set(table.filter(criterion.arrow_mask(table)).column("record_key").to_pylist())


def duckdb_keys(path: Path, criterion) -> set[str]:
    query = f"SELECT record_key FROM read_parquet('{path}') WHERE {criterion.to_sql()}"
    return {row[0] for row in duckdb.sql(query).fetchall()}


def polars_keys(path: Path, criterion) -> set[str]:
    frame = pl.scan_parquet(path).filter(criterion.to_polars()).select("record_key").collect()
    return set(frame["record_key"].to_list())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       criterion=object_criteria(), as_arrow=st.booleans())
def test_export_time_equals_pyarrow_duckdb_and_polars(seed, sizes, criterion, as_arrow):
    table = make_object_table(seed, sizes)
    expected = export_time_keys(table, criterion, as_arrow)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "part-00000.parquet"
        pq.write_table(table.table, path, row_group_size=5)
        assert arrow_keys(path, criterion) == expected, str(criterion)
        assert duckdb_keys(path, criterion) == expected, str(criterion)
        assert polars_keys(path, criterion) == expected, str(criterion)
    assert parse(str(criterion)) == criterion


SPARK_CRITERIA_PER_QUERY = 40


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       criteria=st.lists(object_criteria(), min_size=SPARK_CRITERIA_PER_QUERY,
                         max_size=SPARK_CRITERIA_PER_QUERY))
def test_export_time_equals_spark_sql(spark, seed, sizes, criteria, tmp_path_factory):
    """Many criteria per query: a Spark query costs seconds on two cores."""
    table = make_object_table(seed, sizes)
    name = f"objects-spark-{seed}-{'-'.join(map(str, sizes))}.parquet"
    path = tmp_path_factory.getbasetemp() / name
    pq.write_table(table.table, path, row_group_size=5)
    selected = ", ".join(f"({c.to_spark_sql()}) AS c{k}" for k, c in enumerate(criteria))
    spark.read.parquet(str(path)).createOrReplaceTempView("objects")
    rows = spark.sql(f"SELECT record_key, {selected} FROM objects").collect()
    for k, criterion in enumerate(criteria):
        keys = {row["record_key"] for row in rows if row[f"c{k}"]}
        assert keys == export_time_keys(table, criterion, as_arrow=False), criterion.to_spark_sql()


@pytest.fixture(scope="module")
def fiftyone_object_tables():
    from armory_datasets.database import import_fiftyone

    fo = import_fiftyone()
    tables = []
    for seed, sizes in enumerate([[5, 5, 2], [6, 6, 6, 1], [4]]):
        table = make_object_table(100 + seed, sizes)
        dataset = fo.Dataset(f"object-criteria-property-{seed}")
        dataset.add_samples([fo.Sample(filepath=f"/nonexistent/{row['record_key']}.png", **row)
                             for row in table.table.to_pylist()])
        tables.append((table, dataset))
    yield tables
    for _, dataset in tables:
        dataset.delete()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), criterion=object_criteria())
def test_export_time_equals_fiftyone(fiftyone_object_tables, which, criterion):
    table, dataset = fiftyone_object_tables[which]
    expected = export_time_keys(table, criterion, as_arrow=False)
    assert set(dataset.match(criterion.to_fiftyone()).values("record_key")) == expected, str(criterion)


def test_tables_exercise_nulls_and_empty_lists():
    table = make_object_table(1, [6, 6, 6, 1]).table
    lists = table.column("predicted_objects").to_pylist()
    assert None in lists and [] in lists
    boxes = [b for boxes in lists if boxes for b in boxes]
    assert any(b["match"] is None for b in boxes) and any(b["iou"] is None for b in boxes)


def _batch(objects: list) -> pa.Table:
    from armory_datasets.schema import VOCABULARY

    return pa.table({"predicted_objects": pa.array(objects, VOCABULARY["predicted_objects"].arrow_type)})


HAND_BOX = {"label": 1, "score": 0.9, "match": "fp", "iou": None}
HAND_LISTS = [[HAND_BOX], None, [], [dict(HAND_BOX, match=None)]]
HAND_CHECKED = {
    'any(predicted_objects, score > 0.8 & match == "fp")': [True, False, False, False],
    'all(predicted_objects, match == "fp")': [True, False, True, False],
    'any(predicted_objects, match != "fp")': [False, False, False, False],  # null: false
    'any(predicted_objects, ~(match == "fp"))': [False, False, False, True],  # ~ of it: true
    "count(predicted_objects) >= 1": [True, False, False, True],
    "~(count(predicted_objects) >= 1)": [False, True, True, False],
    "any(predicted_objects, iou < 2)": [False, False, False, False],
    "count(predicted_objects, x_min < 0) - count(predicted_objects) < 0": [True, False, False, True],
    "count(predicted_objects) - count(predicted_objects, x_min < 0) > -1": [True, False, True, True],
    "all(predicted_objects, true)": [True, False, True, True],
}


def _hand_table() -> pa.Table:
    """The hand-checked lists, and their order ``i`` (a query may return rows in any)."""
    return _batch(HAND_LISTS).append_column("i", pa.array(range(len(HAND_LISTS))))


def test_null_list_empty_list_and_null_fields_hand_checked():
    boxes = _hand_table()
    frame = pl.from_arrow(boxes)
    for text, expected in HAND_CHECKED.items():
        assert parse(text).arrow_mask(boxes).to_pylist() == expected, text
        mask = parse(text).mask(0, _ListBatch(boxes.column("predicted_objects").to_pylist()))
        assert mask.tolist() == expected, text
        query = f"SELECT {parse(text).to_sql()} FROM boxes ORDER BY i"
        assert [r[0] for r in duckdb.sql(query).fetchall()] == expected, text
        assert frame.select(parse(text).to_polars())[:, 0].to_list() == expected, text


@pytest.mark.parametrize("ansi", ["true", "false"])
def test_null_list_empty_list_and_null_fields_hand_checked_in_spark(spark, tmp_path, ansi):
    """Without ANSI mode (Spark 3's default) size(NULL) is -1, not null."""
    path = tmp_path / "boxes.parquet"
    pq.write_table(_hand_table(), path)
    spark.read.parquet(str(path)).createOrReplaceTempView("boxes")
    selected = ", ".join(f"({parse(text).to_spark_sql()}) AS c{k}"
                         for k, text in enumerate(HAND_CHECKED))
    default = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", ansi)
    try:
        rows = spark.sql(f"SELECT {selected} FROM boxes ORDER BY i").collect()
    finally:
        spark.conf.set("spark.sql.ansi.enabled", default)
    for k, (text, expected) in enumerate(HAND_CHECKED.items()):
        assert [row[f"c{k}"] for row in rows] == expected, text


class _ListBatch:
    def __init__(self, objects):
        self.objects = objects

    def __len__(self):
        return len(self.objects)

    def column(self, name):
        return self.objects


def test_python_api_and_text_syntax_agree():
    assert C.any_object("predicted_objects", (C.col("score") > 0.8) & (C.col("match") == "fp")) == \
        parse('any(predicted_objects, score > 0.8 & match == "fp")')
    assert C.all_objects("ground_truth_objects", C.col("match") == "tp") == \
        parse('all(ground_truth_objects, match == "tp")')
    assert (C.count_objects("ground_truth_objects", (C.col("label") == 3) & (C.col("match") == "fn"))
            >= 1) == parse('count(ground_truth_objects, label == 3 & match == "fn") >= 1')
    assert str(~C.any_object("predicted_objects", C.col("iou") < 0.6)) == \
        "~any(predicted_objects, iou < 0.6)"
    assert [f.name for f in parse("count(predicted_objects, score > 1) > 0 & batch < 2").fields()] \
        == ["predicted_objects", "batch"]


@pytest.mark.parametrize("text,message", [
    ("any(confidence, score > 0.5)", "column 'confidence' does not hold boxes"),
    ("count(`no such`) > 1", "column 'no such' does not hold boxes"),
    ("any(predicted_objects, scor > 0.5)", "scor is not a field of the boxes"),
    ("all(ground_truth_objects, chain == 'fgsm')", "chain is not a field of the boxes"),
    ("any(predicted_objects, match < 'fp')", "strings in boxes compare with == != in only"),
    ("any(predicted_objects, score == 'high')", "compares a number with a string"),
    ("any(predicted_objects, match in ['fp', 1])", "1 is not a string"),
    ("any(predicted_objects, first_n_batches(2))", "cannot be used inside"),
    ("any(predicted_objects)", "expected any(column, criterion)"),
    ("any(predicted_objects, any(predicted_objects, score > 1))", "cannot be used inside"),
])
def test_bad_object_criteria_are_refused_when_built(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_python_api_refuses_a_non_list_column():
    with pytest.raises(ValueError, match="does not hold boxes"):
        C.any_object("confidence", C.col("score") > 0.5)


def test_to_arrow_points_to_arrow_mask():
    with pytest.raises(ValueError, match="arrow_mask"):
        parse("any(predicted_objects, score > 0.5)").to_arrow()


def test_export_time_refuses_a_column_that_is_not_boxes():
    batch = _ListBatch(np.array([0.5, 0.7]))
    with pytest.raises(ValueError, match="predicted_objects"):
        parse("any(predicted_objects, score > 0.5)").mask(0, batch)
