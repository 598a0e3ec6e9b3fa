"""The Hive-partitioned layout (armory_datasets/partitioned.py): every engine reads it.

* pyarrow (``ds.dataset(out, partitioning="hive")``), DuckDB (``read_parquet(...,
  hive_partitioning = true)``), Polars (``scan_parquet(..., hive_partitioning=True)``) and
  Spark (``spark.read.parquet(out)``) read exactly the export's rows, and one criterion
  (``to_arrow``/``to_sql``/``to_polars``/``to_spark_sql``) selects the same record keys in
  each, on a classification, a detection and a multi-writer export; Ray Data too.
* Pushdown: a ``chains(["fgsm"]) & ...`` criterion makes pyarrow list, and DuckDB read,
  only the files under ``chain=fgsm/``.
* ``Export.partitioned`` writes the layout once, again when the manifest changed;
  replacing is atomic and never touches a directory that is not a layout.
* Hostile ``by``: unknown, float, list, unsafe-valued columns are ValueErrors.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from engine_fixtures import ray_data, spark  # noqa: F401 (pytest fixtures)

from armory_datasets import cli, open_export
from armory_datasets.criteria import parse
from armory_datasets.demo.tiny import tiny_detection_export, tiny_export
from armory_datasets.partitioned import LAYOUT_FILE, open_partitioned, write_partitioned

CRITERIA = {
    "classification": ["~correct", "chains(['noisy']) & confidence < 0.9",
                       "every_n_samples(3) | target in [1]", "always()"],
    "detection": ["fp == 2", "chains(['benign']) & num_targets == 2", "mean_iou > 0.5",
                  "chains(['noisy']) & tp >= 1"],
    "multi": ["~correct", "chains(['fgsm']) & confidence < 0.5", "fgsm_epsilon > 0.01",
              "first_n_batches(3) & prediction % 2 == 0"],
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """A classification, a detection and a 3-writer export, each with its layout."""
    from multiwriter_support import BATCHES, run_writers

    from armory_datasets.store.commit import commit_export

    base = tmp_path_factory.mktemp("partitioned")
    multi = base / "multi"
    assert run_writers(multi, [range(k, BATCHES, 3) for k in range(3)]) == [0] * 3
    commit_export(multi)
    found = {"classification": tiny_export(base / "tiny"),
             "detection": tiny_detection_export(base / "detection"), "multi": multi}
    for path in found.values():
        write_partitioned(path)
    parts = open_export(multi).parts
    assert len({p.name.split("-")[1] for p in parts}) == 3, parts  # parts of 3 writers
    return found


def expected(path: Path) -> pa.Table:
    return open_export(path).table().sort_by("record_key")


def same_rows(found: pa.Table, path: Path) -> None:
    """``found`` holds exactly the export's rows and columns (types as in the table)."""
    reference = expected(path)
    assert sorted(found.column_names) == sorted(reference.column_names)
    found = found.select(reference.column_names).cast(reference.schema).sort_by("record_key")
    assert found.num_rows == reference.num_rows > 0
    assert found.equals(reference)


def keys(path: Path, text: str) -> set[str]:
    found = set(open_export(path).table(text, ["record_key"]).column(0).to_pylist())
    assert text == "always()" or 0 < len(found) < open_export(path).count(), text
    return found


def layout(path: Path) -> Path:
    return path / "partitioned"


KINDS = sorted(CRITERIA)


@pytest.mark.parametrize("kind", KINDS)
def test_pyarrow_reads_the_rows_and_selects_the_same_records(exports, kind):
    path = exports[kind]
    data = ds.dataset(layout(path), partitioning="hive")
    same_rows(data.to_table(), path)
    same_rows(open_partitioned(layout(path)).to_table(), path)
    assert open_partitioned(layout(path)).schema.field("chain").type == pa.string()
    for text in CRITERIA[kind]:
        found = data.to_table(columns=["record_key"], filter=parse(text).to_arrow())
        assert set(found.column(0).to_pylist()) == keys(path, text), text


@pytest.mark.parametrize("kind", KINDS)
def test_duckdb_reads_the_rows_and_selects_the_same_records(exports, kind):
    path = exports[kind]
    source = f"read_parquet('{layout(path)}/**/*.parquet', hive_partitioning = true)"
    same_rows(duckdb.sql(f"SELECT * FROM {source}").to_arrow_table(), path)
    for text in CRITERIA[kind]:
        found = duckdb.sql(f"SELECT record_key FROM {source} WHERE {parse(text).to_sql()}")
        assert {r[0] for r in found.fetchall()} == keys(path, text), text


@pytest.mark.parametrize("kind", KINDS)
def test_polars_reads_the_rows_and_selects_the_same_records(exports, kind):
    pl = pytest.importorskip("polars", reason="polars is not installed (pip install polars)")
    path = exports[kind]
    frame = pl.scan_parquet(layout(path) / "**" / "*.parquet", hive_partitioning=True)
    same_rows(frame.collect().to_arrow(), path)
    for text in CRITERIA[kind]:
        found = frame.filter(parse(text).to_polars()).select("record_key").collect()
        assert set(found["record_key"].to_list()) == keys(path, text), text


@pytest.mark.parametrize("kind", KINDS)
def test_spark_reads_the_rows_and_selects_the_same_records(exports, kind, spark):
    path = exports[kind]
    frame = spark.read.parquet(str(layout(path)))
    same_rows(frame.toArrow(), path)
    for text in CRITERIA[kind]:
        found = frame.where(parse(text).to_spark_sql()).select("record_key").collect()
        assert {r[0] for r in found} == keys(path, text), text


def files_under(folder: Path) -> set[str]:
    found = {str(p) for p in folder.rglob("*.parquet")}
    assert found
    return found


@pytest.mark.parametrize("by", [["chain"], ["chain", "batch"]])
def test_pyarrow_lists_only_the_fgsm_files(exports, tmp_path, by):
    out = write_partitioned(exports["multi"], by, tmp_path / "layout")
    criterion = parse("chains(['fgsm']) & confidence < 0.5")
    for data in (ds.dataset(out, partitioning="hive"), open_partitioned(out)):
        listed = {f.path for f in data.get_fragments(filter=criterion.to_arrow())}
        assert listed == files_under(out / "chain=fgsm")
        assert len(listed) < len(data.files)
    if by == ["chain", "batch"]:
        first = parse("chains(['fgsm']) & first_n_batches(3)").to_arrow()
        listed = {f.path for f in open_partitioned(out).get_fragments(filter=first)}
        assert listed == {str(out / "chain=fgsm" / f"batch={b}" / "part-0.parquet")
                          for b in range(3)}


def test_duckdb_reads_only_the_fgsm_files(exports):
    out = layout(exports["multi"])
    criterion = parse("chains(['fgsm']) & confidence < 0.5")
    connection = duckdb.connect()
    connection.execute("PRAGMA enable_profiling = 'json'")
    (_, profile), = connection.sql(
        f"EXPLAIN ANALYZE SELECT record_key FROM read_parquet('{out}/**/*.parquet', "
        f"hive_partitioning = true) WHERE {criterion.to_sql()}").fetchall()

    def scans(node):
        if node.get("extra_info", {}).get("Function") == "READ_PARQUET":
            yield node["extra_info"]
        for child in node.get("children", []):
            yield from scans(child)

    (scan,), = [list(scans(n)) for n in json.loads(profile)["operator"]]
    fgsm = files_under(out / "chain=fgsm")
    assert int(scan["Total Files Read"]) == len(fgsm) < len(files_under(out))
    assert set(scan["Filename(s)"].split(", ")) == fgsm


def test_export_partitioned_writes_once_and_again_after_the_manifest_changed(tmp_path):
    export = open_export(tiny_export(tmp_path / "tiny"))
    data = export.partitioned()
    out = export.path / "partitioned"
    assert sorted(data.files) == sorted(files_under(out))
    same_rows(data.to_table(), export.path)
    marker = out / "_kept_while_fresh"
    marker.touch()
    export.partitioned()
    assert marker.exists()  # fresh: not rewritten
    description = json.loads((out / LAYOUT_FILE).read_text())
    description["updated_at"] = "2000-01-01T00:00:00+00:00"
    (out / LAYOUT_FILE).write_text(json.dumps(description))
    export.partitioned()
    assert not marker.exists()  # older than the manifest: rewritten
    marker.touch()
    data = export.partitioned(by=("chain", "batch"))
    assert not marker.exists() and len(data.files) == 4
    assert data.schema.field("batch").type == pa.int64()
    assert not [p.name for p in export.path.iterdir() if p.name.startswith(".")]  # no temp left
    assert export.verify().ok  # the layout is not part of the export's table


def test_the_cli_prints_where_it_wrote(tmp_path, capsys):
    path = tiny_export(tmp_path / "tiny")
    out = tmp_path / "elsewhere"
    assert cli.main(["partition", str(path), "--by", "chain,batch", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert str(out) in said and "16 records" in said and "4 file(s)" in said
    assert cli.main(["partition", str(path)]) == 0
    assert str(path / "partitioned") in capsys.readouterr().out
    assert cli.main(["partition", str(path), "--by", "confidence"]) == 1
    assert "'confidence'" in capsys.readouterr().err


@pytest.mark.parametrize("by, message", [
    (["nope"], "unknown column 'nope'"),
    (["confidence"], "'confidence' has type double; expected a string or integer column"),
    (["predicted_objects"], "'predicted_objects' has type list"),
    (["record_key"], "expected a name without '/'"),
    ("chain", "expected a non-empty list of column names"),
    ([], "expected a non-empty list"),
    (["chain", "chain"], "expected each column once"),
])
def test_hostile_by_columns_are_refused(exports, by, message, tmp_path):
    with pytest.raises(ValueError, match="^by: .*" + message.replace("(", r"\(")):
        write_partitioned(exports["detection"], by, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_directory_that_is_not_a_layout_is_never_replaced(exports, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="^out: .* is not a partitioned layout"):
        write_partitioned(exports["classification"], out=mine)
    assert (mine / "notes.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="^out: .* inside the export's table/ folder"):
        write_partitioned(exports["classification"], out=exports["classification"] / "table" / "x")
    with pytest.raises(ValueError, match="is not a partitioned layout"):
        write_partitioned(exports["classification"], out=exports["classification"])


def test_ray_data_reads_the_layout_and_selects_the_same_records(exports, ray_data):
    path = exports["multi"]
    rows = ray_data.read_parquet(str(layout(path)))
    assert sorted(r["record_key"] for r in rows.select_columns(["record_key", "chain"])
                  .take_all()) == expected(path).column("record_key").to_pylist()
    for text in CRITERIA["multi"]:
        expression = parse(text).to_arrow()
        found = rows.map_batches(lambda batch, e=expression: batch.filter(e).select(["record_key"]),
                                 batch_format="pyarrow")
        assert {r["record_key"] for r in found.take_all()} == keys(path, text), text
