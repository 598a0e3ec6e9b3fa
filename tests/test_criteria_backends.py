"""One criterion, six engines: export-time selection equals every query backend.

For random criteria over random sample tables split into random batch sizes (with a
short last batch), the records selected batch by batch at export time are exactly
those that pyarrow (Parquet scan with the filter pushed down), DuckDB (SQL on the
Parquet file), Polars (``scan_parquet`` + ``filter``), Spark SQL (``spark.read.parquet``,
many criteria per query, one session) and FiftyOne (``dataset.match``) return; and on an
export four writer processes wrote at once, every backend selects the same records.
Ray Data (``read_parquet(...).map_batches(lambda t: t.filter(criterion.to_arrow()))``) too. Spark
needs pyspark and Java, Ray needs ``ray[data]``; without them their tests are skipped
with the reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from criteria_cases import (
    SampleTable,
    batch_sizes,
    criteria_strategy,
    export_time_keys,
    make_table,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from engine_fixtures import spark, ray_data  # noqa: F401 (pytest fixtures)

from armory_datasets.schema import VOCABULARY

EXAMPLES = 350  # the issue asks for at least 300 random criteria per backend


def arrow_keys(path: Path, criterion) -> set[str]:
    dataset = ds.dataset(path, format="parquet")
    table = dataset.to_table(columns=["record_key"], filter=criterion.to_arrow())
    return set(table.column("record_key").to_pylist())


def duckdb_keys(path: Path, criterion) -> set[str]:
    query = f"SELECT record_key FROM read_parquet('{path}') WHERE {criterion.to_sql()}"
    return {row[0] for row in duckdb.sql(query).fetchall()}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), sizes=batch_sizes(), criterion=criteria_strategy())
def test_export_time_equals_pyarrow_and_duckdb(seed, sizes, criterion):
    table = make_table(seed, sizes)
    expected = export_time_keys(table, criterion)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "part-00000.parquet"
        pq.write_table(table.table, path, row_group_size=7)  # several row groups to prune
        assert arrow_keys(path, criterion) == expected, str(criterion)
        assert duckdb_keys(path, criterion) == expected, str(criterion)


def polars_keys(path: Path, criterion) -> set[str]:
    frame = pl.scan_parquet(path).filter(criterion.to_polars()).select("record_key").collect()
    return set(frame["record_key"].to_list())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), sizes=batch_sizes(), criterion=criteria_strategy())
def test_export_time_equals_polars(seed, sizes, criterion, tmp_path_factory):
    table = make_table(seed, sizes)
    path = tmp_path_factory.getbasetemp() / f"polars-{seed}-{'-'.join(map(str, sizes))}.parquet"
    pq.write_table(table.table, path, row_group_size=7)
    assert polars_keys(path, criterion) == export_time_keys(table, criterion), str(criterion)


SPARK_CRITERIA_PER_QUERY = 40


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), sizes=batch_sizes(),
       criteria=st.lists(criteria_strategy(), min_size=SPARK_CRITERIA_PER_QUERY,
                         max_size=SPARK_CRITERIA_PER_QUERY))
def test_export_time_equals_spark_sql(spark, seed, sizes, criteria, tmp_path_factory):
    table = make_table(seed, sizes)
    path = tmp_path_factory.getbasetemp() / f"spark-{seed}-{'-'.join(map(str, sizes))}.parquet"
    pq.write_table(table.table, path, row_group_size=7)
    selected = ", ".join(f"({c.to_spark_sql()}) AS c{k}" for k, c in enumerate(criteria))
    spark.read.parquet(str(path)).createOrReplaceTempView("samples")
    rows = spark.sql(f"SELECT record_key, {selected} FROM samples").collect()
    for k, criterion in enumerate(criteria):
        keys = {row["record_key"] for row in rows if row[f"c{k}"]}
        assert keys == export_time_keys(table, criterion), criterion.to_spark_sql()


def fiftyone_sample(fo, row: dict):
    """A sample with every column at its vocabulary path."""
    fields: dict = {}
    labels: dict[str, dict] = {}
    for name, value in row.items():
        path = VOCABULARY.fiftyone_path(name)
        if "." in path:
            head, attribute = path.split(".", 1)
            if value is not None:
                labels.setdefault(head, {})[attribute] = value
        else:
            fields[name] = value
    for head, attributes in labels.items():
        label = str(attributes.get("class_index", ""))
        fields[head] = fo.Classification(label=label, **attributes)
    return fo.Sample(filepath=f"/nonexistent/{row['record_key']}.png", **fields)


@pytest.fixture(scope="module")
def fiftyone_tables():
    from armory_datasets.database import import_fiftyone

    fo = import_fiftyone()
    tables = []
    for seed, sizes in enumerate([[5, 5, 5, 2], [8, 8, 8, 8, 3], [3, 3, 1], [7]]):
        table = make_table(seed, sizes)
        dataset = fo.Dataset(f"criteria-property-{seed}")
        dataset.add_samples([fiftyone_sample(fo, row) for row in table.table.to_pylist()])
        tables.append((table, dataset))
    yield tables
    for _, dataset in tables:
        dataset.delete()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), criterion=criteria_strategy())
def test_export_time_equals_fiftyone(fiftyone_tables, which, criterion):
    table, dataset = fiftyone_tables[which]
    expected = export_time_keys(table, criterion)
    view = dataset.match(criterion.to_fiftyone())
    assert set(view.values("record_key")) == expected, str(criterion)


def test_tables_exercise_nulls_and_short_batches():
    table: SampleTable = make_table(1, [8, 8, 8, 8, 3])
    assert table.table.column("target").null_count > 0
    assert table.table.column("score").null_count > 0
    sizes = [len(batch) for chain, _, batch in table.batches() if chain == "benign"]
    assert sizes == [8, 8, 8, 8, 3]


def test_object_criteria_compile_for_every_query_backend():
    """Their meaning in each backend is checked in tests/test_criteria_objects.py."""
    from armory_datasets.criteria import parse

    criterion = parse("any(predicted_objects, score > 0.5) | count(ground_truth_objects) > 2")
    assert "list_filter" in criterion.to_sql()
    assert "size(filter(`predicted_objects`, __box -> " in criterion.to_spark_sql()
    assert "list.eval" in str(criterion.to_polars())


@pytest.mark.parametrize("text", [
    'chain == "$chain"', 'chain != "$chain"', 'chain in ["$chain", "$split"]',
    'split == "$split"', 'split != "$split"', "split == 'it\\'s \"x\"'", 'split in ["$$ROOT"]',
    'split == "ground_truth.label"', 'split == "$ground_truth.class_index"',
])
def test_string_literals_are_literals_in_every_backend(fiftyone_tables, text, tmp_path):
    """Issue 12: `chain == "$chain"` selected 0 records in pyarrow/DuckDB but 100 in FiftyOne."""
    from armory_datasets.criteria import parse

    criterion = parse(text)
    table, dataset = fiftyone_tables[1]
    expected = export_time_keys(table, criterion)
    path = tmp_path / "part-00000.parquet"
    pq.write_table(table.table, path)
    assert arrow_keys(path, criterion) == expected
    assert duckdb_keys(path, criterion) == expected
    assert polars_keys(path, criterion) == expected
    assert set(dataset.match(criterion.to_fiftyone()).values("record_key")) == expected
    if text.startswith("split ==") and "$split" in text:
        assert 0 < len(expected) < table.table.num_rows  # the rows whose split is "$split"


MULTI_WRITER_CRITERIA = ["always()", "~correct", "chains(['fgsm']) & confidence < 0.5",
                         "every_n_samples(4) | target in [1, 8]", "fgsm_epsilon > 0.01",
                         "first_n_batches(3) & prediction % 2 == 0", "samples([])"]


@pytest.fixture(scope="module")
def multi_writer_export(tmp_path_factory):
    """An export written by 4 writer processes at once, then committed."""
    from multiwriter_support import BATCHES, run_writers

    from armory_datasets.store.commit import commit_export

    export_dir = tmp_path_factory.mktemp("multi") / "export"
    assert run_writers(export_dir, [range(k, BATCHES, 4) for k in range(4)]) == [0] * 4
    commit_export(export_dir)
    return export_dir


def test_one_criterion_selects_the_same_records_in_every_backend_on_a_multi_writer_export(
        multi_writer_export, spark):
    from armory_datasets import open_export
    from armory_datasets.criteria import parse

    export = open_export(multi_writer_export)
    files = [str(p) for p in export.parts]
    assert len({Path(f).name.split("-")[1] for f in files}) == 4  # parts of 4 writers
    frame = spark.read.parquet(*files)
    for text in MULTI_WRITER_CRITERIA:
        criterion = parse(text)
        expected = set(export.table(criterion, columns=["record_key"]).column(0).to_pylist())
        assert 0 < len(expected) < export.count() or text in ("always()", "samples([])")
        assert arrow_keys(multi_writer_export / "table", criterion) == expected, text
        assert {r[0] for r in duckdb.sql(
            f"SELECT record_key FROM read_parquet('{multi_writer_export}/table/*.parquet') "
            f"WHERE {criterion.to_sql()}").fetchall()} == expected, text
        assert polars_keys(multi_writer_export / "table" / "*.parquet", criterion) == expected, text
        assert {r["record_key"] for r in frame.where(criterion.to_spark_sql())
                .select("record_key").collect()} == expected, text
        assert set(export.fiftyone(criterion).values("record_key")) == expected, text


def test_ray_data_selects_the_same_records_on_a_multi_writer_export(multi_writer_export, ray_data):
    from armory_datasets import open_export
    from armory_datasets.criteria import parse

    export = open_export(multi_writer_export)
    files = [str(p) for p in export.parts]
    for text in MULTI_WRITER_CRITERIA:
        criterion = parse(text)
        expected = set(export.table(criterion, columns=["record_key"]).column(0).to_pylist())
        expression = criterion.to_arrow()
        rows = ray_data.read_parquet(files).map_batches(
            lambda batch, e=expression: batch.filter(e).select(["record_key"]),
            batch_format="pyarrow")
        assert {row["record_key"] for row in rows.take_all()} == expected, text
