"""ExportWriter: merges what exporters hand over into one record per (chain, sample).

Exporters call :meth:`ExportWriter.add_records` (columnar, one call per exporter and
batch) or :meth:`ExportWriter.add` (one record); :meth:`ExportWriter.end_batch` merges
the batch's contributions (the union of the exporters' selections: each column comes
from the first exporter that gave it, the ``exporters`` column lists all of them in the
order they first added to the batch) and
streams the rows to Parquet; :meth:`ExportWriter.close` finishes the table, builds the
FiftyOne dataset and marks the manifest complete.

Re-running into a directory:

* manifest status "writing" (an interrupted export): resumed by default. Records in
  finished table parts are skipped (no image is rewritten), the rest are written again,
  the export id is kept, and the FiftyOne dataset is rebuilt from the table at close.
  The evaluation name and each exporter's type, criterion and parameters must match.
* manifest status "complete": refused (FileExistsError) unless ``overwrite=True``,
  which replaces the manifest, table, media and the old FiftyOne dataset.
* a non-empty directory without a manifest: refused unless ``overwrite=True``.

Nothing is created on disk before the first record or image is written, so a batch
rejected before that leaves no file behind.

Example:
    >>> import numpy as np, tempfile
    >>> export_dir = Path(tempfile.mkdtemp()) / "run"
    >>> with ExportWriter(export_dir, {"name": "demo"}, fiftyone=False) as writer:
    ...     name = writer.register_exporter("clf", "Manual", None, {})
    ...     writer.add(name, "benign", 4, {"target": 1}, batch=0, position=0,
    ...                image=np.zeros((2, 2, 3), np.uint8))
    ...     writer.end_batch()
    >>> writer.manifest["counts"]["records"]
    1
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from armory_datasets.schema import VOCABULARY
from armory_datasets.store import media
from armory_datasets.store.fiftyone_import import RESERVED_FIELDS
from armory_datasets.store.hf_card import CARD_FILE, hf_label_metadata, write_dataset_card
from armory_datasets.store.manifest import (
    MANIFEST_FILE,
    default_dataset_name,
    format_arrow_type,
    json_ready,
    new_manifest,
    read_manifest,
    write_manifest,
)
from armory_datasets.store.parquet_writer import (
    TableWriter,
    conform_parts,
    count_records,
    part_paths,
    read_keys,
    unified_schema,
)

TABLE_DIR = "table"
_OWN_ENTRIES = (MANIFEST_FILE, TABLE_DIR, "media", CARD_FILE)


@dataclass
class _Contribution:
    """What one exporter handed over for some records of the current batch."""

    exporter: str
    chain: str
    sample_indices: np.ndarray
    batch: int
    positions: np.ndarray
    columns: dict[str, pa.Array]


class ExportWriter:
    """Write one self-contained export directory (table, media, manifest, FiftyOne).

    Args:
        export_dir: the export directory (created on first write).
        evaluation_info: ``{"name", "description", "author"}``; name defaults to the
            directory name.
        resume: continue an interrupted export in ``export_dir`` (see module docstring).
        overwrite: replace a complete export (or foreign files) in ``export_dir``.
        fiftyone: build the FiftyOne dataset at close (imports fiftyone only then).
        png_compress_level: zlib level of the lossless PNGs (0..9).
        rows_per_group, rows_per_part, seconds_per_part: Parquet streaming knobs.

    Example:
        >>> ExportWriter("/tmp/never-written", {"name": "x"}).export_id[8]
        'T'
    """

    def __init__(
        self,
        export_dir: str | Path,
        evaluation_info: Mapping[str, Any] | None = None,
        resume: bool = True,
        overwrite: bool = False,
        fiftyone: bool = True,
        png_compress_level: int = media.DEFAULT_PNG_COMPRESS_LEVEL,
        rows_per_group: int = 4096,
        rows_per_part: int = 100_000,
        seconds_per_part: float = 60.0,
    ) -> None:
        self.export_dir = Path(export_dir)
        evaluation = dict(evaluation_info or {})
        evaluation.setdefault("name", self.export_dir.name)
        if not isinstance(evaluation["name"], str) or not evaluation["name"]:
            raise ValueError(f"evaluation_info['name']: got {evaluation['name']!r}; "
                             f"expected a non-empty string")
        self.fiftyone = fiftyone
        self.png_compress_level = png_compress_level
        self._table_options = dict(rows_per_group=rows_per_group, rows_per_part=rows_per_part,
                                   seconds_per_part=seconds_per_part)
        existing = read_manifest(self.export_dir)
        self._replace_existing = False
        self._previous_exporters: dict[str, dict[str, Any]] = {}
        self._old_export: dict[str, Any] | None = None  # the manifest an overwrite replaces
        self.resuming = False
        if existing is not None and not overwrite:
            if existing["status"] == "complete":
                raise FileExistsError(
                    f"{self.export_dir}: holds the complete export {existing['export_id']}; "
                    f"pass overwrite=True to replace it, or choose another directory")
            if not resume:
                raise FileExistsError(
                    f"{self.export_dir}: holds the unfinished export {existing['export_id']}; "
                    f"pass resume=True to continue it or overwrite=True to replace it")
            if existing["evaluation"]["name"] != evaluation["name"]:
                raise ValueError(
                    f"{self.export_dir}: the unfinished export is of evaluation "
                    f"{existing['evaluation']['name']!r}, not {evaluation['name']!r}; pass "
                    f"overwrite=True to replace it")
            self.resuming = True
            self.manifest = existing
            self._previous_exporters = {e["name"]: e for e in existing["exporters"]}
            self.manifest["exporters"] = []
        else:
            if existing is None and self._has_foreign_files() and not overwrite:
                raise FileExistsError(
                    f"{self.export_dir}: not empty and not an export; pass overwrite=True to "
                    f"replace its manifest.json, table/ and media/, or choose another directory")
            self._replace_existing = overwrite and self.export_dir.exists()
            self._old_export = existing
            self.manifest = new_manifest(evaluation, png_compress_level)
        self.manifest["fiftyone"]["dataset"] = (
            (self.manifest["fiftyone"]["dataset"] or default_dataset_name(self.manifest))
            if fiftyone else None)
        self.export_id: str = self.manifest["export_id"]
        self._dynamic: dict[str, pa.DataType] = {}
        self._types = {c.name: c.arrow_type for c in VOCABULARY.columns.values()}
        self._resumed_keys: dict[str, set[int]] = {}
        if self.resuming:
            schema = unified_schema(self.export_dir / TABLE_DIR)
            self._dynamic = {f.name: f.type for f in schema or [] if f.name not in VOCABULARY}
            self._types.update(self._dynamic)
            self._resumed_keys = read_keys(self.export_dir / TABLE_DIR)
        self._written_keys: dict[str, set[int]] = {}
        self._pending: list[_Contribution] = []
        self._imaged: set[tuple[str, int]] = set()
        self._exporter_names: set[str] = set()
        self._table: TableWriter | None = None
        self._closed = False
        self._dataset_name: str | None = None

    # ------------------------------------------------------------------ registration

    def register_exporter(
        self,
        name: str,
        exporter_type: str,
        criterion: str | None,
        params: Mapping[str, Any],
        columns: Mapping[str, pa.DataType] | None = None,
    ) -> str:
        """Record an exporter for the manifest and declare its dynamic columns.

        Returns the name to use in ``add``: ``name``, or ``name_2``, ``name_3``... when
        another exporter already uses it.

        Example:
            >>> w = ExportWriter("/tmp/never-written", {"name": "x"})
            >>> w.register_exporter("a", "T", None, {}), w.register_exporter("a", "T", None, {})
            ('a', 'a_2')
        """
        unique, k = name, 1
        while unique in self._exporter_names:
            k += 1
            unique = f"{name}_{k}"
        entry = json_ready({"name": unique, "type": exporter_type, "criterion": criterion,
                            "params": dict(params)})
        previous = self._previous_exporters.get(unique)
        if previous is not None and previous != entry:
            raise ValueError(
                f"{self.export_dir}: resuming export {self.export_id}, whose exporter {unique!r} "
                f"was {previous}; now {entry}. Pass overwrite=True to start again")
        for column, arrow_type in (columns or {}).items():
            self._declare(column, arrow_type)
        self._exporter_names.add(unique)
        self.manifest["exporters"].append(entry)
        return unique

    def set_class_names(self, class_names: Sequence[str] | None) -> None:
        """Record the class names (label i is ``class_names[i]``); they must not change.

        Example:
            >>> ExportWriter("/tmp/never-written", {"name": "x"}).set_class_names(["cat", "dog"])
        """
        if class_names is None:
            return
        names = [str(c) for c in class_names]
        current = self.manifest["class_names"]
        if current is None:
            self.manifest["class_names"] = names
            if self._table is not None:
                self._table.set_metadata(hf_label_metadata(names))
        elif current != names:
            raise ValueError(f"class_names: got {names}; expected {current} (as in earlier batches)")

    def _declare(self, column: str, arrow_type: pa.DataType) -> None:
        known = self._types.get(column)
        if known is not None and not known.equals(arrow_type):
            raise ValueError(f"column {column!r}: declared as {arrow_type}; it is {known} in "
                             f"this export")
        if column not in VOCABULARY:
            _check_dynamic_name(column)
            format_arrow_type(arrow_type)  # a type the manifest can name
            self._dynamic[column] = self._types[column] = arrow_type

    # ------------------------------------------------------------------ adding

    def written(self, chain: str, sample_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Which records are already in finished parts of a resumed export (they are skipped).

        Exporters doing costly work (saliency) can skip those samples.

        Example:
            >>> ExportWriter("/tmp/never-written", {"name": "x"}).written("benign", [0, 1]).tolist()
            [False, False]
        """
        done = self._resumed_keys.get(chain)
        indices = np.asarray(sample_indices, dtype=np.int64)
        if not done:
            return np.zeros(len(indices), dtype=bool)
        return np.fromiter((i in done for i in indices.tolist()), dtype=bool, count=len(indices))

    def add(
        self,
        exporter_name: str,
        chain: str,
        sample_index: int,
        fields: Mapping[str, Any],
        batch: int,
        position: int,
        image: np.ndarray | None = None,
    ) -> None:
        """Add one record's fields (and optionally its (H,W,C) uint8 image).

        Example:
            >>> w = ExportWriter("/tmp/never-written", {"name": "x"})
            >>> w.add("saliency", "benign", 3, {"captum_max": 0.7}, batch=0, position=3)
        """
        self.add_records(
            exporter_name, chain, [sample_index], {k: [v] for k, v in fields.items()},
            batch=batch, positions=[position], images=None if image is None else image[None],
        )

    def add_records(
        self,
        exporter_name: str,
        chain: str,
        sample_indices: Sequence[int] | np.ndarray,
        fields: Mapping[str, Any],
        batch: int,
        positions: Sequence[int] | np.ndarray,
        constants: Mapping[str, Any] | None = None,
        images: np.ndarray | None = None,
    ) -> None:
        """Add several records of one batch: each field holds one value per record.

        ``constants`` are batch-level values copied to every record. ``images`` is
        (n,H,W,C) uint8; a record's PNG is written once, by the first exporter giving it.
        Everything is checked before anything is written; records already in a resumed
        export are skipped.

        Example:
            >>> w = ExportWriter("/tmp/never-written", {"name": "x"})
            >>> w.add_records("clf", "benign", [0, 1], {"target": [3, 4]}, batch=0,
            ...               positions=[0, 1], constants={"site": "lab"})
        """
        if self._closed:
            raise ValueError("writer: already closed")
        if not isinstance(chain, str) or not chain or "/" in chain:
            raise ValueError(f"chain: got {chain!r}; expected a non-empty name without '/'")
        indices = np.asarray(sample_indices, dtype=np.int64).reshape(-1)
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        n = len(indices)
        if positions.shape != (n,):
            raise ValueError(f"positions: got {len(positions)} values; expected {n} (one per record)")
        if n and indices.min() < 0:
            raise ValueError(f"sample_indices: got {indices.min()}; expected indices >= 0")
        if len(np.unique(indices)) != n:
            raise ValueError(f"sample_indices: {indices.tolist()} repeats an index; expected "
                             f"one record per sample")
        if images is not None and (images.dtype != np.uint8 or images.ndim != 4
                                   or len(images) != n or images.shape[3] not in (1, 3, 4)):
            raise ValueError(f"images: got {images.dtype} array of shape {images.shape}; "
                             f"expected ({n}, H, W, C) uint8 with C in 1, 3, 4")
        self._check_new(chain, indices, batch)
        done = self.written(chain, indices) if self._resumed_keys.get(chain) else None
        columns = {}
        for column, values in fields.items():
            array = self._to_arrow(column, values, n)
            if array is not None:
                columns[column] = array
        for column, value in (constants or {}).items():
            array = self._to_arrow(column, [value], 1)
            if array is not None:
                columns[column] = array.take(np.zeros(n, dtype=np.int64))
        if done is not None and done.any():
            kept = np.flatnonzero(~done)
            indices, positions = indices[kept], positions[kept]
            columns = {k: v.take(kept) for k, v in columns.items()}
            images = None if images is None else images[kept]
        if not len(indices):
            return
        if images is not None:
            columns.update(self._write_images(chain, indices, images))
        self._pending.append(_Contribution(exporter_name, chain, indices, int(batch), positions, columns))

    def write_heatmap(self, field: str, chain: str, sample_index: int, heatmap: np.ndarray) -> str:
        """Write a record's float32 TIFF heatmap; return its path for the ``{field}_path`` column.

        Example:
            >>> import tempfile
            >>> w = ExportWriter(Path(tempfile.mkdtemp()) / "e", {"name": "x"}, fiftyone=False)
            >>> w.write_heatmap("captum", "benign", 0, np.zeros((2, 2)))
            'media/heatmaps/captum/benign/00000000.tif'
        """
        relpath = media.heatmap_relpath(field, chain, int(sample_index))
        self._materialize()
        media.write_heatmap(self.export_dir / relpath, heatmap)
        return relpath

    def _check_new(self, chain: str, indices: np.ndarray, batch: int) -> None:
        written = self._written_keys.get(chain)
        if written and not written.isdisjoint(indices.tolist()):
            for index in indices.tolist():
                if index in written:
                    raise ValueError(
                        f"sample_index {index} of chain {chain!r} (batch {batch}) was already "
                        f"written in an earlier batch; expected unique global indices per chain")

    def _write_images(self, chain: str, indices: np.ndarray, images: np.ndarray) -> dict[str, pa.Array]:
        paths = [media.image_relpath(chain, i) for i in indices.tolist()]
        for relpath, index, image in zip(paths, indices.tolist(), images):
            if (chain, index) not in self._imaged:
                self._materialize()
                media.write_png(self.export_dir / relpath, image, self.png_compress_level)
                self._imaged.add((chain, index))
        n = len(indices)
        return {
            "image_path": pa.array(paths, pa.string()),
            "width": pa.array(np.full(n, images.shape[2], dtype=np.int32)),
            "height": pa.array(np.full(n, images.shape[1], dtype=np.int32)),
        }

    def _to_arrow(self, column: str, values: Any, n: int) -> pa.Array | None:
        """Arrow array of a column's values, typed as the export types it (or inferred)."""
        arrow_type = self._types.get(column)
        try:
            array = _arrow_array(values, arrow_type)
        except (pa.ArrowException, TypeError, ValueError) as error:
            expected = format_arrow_type(arrow_type) if arrow_type is not None else "one type"
            raise ValueError(f"column {column!r}: {error}; expected values of type {expected}") from None
        if len(array) != n:
            raise ValueError(f"column {column!r}: got {len(array)} values; expected {n} (one per record)")
        if arrow_type is None:
            _check_dynamic_name(column)
            if pa.types.is_null(array.type):
                return None  # all null so far: the column starts when a value arrives
            normalised = _normalise_type(array.type, column)
            array = array.cast(normalised)
            self._dynamic[column] = self._types[column] = normalised
        return array

    # ------------------------------------------------------------------ batches

    def end_batch(self) -> None:
        """Merge this batch's contributions into one row per record and stream them out.

        Example:
            >>> ExportWriter("/tmp/never-written", {"name": "x"}).end_batch()
        """
        pending, self._pending = self._pending, []
        self._imaged.clear()
        if not pending:
            return
        rows = _merge(pending, self.export_id)
        paths = rows.column("image_path") if "image_path" in rows.schema.names else None
        if paths is None or paths.null_count:
            first = 0 if paths is None else paths.is_null().index(True).as_py()
            raise ValueError(f"record {rows.column('record_key')[first].as_py()}: no image; "
                             f"expected an exporter to pass the record's image (images= / image=)")
        self._materialize()
        self._table.write(rows)
        self._table.maybe_finish_part()
        for c in pending:
            self._written_keys.setdefault(c.chain, set()).update(c.sample_indices.tolist())

    # ------------------------------------------------------------------ directory

    def _has_foreign_files(self) -> bool:
        return self.export_dir.exists() and any(self.export_dir.iterdir())

    def _materialize(self) -> None:
        """Prepare the directory on the first write: clear a replaced export, start the table."""
        if self._table is not None:
            return
        if self._replace_existing:
            for entry in _OWN_ENTRIES:
                path = self.export_dir / entry
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        self.export_dir.mkdir(parents=True, exist_ok=True)
        if self.resuming:
            for entry in (TABLE_DIR, "media"):
                media.remove_tmp_files(self.export_dir / entry)
        schema = pa.schema(list(VOCABULARY.arrow_schema())
                           + [pa.field(k, t) for k, t in self._dynamic.items()])
        self._table = TableWriter(self.export_dir / TABLE_DIR, schema, on_part=self._on_part,
                                  **self._table_options)
        self._table.set_metadata(hf_label_metadata(self.manifest["class_names"]))
        self._write_manifest()

    def _on_part(self, _path: Path) -> None:
        self._write_manifest()

    def _write_manifest(self) -> None:
        self.manifest["table"]["parts"] = [p.name for p in part_paths(self.export_dir / TABLE_DIR)]
        schema = self._table.schema if self._table is not None else []
        self.manifest["dynamic_columns"] = [
            {"name": f.name, "arrow_type": format_arrow_type(f.type)}
            for f in schema if f.name not in VOCABULARY
        ]
        write_manifest(self.export_dir, self.manifest)

    def close(self) -> str | None:
        """Finish the table, build the FiftyOne dataset, mark the manifest complete.

        Returns the FiftyOne dataset's name (None when written without FiftyOne): the
        manifest's, or this directory's copy name when another directory owns that one.

        Example:
            >>> import tempfile
            >>> w = ExportWriter(Path(tempfile.mkdtemp()) / "e", {"name": "x"}, fiftyone=False)
            >>> w.close(), w.manifest["status"]
            (None, 'complete')
        """
        if self._closed:
            return self._dataset_name
        self.end_batch()
        self._materialize()
        self._closed = True
        self._table.close()
        conform_parts(self.export_dir / TABLE_DIR)
        self.manifest["counts"] = count_records(self.export_dir / TABLE_DIR)
        write_dataset_card(self.export_dir, self.manifest)
        self._write_manifest()
        if self.fiftyone:
            from armory_datasets.store.fiftyone_import import (
                delete_owned_datasets,
                export_fiftyone_dataset,
            )

            dataset = export_fiftyone_dataset(self.export_dir, rebuild=True)
            self._dataset_name = dataset.name  # a copy's own name when another directory has the manifest's
            self.manifest["fiftyone"]["saved_views"] = list(dataset.list_saved_views())
            if self._old_export is not None and self._old_export["fiftyone"]["dataset"]:
                delete_owned_datasets(self.export_dir, self._old_export)  # never another copy's
        self.manifest["status"] = "complete"
        self._write_manifest()
        return self._dataset_name

    def abort(self) -> None:
        """Stop after an error: drop the unfinished batch, keep finished batches for resuming.

        Example:
            >>> ExportWriter("/tmp/never-written", {"name": "x"}).abort()
        """
        if self._closed:
            return
        self._closed = True
        self._pending = []
        if self._table is not None:
            self._table.close()
            self._write_manifest()

    def __enter__(self) -> ExportWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _check_dynamic_name(column: str) -> None:
    if (not isinstance(column, str) or not column or "." in column or column[0] in "_$"
            or column in RESERVED_FIELDS):
        raise ValueError(f"column {column!r}: not usable as a column name; expected a name "
                         f"without '.', not starting with '_' or '$', and not one of "
                         f"{sorted(RESERVED_FIELDS)} (FiftyOne's own fields)")


def _arrow_array(values: Any, arrow_type: pa.DataType | None) -> pa.Array:
    """pyarrow's conversion, with fast paths for numpy arrays (a 2-D array is a list column)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if arrow_type is None else values.cast(arrow_type)
    if isinstance(values, np.ndarray) and values.dtype != object:
        if values.ndim == 1:
            return pa.array(values, type=arrow_type, from_pandas=True)  # NaN -> null
        if values.ndim == 2 and values.shape[1] and (arrow_type is None or pa.types.is_list(arrow_type)):
            flat = pa.array(values.reshape(-1), type=None if arrow_type is None else arrow_type.value_type)
            offsets = np.arange(0, values.size + 1, values.shape[1], dtype=np.int32)
            return pa.ListArray.from_arrays(pa.array(offsets), flat)
    try:
        return pa.array(values if isinstance(values, (list, tuple)) else list(values), type=arrow_type)
    except (pa.ArrowException, TypeError, ValueError):
        return pa.array([_plain(v) for v in values], type=arrow_type)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values pyarrow converts without surprises."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _normalise_type(arrow_type: pa.DataType, column: str) -> pa.DataType:
    """The type a dynamic column gets: 64-bit ints and floats, so batches agree."""
    t = arrow_type
    if pa.types.is_boolean(t) or pa.types.is_string(t):
        return t
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(_normalise_type(t.value_type, column))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _normalise_type(f.type, column)) for f in t])
    raise ValueError(f"column {column!r}: values of Arrow type {t}; expected bools, integers, "
                     f"floats, strings, or lists/dicts of them")


def _merge(pending: list[_Contribution], export_id: str) -> pa.RecordBatch:
    """One row per (chain, sample_index) of the batch; the first contribution of a column wins.

    Vectorised: rows are the unique (chain, sample_index) keys, each contribution's rows
    are located with numpy, and each column is gathered with one Arrow ``take``.
    """
    if len(pending) == 1:
        return _single(pending[0], export_id)
    chains = list(dict.fromkeys(c.chain for c in pending))
    code = {chain: k for k, chain in enumerate(chains)}
    keys = np.concatenate([c.sample_indices * len(chains) + code[c.chain] for c in pending])
    unique, rows = np.unique(keys, return_inverse=True)
    n = len(unique)
    bounds = np.cumsum([0] + [len(c.sample_indices) for c in pending])
    rows_of = [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    first = np.full(n, -1, dtype=np.int64)  # first contribution row giving each record
    for rows_c, a in zip(reversed(rows_of), reversed(bounds[:-1])):
        first[rows_c] = a + np.arange(len(rows_c))
    sample_index = unique // len(chains)
    chain = pa.array(chains, pa.string()).take(pa.array(unique % len(chains)))
    names = list(dict.fromkeys(c.exporter for c in pending))
    chose = np.zeros((n, len(names)), dtype=bool)
    for c, rows_c in zip(pending, rows_of):
        chose[rows_c, names.index(c.exporter)] = True
    offsets = np.concatenate([[0], np.cumsum(chose.sum(axis=1))]).astype(np.int32)
    exporter_values = pa.array(names, pa.string()).take(pa.array(np.nonzero(chose)[1]))
    columns: dict[str, pa.Array] = {
        "export_id": pa.repeat(export_id, n),
        "record_key": pc.binary_join_element_wise(chain, pc.cast(pa.array(sample_index), pa.string()), "/"),
        "chain": chain,
        "batch": pa.array(np.concatenate([np.full(len(c.sample_indices), c.batch) for c in pending])[first]),
        "position": pa.array(np.concatenate([c.positions for c in pending])[first]),
        "sample_index": pa.array(sample_index),
        "exporters": pa.ListArray.from_arrays(pa.array(offsets), exporter_values),
    }
    for name in dict.fromkeys(name for c in pending for name in c.columns):  # gather, first wins
        given = [(c.columns[name], rows_c) for c, rows_c in zip(pending, rows_of) if name in c.columns]
        take = np.full(n, -1, dtype=np.int64)
        offset_of = np.cumsum([0] + [len(array) for array, _ in given])
        for (array, rows_c), offset in zip(reversed(given), reversed(offset_of[:-1])):
            take[rows_c] = offset + np.arange(len(array))
        source = pa.concat_arrays([array for array, _ in given])
        columns[name] = source.take(pa.array(take, mask=take < 0))
    return pa.RecordBatch.from_pydict(columns)


def _single(c: _Contribution, export_id: str) -> pa.RecordBatch:
    """The rows of a batch only one exporter contributed to (the common case)."""
    n = len(c.sample_indices)
    chain = pa.repeat(c.chain, n)
    sample_index = pa.array(c.sample_indices)
    columns = {
        "export_id": pa.repeat(export_id, n),
        "record_key": pc.binary_join_element_wise(chain, pc.cast(sample_index, pa.string()), "/"),
        "chain": chain,
        "batch": pa.array(np.full(n, c.batch, dtype=np.int64)),
        "position": pa.array(c.positions),
        "sample_index": sample_index,
        "exporters": pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)),
                                              pa.repeat(c.exporter, n)),
        **c.columns,
    }
    return pa.RecordBatch.from_pydict(columns)
