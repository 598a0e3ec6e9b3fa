"""Several exports as one table (``open_exports``), and two exports compared (``compare_exports``).

Every record carries its ``export_id``, so the union of the exports' tables is keyed
by ``(export_id, record_key)``; ``image_path`` stays relative to its own export
(``exports.paths[export_id]``). The Parquet methods (``table``, ``to_pandas``,
``count``, ``sql`` with the view ``samples``, ``duckdb``) are :class:`Export`'s own,
run over every export's finished parts with the union of their schemas, so a
criterion means the same here as on one export. Like ``reading``, this module never
imports fiftyone or torch.

Example:
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> runs = open_exports([tiny_export(seed=0), tiny_export(seed=1)])
    >>> runs.sql("SELECT count(DISTINCT export_id) AS n FROM samples").to_pylist()
    [{'n': 2}]
    >>> compare_exports(tiny_export(seed=0), tiny_export(seed=1), chain="noisy").column_names[:4]
    ['sample_index', 'target', 'record_key_a', 'record_key_b']
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from armory_datasets.criteria.to_sql import quote_identifier, sql_literal
from armory_datasets.reading import Export, open_export
from armory_datasets.untrusted import DamagedExportError

__all__ = ["ExportSet", "compare_exports", "open_exports"]

_GLOB_CHARACTERS = frozenset("*?[")


def expand_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Directories named by ``paths``: each a directory or a glob pattern (sorted matches).

    Example:
        >>> expand_paths("/nonexistent/run-*")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/run-*: matches no directory; expected export directories or a glob such as 'exports/run-*'
    """
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    found: list[Path] = []
    for item in items:
        text = str(item)
        if _GLOB_CHARACTERS.isdisjoint(text) or Path(text).is_dir():
            found.append(Path(text))
            continue
        matches = sorted(Path(m) for m in glob.glob(text) if Path(m).is_dir())
        if not matches:
            raise FileNotFoundError(f"{text}: matches no directory; expected export "
                                    f"directories or a glob such as 'exports/run-*'")
        found += matches
    if not found:
        raise ValueError("paths: got none; expected one or more export directories")
    return found


def open_exports(paths: str | Path | Sequence[str | Path]) -> ExportSet:
    """Open several export directories (or globs) as one table keyed by ``export_id``.

    Example:
        >>> open_exports([])
        Traceback (most recent call last):
        ...
        ValueError: paths: got none; expected one or more export directories
    """
    return ExportSet([open_export(p) for p in expand_paths(paths)])


class ExportSet:
    """Exports read as one table; two directories holding one export id are refused.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> runs = ExportSet([open_export(tiny_export()), open_export(tiny_export(seed=1))])
        >>> runs.count("~correct")
        6
    """

    def __init__(self, exports: Sequence[Export]) -> None:
        self.exports: dict[str, Export] = {}
        for export in exports:
            other = self.exports.get(export.export_id)
            if other is not None:
                raise ValueError(f"{export.path}: holds export {export.export_id}, as does "
                                 f"{other.path} (a copy?); expected distinct exports")
            self.exports[export.export_id] = export
        self.parts = [part for export in self.exports.values() for part in export.parts]

    def __repr__(self) -> str:
        return f"ExportSet({[str(e.path) for e in self.exports.values()]})"

    @property
    def paths(self) -> dict[str, Path]:
        """Each export's directory by export id (``image_path`` is relative to it)."""
        return {export_id: export.path for export_id, export in self.exports.items()}

    @cached_property
    def schema(self) -> pa.Schema:
        """The union of the exports' schemas; a column typed differently is refused."""
        try:
            return pa.unify_schemas([e.schema for e in self.exports.values()])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"exports: their tables disagree on a column's type: {error}; "
                             f"expected exports of the same kind of evaluation") from None

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    @cached_property
    def dataset(self) -> ds.Dataset:
        """A ``pyarrow.dataset`` over every export's finished parts, with the union schema."""
        return ds.dataset([str(p) for p in self.parts], schema=self.schema, format="parquet")

    @cached_property
    def objects_parts(self) -> list[Path]:
        """Every export's objects parts."""
        return [part for export in self.exports.values() for part in export.objects_parts]

    @cached_property
    def objects_dataset(self) -> ds.Dataset:
        """A ``pyarrow.dataset`` over every export's objects table (keyed by ``export_id``)."""
        return ds.dataset([export.objects_dataset for export in self.exports.values()])

    def _damaged_part(self, error: BaseException) -> DamagedExportError:
        """The error naming the first part of any export that fails a full read."""
        found = [export._damaged_part(error) for export in self.exports.values()]
        return next((d for d in found if d.path is not None and d.path.suffix == ".parquet"), found[0])

    # Export's Parquet methods need only parts, schema, columns and the datasets.
    criterion = Export.criterion
    _column_list = Export._column_list
    _scan = Export._scan
    _object_filter = Export._object_filter
    table = Export.table
    to_pandas = Export.to_pandas
    count = Export.count
    objects = Export.objects
    duckdb = Export.duckdb
    sql = Export.sql


def _as_export(export: Export | str | Path) -> Export:
    return export if isinstance(export, Export) else open_export(export)


def compare_exports(a: Export | str | Path, b: Export | str | Path, chain: str = "benign",
                    chain_b: str | None = None, on: Sequence[str] | None = None) -> pa.Table:
    """Samples whose compared columns differ between export ``a`` and export ``b``.

    Two runs, models or attacks, joined on ``sample_index``: chain ``chain`` of ``a``
    against chain ``chain_b`` (default: the same name) of ``b``, as ``compare_chains``
    does within one export. ``on`` defaults to ``prediction`` and ``correct``
    (``predicted_objects`` for detection). Returns ``sample_index``, ``target`` and
    ``{column}_a`` / ``{column}_b`` pairs (record_key, the compared columns, confidence
    or the detection metrics, image_path), ordered by sample index.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> compare_exports(tiny_export(seed=0), tiny_export(seed=1), chain="noisy").num_rows
        0
    """
    x, y = _as_export(a), _as_export(b)
    chain_b = chain if chain_b is None else chain_b
    for export, name in ((x, chain), (y, chain_b)):
        if name not in export.chains:
            raise ValueError(f"chain {name!r}: not in export {export.path}; expected one of "
                             f"{export.chains}")
    detection = x.task == "detection"
    if detection != (y.task == "detection"):
        raise ValueError(f"exports: {x.path} is {x.task}, {y.path} is {y.task}; expected one task")
    compared = list(on) if on is not None else \
        (["predicted_objects"] if detection else ["prediction", "correct"])
    if not compared:
        raise ValueError("on: got no columns; expected the columns to compare, e.g. ['prediction']")
    both = [c for c in x.columns if c in set(y.columns)]
    for column in compared:
        if column not in both:
            missing = x if column not in x.columns else y
            raise ValueError(f"on: column {column!r} is not in export {missing.path}; expected "
                             f"columns of both exports")
    scores = ["num_predictions", "precision", "recall"] if detection else ["confidence"]
    shown = [c for c in dict.fromkeys(["record_key", *compared, *scores, "image_path"]) if c in both]
    select = ["x.sample_index"] + ([] if detection else ["x.target"])
    for column in shown:
        q = quote_identifier(column)
        select += [f"x.{q} AS {quote_identifier(column + '_a')}",
                   f"y.{q} AS {quote_identifier(column + '_b')}"]
    changed = " OR ".join(f"x.{quote_identifier(c)} IS DISTINCT FROM y.{quote_identifier(c)}"
                          for c in compared)
    connection = _joined(x, y)
    return connection.sql(
        f"SELECT {', '.join(select)} FROM x JOIN y ON x.sample_index = y.sample_index "
        f"WHERE x.chain = {sql_literal(chain)} AND y.chain = {sql_literal(chain_b)} "
        f"AND ({changed}) ORDER BY x.sample_index").to_arrow_table()


def _joined(x: Export, y: Export) -> Any:
    """A DuckDB connection with the views ``x`` and ``y`` over the two exports' tables."""
    import duckdb

    connection = duckdb.connect()
    for view, export in (("x", x), ("y", y)):
        if export.parts:
            files = ", ".join(sql_literal(str(p)) for p in export.parts)
            connection.execute(f"CREATE VIEW {view} AS SELECT * FROM "
                               f"read_parquet([{files}], union_by_name = true)")
        else:
            connection.register(view, export.schema.empty_table())
    return connection
