"""Read an export directory: ``open_export(path)`` -> :class:`Export`.

The Parquet path (``table``, ``to_pandas``, ``count``, ``sql``, ``compare_chains``)
imports neither fiftyone nor torch; ``fiftyone()`` and ``torch_dataset()`` import them
on first use. ``where`` is a criterion or criteria text (``armory_datasets.criteria``);
the same criterion selects the same records here, in FiftyOne and at export time.

An export whose manifest still says status "writing" (interrupted, or being written)
opens with an :class:`IncompleteExportWarning` and shows its finished table parts.

Example:
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> export = open_export(tiny_export())  # a small export in a temporary directory
    >>> export.table(where="~correct & chains(['noisy'])", columns=["sample_index", "prediction"]).num_rows
    3
    >>> export.sql("SELECT chain, count(*) AS n FROM samples GROUP BY chain ORDER BY chain").to_pylist()
    [{'chain': 'benign', 'n': 8}, {'chain': 'noisy', 'n': 8}]
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from armory_datasets.criteria import CriteriaSyntaxError, Criterion, parse
from armory_datasets.criteria.nodes import format_name, object_nodes
from armory_datasets.criteria.to_sql import quote_identifier, sql_literal
from armory_datasets.schema import VOCABULARY, parse_arrow_type
from armory_datasets.store.footers import arrow_schema
from armory_datasets.store.manifest import (MANIFEST_FILE, SUPPORTED_VERSIONS, export_directory,
                                            read_manifest)
from armory_datasets.store.parquet_writer import TABLE_METADATA
from armory_datasets.untrusted import DamagedExportError, damaged, inside_export

__all__ = ["CriterionError", "DamagedExportError", "Export", "IncompleteExportWarning",
           "SQLQueryError", "UnknownColumnError", "listed_parts", "open_export", "part_schema"]

SQL_VIEW = "samples"
"""Name of the DuckDB view over the export's table in :meth:`Export.sql`."""
OBJECTS_VIEW = "objects"
"""Name of the DuckDB view over the export's objects table (one row per box)."""

Where = Criterion | str | None


class IncompleteExportWarning(UserWarning):
    """The export's manifest says status "writing": only finished table parts are read."""


class CriterionError(ValueError):
    """A well-formed criterion that does not fit this export (e.g. a string compared to 3).

    ``text`` and ``position`` locate the problem in criteria text, when known.
    """

    def __init__(self, message: str, text: str | None = None, position: int | None = None) -> None:
        self.text, self.position = text, position
        super().__init__(message)


class SQLQueryError(ValueError):
    """SQL that DuckDB cannot parse, or that names a table, column or function the
    export's views (``samples``, ``objects``) do not have; DuckDB's own error is its cause.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> open_export(tiny_export()).sql("SELECT * FROM records")
        Traceback (most recent call last):
        ...
        armory_datasets.reading.SQLQueryError: query: Catalog Error: Table with name records does not exist! ...; expected DuckDB SQL over the views 'samples' (one row per record) and 'objects' (one row per box), e.g. 'SELECT * FROM samples LIMIT 5'
    """


class UnknownColumnError(CriterionError):
    """A column named in ``where``/``columns`` is not in the export's table.

    ``position`` is the column's offset in the criteria text (None for a criterion object).
    """

    def __init__(self, what: str, column: str, available: Sequence[str],
                 text: str | None = None, position: int | None = None) -> None:
        self.column, self.available = column, list(available)
        close = difflib.get_close_matches(column, available, n=1)
        hint = ""
        if close:
            suggestion = repr(close[0])
            if what == "where" and format_name(close[0]) != close[0]:
                suggestion = format_name(close[0])  # criteria write such a name in backticks
            hint = f" (did you mean {suggestion}?)"
        super().__init__(f"{what}: unknown column {column!r}{hint}; this export has: "
                         f"{', '.join(available)}", text, position)


def open_export(path: str | Path) -> Export:
    """Open an export directory (as written by ``ExportWriter``) for reading.

    Raises FileNotFoundError for a missing directory, manifest or listed table part,
    NotADirectoryError for a file (such as the manifest itself), ValueError for an
    invalid manifest.

    Example:
        >>> open_export("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent: no such directory; expected an export directory (manifest.json, table/, media/)
    """
    return Export(path)


class Export:
    """An export directory: manifest, Parquet table, media, FiftyOne dataset.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> export = Export(tiny_export())
        >>> export.count("~correct")
        3
    """

    def __init__(self, path: str | Path) -> None:
        self.path = export_directory(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            raise FileNotFoundError(f"{path}: no {MANIFEST_FILE}; expected an export directory "
                                    f"written by armory_datasets")
        self.manifest: dict[str, Any] = manifest
        self.parts = listed_parts(self.path, manifest)
        missing = [p.name for p in self.parts if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: table parts {missing} listed in {MANIFEST_FILE} are "
                                    f"missing; expected a complete copy of the export directory "
                                    f"(`armory-datasets verify {self.path}` lists the damage)")
        self._part_schemas = [part_schema(p, self.path) for p in self.parts]
        if manifest["status"] != "complete":
            warnings.warn(f"{path}: export {self.export_id} is incomplete (status "
                          f"{manifest['status']!r}): reading its {len(self.parts)} finished table "
                          f"part(s); resume the export to finish it", IncompleteExportWarning,
                          stacklevel=3)

    def __repr__(self) -> str:
        return f"Export({str(self.path)!r}, export_id={self.export_id!r}, status={self.status!r})"

    @property
    def export_id(self) -> str:
        return self.manifest["export_id"]

    @property
    def status(self) -> str:
        return self.manifest["status"]

    # ------------------------------------------------------------------ Parquet

    @cached_property
    def schema(self) -> pa.Schema:
        """The unified schema of all parts (the vocabulary and dynamic columns if none yet)."""
        if self._part_schemas:
            try:
                return pa.unify_schemas(self._part_schemas)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                raise damaged(self.path / self.manifest["table"]["dir"],
                              f"its parts disagree on column types ({error})", self.path) from None
        dynamic = [pa.field(c["name"], parse_arrow_type(c["arrow_type"]))
                   for c in self.manifest["dynamic_columns"]]
        return pa.schema(list(VOCABULARY.arrow_schema()) + dynamic)

    @property
    def columns(self) -> list[str]:
        """Column names of the table, vocabulary and dynamic ones."""
        return self.schema.names

    @cached_property
    def dataset(self) -> ds.Dataset:
        """A ``pyarrow.dataset`` over the finished Parquet parts, with the unified schema."""
        return ds.dataset([str(p) for p in self.parts], schema=self.schema, format="parquet")

    def criterion(self, where: Where, columns: Sequence[str] | None = None) -> Criterion | None:
        """``where`` as a criterion whose columns all exist in ``columns`` (default: the
        table's; text is parsed).

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> open_export(tiny_export()).criterion("confidence < 0.5")
            criterion('confidence < 0.5')
        """
        if where is None:
            return None
        text = where if isinstance(where, str) else None
        if text is not None:
            where = parse(text)
        if not isinstance(where, Criterion):
            raise TypeError(f"where: got {type(where).__name__}; expected a criterion or "
                            f"criteria text such as 'confidence < 0.5'")
        available = list(self.columns if columns is None else columns)
        names = set(available)
        for field in where.fields():
            name = field.require_name()
            if name not in names:
                raise UnknownColumnError("where", name, available, text,
                                         _name_position(text, name) if text else None)
        return where

    def _column_list(self, columns: Sequence[str] | None,
                     available: Sequence[str] | None = None) -> list[str] | None:
        """``columns`` checked against ``available`` (default: the table's columns)."""
        if columns is None:
            return None
        if isinstance(columns, str):
            raise TypeError(f"columns: got the string {columns!r}; expected a list of names")
        available = list(self.columns if available is None else available)
        names = set(available)
        for column in columns:
            if column not in names:
                raise UnknownColumnError("columns", column, available)
        return list(columns)

    def _scan(self, where: Where, run: Callable[[Any], Any], schema: pa.Schema | None = None) -> Any:
        """``run(filter expression)`` over the table (or the table of ``schema``): Arrow's
        type errors become CriterionError, and a part that fails to decode a
        DamagedExportError naming it."""
        schema = self.schema if schema is None else schema
        criterion = self.criterion(where, schema.names)
        if criterion is not None and object_nodes(criterion):
            expression = self._object_filter(criterion)
        else:
            expression = None if criterion is None else criterion.to_arrow()
        if expression is not None:
            try:  # binds the filter to the schema: a type error is the criterion's
                ds.dataset(schema.empty_table()).to_table(filter=expression)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
                raise CriterionError(f"where: {criterion}: cannot be applied to this table: "
                                     f"{error}") from None
        try:
            return run(expression)
        except (OSError, pa.ArrowException) as error:
            raise self._damaged_part(error) from None

    def _object_filter(self, criterion: Criterion) -> pc.Expression:
        """A criterion with ``any``/``all``/``count`` of boxes, which no Expression can state,
        as one that can: its records' keys, found with ``arrow_mask`` (Arrow compute over
        the flattened boxes) on only the columns it reads."""
        names = sorted({"export_id", "record_key", *(f.require_name() for f in criterion.fields())})
        try:
            table = self.dataset.to_table(columns=names)
        except (OSError, pa.ArrowException) as error:
            raise self._damaged_part(error) from None
        chosen = table.filter(criterion.arrow_mask(table))
        expression = pc.scalar(False)
        ids = chosen.column("export_id")
        for export_id in pc.unique(ids).to_pylist():
            keys = chosen.filter(pc.equal(ids, export_id)).column("record_key")
            expression = expression | ((pc.field("export_id") == export_id)
                                       & pc.field("record_key").isin(keys.combine_chunks()))
        return expression

    def _damaged_part(self, error: BaseException) -> DamagedExportError:
        """The error naming the first part that fails a full read (``error`` if none does)."""
        for part in [*self.parts, *self.objects_parts]:
            try:
                pq.read_table(part)
            except (OSError, pa.ArrowException) as cause:
                return damaged(part, f"cannot be read as Parquet ({cause})", self.path)
        return damaged(self.path / self.manifest["table"]["dir"], error, self.path)

    def table(self, where: Where = None, columns: Sequence[str] | None = None,
              limit: int | None = None) -> pa.Table:
        """Records matching ``where`` (pushed into the Parquet scan), in writing order.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> export = open_export(tiny_export())
            >>> export.table("chains(['noisy']) & ~correct", columns=["sample_index"]).num_rows
            3
        """
        names = self._column_list(columns)
        if limit is None:
            return self._scan(where, lambda f: self.dataset.to_table(columns=names, filter=f))
        if limit < 0:
            raise ValueError(f"limit: got {limit}; expected a count >= 0")
        return self._scan(where, lambda f: self.dataset.head(limit, columns=names, filter=f))

    def to_pandas(self, where: Where = None, columns: Sequence[str] | None = None) -> Any:
        """:meth:`table` as a pandas DataFrame.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> export = open_export(tiny_export())
            >>> export.to_pandas("~correct", ["record_key", "correct"]).record_key.tolist()
            ['noisy/1', 'noisy/4', 'noisy/6']
        """
        return self.table(where, columns).to_pandas()

    def count(self, where: Where = None) -> int:
        """Number of records matching ``where``.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> open_export(tiny_export()).count("chains(['benign'])")
            8
        """
        return self._scan(where, lambda f: self.dataset.count_rows(filter=f))

    # ------------------------------------------------------------------ objects

    @cached_property
    def objects_parts(self) -> list[Path]:
        """The objects table's parts the manifest lists (none before manifest version 2)."""
        objects = self.manifest.get("objects")
        if objects is None:
            return []
        return listed_parts(self.path, self.manifest, "objects")

    @cached_property
    def objects_dataset(self) -> ds.Dataset:
        """A ``pyarrow.dataset`` over the objects table (schemas/objects.v2.json).

        An export written before the objects table (manifest version 1) gets it derived
        from its samples table, in memory.
        """
        from armory_datasets.store.objects_table import OBJECTS_VOCABULARY, SORT_ORDER, objects_of

        schema = OBJECTS_VOCABULARY.arrow_schema()
        if "objects" not in self.manifest:
            names = ["export_id", "record_key", "chain", "sample_index", "ground_truth_objects",
                     "predicted_objects"]
            rows = self._scan(None, lambda _: self.dataset.to_table(
                columns=[c for c in names if c in self.columns]))
            return ds.dataset(objects_of(rows, self.manifest["class_names"]).sort_by(SORT_ORDER))
        for part in self.objects_parts:
            if not part.is_file():
                raise FileNotFoundError(f"{self.path}: objects part {part.name} listed in "
                                        f"{MANIFEST_FILE} is missing; run `armory-datasets verify "
                                        f"{self.path} --repair` to derive it again from the table")
        return ds.dataset([str(p) for p in self.objects_parts], schema=schema, format="parquet")

    def objects(self, where: Where = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Boxes matching ``where``, one row each (columns of schemas/objects.v2.json:
        keys, ``kind`` "gt"/"pred", ``label``, box, ``score``, ``match``, ``iou``, ...).

        ``where`` names the objects table's columns and is pushed into the Parquet scan.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_detection_export
            >>> export = open_export(tiny_detection_export())
            >>> export.objects('kind == "pred" & match == "tp"', ["record_key", "iou"]).num_rows
            7
        """
        dataset = self.objects_dataset
        names = self._column_list(columns, dataset.schema.names)
        return self._scan(where, lambda f: dataset.to_table(columns=names, filter=f), dataset.schema)

    @cached_property
    def task(self) -> str:
        """``"classification"`` (records have a ``target``) or ``"detection"`` (boxes only)."""
        def has_values(column: str) -> bool:
            found = self._scan(None, lambda _: self.dataset.head(
                1, columns=[column], filter=pc.field(column).is_valid()))
            return found.num_rows > 0

        if not has_values("target") and has_values("ground_truth_objects"):
            return "detection"
        return "classification"

    @cached_property
    def chains(self) -> list[str]:
        """Chain names present in the table, sorted."""
        table = self._scan(None, lambda _: self.dataset.to_table(columns=["chain"]))
        return sorted(set(table.column("chain").to_pylist()))

    # ------------------------------------------------------------------ DuckDB

    def duckdb(self) -> Any:
        """A DuckDB connection (cached) with the views ``samples`` over the table and
        ``objects`` over the objects table.

        Use it for lazy relations: ``export.duckdb().sql("SELECT ...")`` is a
        ``DuckDBPyRelation``. ``image_path`` values are relative to ``export.path``.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> open_export(tiny_export()).duckdb().sql("SELECT count(*) FROM samples").fetchall()
            [(16,)]
        """
        if "_duckdb" not in self.__dict__:
            import duckdb

            connection = duckdb.connect()
            if self.parts:
                files = ", ".join(sql_literal(str(p)) for p in self.parts)
                connection.execute(f"CREATE VIEW {SQL_VIEW} AS SELECT * FROM "
                                   f"read_parquet([{files}], union_by_name = true)")
            else:
                connection.register(SQL_VIEW, self.schema.empty_table())
            if self.objects_parts:
                files = ", ".join(sql_literal(str(p)) for p in self.objects_parts)
                connection.execute(f"CREATE VIEW {OBJECTS_VIEW} AS SELECT * FROM read_parquet([{files}])")
            else:
                connection.register(OBJECTS_VIEW, self.objects_dataset.to_table())
            self.__dict__["_duckdb"] = connection
        return self.__dict__["_duckdb"]

    def sql(self, query: str) -> pa.Table:
        """Run a DuckDB query over the view ``samples`` and return a pyarrow Table.

        A statement without a result (``CREATE VIEW ...``) returns an empty table.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> export = open_export(tiny_export())
            >>> export.sql("SELECT chain, count(*) AS n FROM samples GROUP BY chain ORDER BY chain").to_pylist()
            [{'chain': 'benign', 'n': 8}, {'chain': 'noisy', 'n': 8}]
        """
        if not isinstance(query, str) or not query.strip():
            raise SQLQueryError(f"query: got {query!r}; expected SQL text such as "
                                f"'SELECT * FROM {SQL_VIEW} LIMIT 5'")
        import duckdb

        connection = self.duckdb()
        try:
            relation = connection.sql(query)
        except (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException) as error:
            raise SQLQueryError(
                f"query: {' '.join(str(error).split())}; expected DuckDB SQL over the views "
                f"{SQL_VIEW!r} (one row per record) and {OBJECTS_VIEW!r} (one row per box), "
                f"e.g. 'SELECT * FROM {SQL_VIEW} LIMIT 5'") from error
        return pa.table({}) if relation is None else relation.to_arrow_table()

    def partitioned(self, by: Sequence[str] = ("chain",)) -> ds.Dataset:
        """The table as a Hive-partitioned ``pyarrow.dataset`` (``partitioned/chain=.../``),
        written first if missing, partitioned otherwise or derived from an older manifest;
        see :mod:`armory_datasets.partitioned`.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> data = open_export(tiny_export()).partitioned()
            >>> len(list(data.get_fragments(filter=pc.field("chain") == "noisy")))
            1
        """
        from armory_datasets.partitioned import LAYOUT_DIR, open_partitioned, read_layout, \
            write_partitioned

        out = self.path / LAYOUT_DIR
        try:
            layout = read_layout(out)
        except FileNotFoundError:
            layout = {}
        current = {"by": list(by), "export_id": self.export_id,
                   "updated_at": self.manifest["updated_at"]}
        if any(layout.get(key) != value for key, value in current.items()):
            write_partitioned(self.path, by, out)
        return open_partitioned(out)

    # ------------------------------------------------------------------ chains

    def compare_chains(self, a: str, b: str, on: Sequence[str] | None = None,
                       fiftyone: bool = False) -> Any:
        """Samples whose prediction or correctness differs between chains ``a`` and ``b``.

        Records are joined on ``sample_index`` (samples exported in both chains). ``on``
        lists the compared columns (default: ``prediction`` and ``correct``, or
        ``predicted_objects`` for detection). Returns a pyarrow Table with
        ``sample_index``, ``target`` (classification) and ``{column}_{chain}`` pairs
        (record_key, the compared columns, confidence or the detection metrics,
        image_path), ordered by sample index; with
        ``fiftyone=True``, a FiftyOne view of both records of each such sample, sorted
        by sample index then chain (``view.group_by("sample_index")`` pairs them in the App).

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> export = open_export(tiny_export())
            >>> export.compare_chains("benign", "noisy").column("sample_index").to_pylist()
            [1, 4, 6]
        """
        for name in (a, b):
            if name not in self.chains:
                raise ValueError(f"chain {name!r}: not in this export; expected one of {self.chains}")
        if a == b:
            raise ValueError(f"compare_chains: got chain {a!r} twice; expected two different chains")
        detection = self.task == "detection"
        if on is None:
            on = ["predicted_objects"] if detection else ["prediction", "correct"]
        compared = self._column_list(on)
        if not compared:
            raise ValueError("on: got no columns; expected the columns to compare, e.g. ['prediction']")
        scores = ["num_predictions", "precision", "recall"] if detection else ["confidence"]
        shown = list(dict.fromkeys(["record_key", *compared, *scores, "image_path"]))
        select = ["x.sample_index"] + ([] if detection else ["x.target"])
        for column in (c for c in shown if c in self.columns):
            q = quote_identifier(column)
            select += [f"x.{q} AS {quote_identifier(f'{column}_{a}')}",
                       f"y.{q} AS {quote_identifier(f'{column}_{b}')}"]
        changed = " OR ".join(f"x.{quote_identifier(c)} IS DISTINCT FROM y.{quote_identifier(c)}"
                              for c in compared)
        table = self.sql(
            f"SELECT {', '.join(select)} FROM {SQL_VIEW} x JOIN {SQL_VIEW} y "
            f"ON x.sample_index = y.sample_index WHERE x.chain = {sql_literal(a)} "
            f"AND y.chain = {sql_literal(b)} AND ({changed}) ORDER BY x.sample_index")
        if not fiftyone:
            return table
        from armory_datasets.database import import_fiftyone

        F = import_fiftyone().ViewField
        indices = table.column("sample_index").to_pylist()
        return self.fiftyone().match(F("chain").is_in([a, b]) & F("sample_index").is_in(indices)) \
            .sort_by([("sample_index", 1), ("chain", 1)])

    def verify(self, repair: bool = False) -> Any:
        """Check every part, medium and manifest field; ``repair=True`` recovers what it can.

        See :func:`armory_datasets.verify.verify_export` (it also works on a directory
        whose manifest cannot be opened).

        Example:
            >>> print(export.verify())  # doctest: +SKIP
            /data/run1: 240 readable records, 0 problem(s)
        """
        from armory_datasets.verify import verify_export

        return verify_export(self.path, repair=repair)

    # ------------------------------------------------------------------ FiftyOne, torch

    def fiftyone(self, where: Where = None, rebuild: bool = False) -> Any:
        """A FiftyOne view of the records matching ``where``.

        Loads the persistent dataset built for this directory, or builds it from the
        directory (an export copied to another machine needs nothing else); see
        ``armory_datasets.reading_fiftyone.export_dataset``.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> open_export(tiny_export()).fiftyone("~correct").count()
            3
        """
        from armory_datasets.reading_fiftyone import export_dataset, match

        criterion = self.criterion(where)
        return match(export_dataset(self, rebuild=rebuild), criterion)

    def torch_dataset(self, where: Where = None, transform: Any = None,
                      with_heatmap: str | None = None) -> Any:
        """A torch ``Dataset`` of the matching records: ``(image, target[, heatmap])``.

        See :class:`armory_datasets.reading_torch.ExportTorchDataset`.

        Example:
            >>> import torch
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> data = open_export(tiny_export()).torch_dataset("~correct")
            >>> images, targets = next(iter(torch.utils.data.DataLoader(data, batch_size=32)))
            >>> images.shape, targets.tolist()
            (torch.Size([3, 3, 8, 8]), [1, 1, 0])
        """
        from armory_datasets.reading_torch import ExportTorchDataset

        return ExportTorchDataset(self, where, transform, with_heatmap)

    def to_hf(self, where: Where = None, heatmaps: bool = True) -> Any:
        """The matching records as a Hugging Face ``datasets.Dataset`` (``Image``,
        ``ClassLabel``, maps as arrays); see :func:`armory_datasets.hf.to_hf`.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> open_export(tiny_export()).to_hf("~correct").features["target"].names
            ['cat', 'dog', 'bird']
        """
        from armory_datasets.hf import to_hf

        return to_hf(self, self.criterion(where), heatmaps)

    def convert(self, out: str | Path, format: str, where: Where = None,
                split: str | Sequence[float] | None = None, seed: int = 0) -> Path:
        """Write the matching records to ``out`` as ``coco``, ``yolo``, ``imagefolder`` or
        ``hf``, one dataset per chain; see :func:`armory_datasets.convert.convert`.

        Example:
            >>> from armory_datasets.demo.tiny import tiny_export
            >>> out = open_export(tiny_export()).convert("hf-out", "hf", split="0.5,0.5")
            >>> sorted(p.name for p in (out / "benign").iterdir())
            ['dataset_dict.json', 'train', 'val']
        """
        from armory_datasets.convert import convert

        return convert(self, out, format, self.criterion(where), split, seed)


def listed_parts(export_dir: Path, manifest: dict[str, Any], key: str = "table") -> list[Path]:
    """The table parts the manifest lists under ``key`` (never a stray file beside them), confined.

    Example:
        >>> listed_parts(Path("/e"), {"table": {"dir": "table", "parts": ["part-00000.parquet"]}})
        [PosixPath('/e/table/part-00000.parquet')]
    """
    table = manifest[key]
    if len(set(table["parts"])) != len(table["parts"]):
        raise damaged(export_dir / MANIFEST_FILE, f"{key}.parts lists a part twice "
                      f"({table['parts']}); expected each part once", export_dir)
    return [inside_export(export_dir, f"{table['dir']}/{name}", f"{MANIFEST_FILE} {key}.parts",
                          under=f"{table['dir']}/") for name in table["parts"]]


def part_schema(part: Path, export_dir: Path) -> pa.Schema:
    """A part's schema from its footer, checked: readable, a known table version, and the
    vocabulary's types; else DamagedExportError naming the part.

    Example:
        >>> part_schema(Path("/nonexistent.parquet"), Path("/"))
        Traceback (most recent call last):
        ...
        armory_datasets.untrusted.DamagedExportError: /nonexistent.parquet: cannot be read as Parquet (...No such file or directory); run `armory-datasets verify /` to list the damage and `--repair` to recover
    """
    try:
        schema = arrow_schema(part)
    except (OSError, pa.ArrowException) as error:
        raise damaged(part, f"cannot be read as Parquet ({error})", export_dir) from None
    (key, _), = TABLE_METADATA.items()
    version = (schema.metadata or {}).get(key)
    supported = SUPPORTED_VERSIONS["table_version"]
    if version is not None and version.decode(errors="replace") not in map(str, supported):
        raise damaged(part, f"table version {version.decode(errors='replace')!r} is not "
                      f"supported; this release reads table version "
                      f"{', '.join(map(str, supported))}", export_dir)
    missing = [c.name for c in VOCABULARY.columns.values()
               if not c.nullable and c.name not in schema.names]
    if missing:
        raise damaged(part, f"lacks the key columns {missing}; expected every column of "
                      f"schemas/table.v{VOCABULARY.version}.json that is not nullable", export_dir)
    for field in schema:
        if field.name in VOCABULARY and not _same_kind(field.type, VOCABULARY[field.name].arrow_type):
            raise damaged(part, f"column {field.name!r} has Arrow type {field.type}; expected "
                          f"{VOCABULARY.columns[field.name].arrow_type} (schemas/table.v{VOCABULARY.version}.json)",
                          export_dir)
    return schema


def _same_kind(found: pa.DataType, expected: pa.DataType) -> bool:
    """The vocabulary's type; a list of boxes may lack fields later versions added."""
    if pa.types.is_list(expected):
        return pa.types.is_list(found)
    return found.equals(expected)


def _name_position(text: str, name: str) -> int | None:
    """Offset of the first token naming ``name`` in criteria text."""
    from armory_datasets.criteria.parser import tokenize

    try:
        tokens = tokenize(text)
    except CriteriaSyntaxError:
        return None
    for token in tokens:
        if (token.kind == "name" and token.text == name) or \
                (token.kind == "quoted" and token.text[1:-1].replace("``", "`") == name):
            return token.position
    return None
