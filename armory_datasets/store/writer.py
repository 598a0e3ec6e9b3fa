"""ExportWriter: the export directory, its manifest and resuming; it composes the parts.

Exporters call :meth:`ExportWriter.add_records` (columnar, one call per exporter and
batch) or :meth:`ExportWriter.add` (one record). The parts, one idea each:

* :mod:`~armory_datasets.store.column_types`: every column's one Arrow type, value checks;
* :mod:`~armory_datasets.store.media_writer`: PNG images and TIFF heatmaps;
* :mod:`~armory_datasets.store.merge`: one row per (chain, sample) from several exporters
  (:meth:`ExportWriter.end_batch`), then streamed to Parquet (``parquet_writer``);
* :mod:`~armory_datasets.store.finalize`: ``finalize_export(dir)`` at :meth:`close`:
  conforms parts, counts, builds FiftyOne, marks the manifest complete.

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

import json
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from armory_datasets.records.names import check_name
from armory_datasets.schema import VOCABULARY
from armory_datasets.store import media
from armory_datasets.store.commit import check_writer_id, create_or_join, read_journals, write_journal
from armory_datasets.store.column_types import ColumnTypes, check_record_size
from armory_datasets.store.finalize import TABLE_DIR, finalize_export
from armory_datasets.store.hf_card import hf_label_metadata
from armory_datasets.store.manifest import (
    MANIFEST_FILE,
    default_dataset_name,
    format_arrow_type,
    json_ready,
    new_manifest,
    read_manifest,
    write_manifest,
)
from armory_datasets.store.media_writer import MediaWriter
from armory_datasets.store.merge import Contribution, merge
from armory_datasets.store.parquet_writer import TableWriter, part_paths, read_keys, unified_schema
from armory_datasets.store.png import check_compress_level
from armory_datasets.store.replace import Replacement, names_disk_full
from armory_datasets.untrusted import DamagedExportError, damaged

MAX_EVALUATION_INFO_BYTES = 1 << 20
"""The evaluation's name, description and author go to the manifest and the FiftyOne
dataset's info (one MongoDB document): 1 MiB in all."""


class ExportWriter:
    """Write one self-contained export directory (table, media, manifest, FiftyOne).

    Args:
        export_dir: the export directory (created on first write).
        evaluation_info: ``{"name", "description", "author"}``; name defaults to the
            directory name.
        resume: continue an interrupted export in ``export_dir`` (see module docstring).
        overwrite: replace a complete export (or foreign files) in ``export_dir``.
        fiftyone: build the FiftyOne dataset at close (imports fiftyone only then).
        png_compress_level: deflate level of the lossless PNGs, 0..9 (``store.png.encode_png``).
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
        writer_id: str | None = None,
    ) -> None:
        self.export_dir = Path(export_dir)
        self.writer_id = None if writer_id is None else check_writer_id(writer_id)
        if writer_id is not None and overwrite:
            raise ValueError(f"overwrite: got True with writer_id {writer_id!r}; expected "
                             f"False: writers sharing {self.export_dir} cannot replace it safely "
                             f"(delete the directory first)")
        evaluation = dict(evaluation_info or {})
        evaluation.setdefault("name", self.export_dir.name)
        check_name(evaluation["name"], "evaluation_info['name']")
        size = len(json.dumps(json_ready(evaluation)).encode("utf-8"))
        if size > MAX_EVALUATION_INFO_BYTES:
            raise ValueError(f"evaluation_info: {size} bytes; expected at most "
                             f"{MAX_EVALUATION_INFO_BYTES} (it is stored in the FiftyOne dataset)")
        check_compress_level(png_compress_level, "png_compress_level")
        self.fiftyone = fiftyone
        self.png_compress_level = png_compress_level
        self._table_options = dict(rows_per_group=rows_per_group, rows_per_part=rows_per_part,
                                   seconds_per_part=seconds_per_part)
        try:
            existing = read_manifest(self.export_dir)
        except DamagedExportError:
            if not overwrite:
                raise
            existing = None  # overwrite replaces a damaged export too
        if writer_id is not None:
            existing = create_or_join(self.export_dir, _shared_manifest(
                evaluation, png_compress_level, fiftyone)) if existing is None else existing
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
        self.final_dir = self.export_dir
        self._replacement = (Replacement(self.export_dir) if self._replace_existing
                             and any(self.export_dir.iterdir()) else None)
        if self._replacement is not None:  # written beside the old export, swapped at close
            self.export_dir = self._replacement.staging
        self.manifest["fiftyone"]["dataset"] = (
            (self.manifest["fiftyone"]["dataset"] or default_dataset_name(self.manifest))
            if fiftyone else None)
        self.export_id: str = self.manifest["export_id"]
        self.types = ColumnTypes()
        self._resumed_keys: dict[str, set[int]] = {}
        if self.resuming:
            self._check_parts()
            schema = unified_schema(self.export_dir / TABLE_DIR)
            self.types = ColumnTypes({f.name: f.type for f in schema or [] if f.name not in VOCABULARY})
            self._resumed_keys = read_keys(self._own_parts())
        self.media = MediaWriter(self.export_dir, self._materialize, png_compress_level)
        self._written_keys: dict[str, set[int]] = {}
        self._pending: list[Contribution] = []
        self._exporter_names: set[str] = set()
        self._table: TableWriter | None = None
        self._closed = False
        self._dataset_name: str | None = None
        self._metric_states: dict[str, Any] = {}

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
        check_name(name, "exporter name")
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
            self.types.declare(column, arrow_type)
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
        names = [check_name(str(c), f"class_names[{i}]", kind="label") for i, c in enumerate(class_names)]
        current = self.manifest["class_names"]
        if current is None:
            self.manifest["class_names"] = names
            if self._table is not None:
                self._table.set_metadata(hf_label_metadata(names))
        elif current != names:
            raise ValueError(f"class_names: got {names}; expected {current} (as in earlier batches)")

    def set_run_metrics(self, exporter_name: str, metrics: Mapping[str, Mapping[str, Any]],
                        states: Mapping[str, Any] | None = None) -> None:
        """An exporter's run-level metrics per chain, for the manifest's ``metrics``.

        One of several writers (``writer_id``) keeps ``states`` (what its shard saw, e.g.
        ``AveragePrecision.state()``) in its journal; the commit merges them.

        Example:
            >>> w = ExportWriter("/tmp/never-written", {"name": "x"})
            >>> w.set_run_metrics("det", {"benign": {"map": 0.5}}); w.manifest["metrics"]
            {'det': {'benign': {'map': 0.5}}}
        """
        check_name(exporter_name, "exporter name")
        self.manifest.setdefault("metrics", {})[exporter_name] = json_ready(
            {str(chain): dict(values) for chain, values in metrics.items()})
        if states is not None:
            self._metric_states[exporter_name] = json_ready(dict(states))

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

    @names_disk_full
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
        check_name(chain, "chain")
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
        columns, learned = {}, {}
        for column, values in fields.items():
            array, new_type = self.types.typed(column, values, n)
            if array is not None:
                columns[column] = array
            if new_type is not None:
                learned[column] = new_type
        for column, value in (constants or {}).items():
            array, new_type = self.types.typed(column, [value], 1)
            if array is not None:
                columns[column] = array.take(np.zeros(n, dtype=np.int64))
            if new_type is not None:
                learned[column] = new_type
        check_record_size(columns, n, where=f"record of chain {chain!r}")
        self.types.learn(learned)
        if done is not None and done.any():
            kept = np.flatnonzero(~done)
            indices, positions = indices[kept], positions[kept]
            columns = {k: v.take(kept) for k, v in columns.items()}
            images = None if images is None else images[kept]
        if not len(indices):
            return
        if images is not None:
            columns.update(self.media.write_images(chain, indices, images))
        self._pending.append(Contribution(exporter_name, chain, indices, int(batch), positions, columns))

    @names_disk_full
    def write_heatmap(self, field: str, chain: str, sample_index: int, heatmap: np.ndarray) -> str:
        """Write a record's 16-bit PNG heatmap (``media.write_heatmap``); return its path for
        the ``{field}_path`` column.

        Example:
            >>> import tempfile
            >>> w = ExportWriter(Path(tempfile.mkdtemp()) / "e", {"name": "x"}, fiftyone=False)
            >>> w.write_heatmap("captum", "benign", 0, np.zeros((2, 2)))[:38]
            'media/heatmaps/captum/benign/00000000-'
        """
        return self.media.write_heatmap(field, chain, sample_index, heatmap)

    def _check_new(self, chain: str, indices: np.ndarray, batch: int) -> None:
        written = self._written_keys.get(chain)
        if written and not written.isdisjoint(indices.tolist()):
            for index in indices.tolist():
                if index in written:
                    raise ValueError(
                        f"sample_index {index} of chain {chain!r} (batch {batch}) was already "
                        f"written in an earlier batch; expected unique global indices per chain")

    # ------------------------------------------------------------------ batches

    @names_disk_full
    def end_batch(self) -> None:
        """Merge this batch's contributions into one row per record and stream them out.

        Example:
            >>> ExportWriter("/tmp/never-written", {"name": "x"}).end_batch()
        """
        pending, self._pending = self._pending, []
        self.media.end_batch()
        if not pending:
            return
        rows = merge(pending, self.export_id)
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

    def _check_parts(self) -> None:
        """Before resuming: every finished part readable, else an error naming it (and verify)."""
        from armory_datasets.reading import part_schema  # reading imports store

        for part in part_paths(self.export_dir / TABLE_DIR):
            part_schema(part, self.export_dir)
            try:
                pq.ParquetFile(part).read(columns=["chain", "sample_index"])
            except (OSError, pa.ArrowException) as error:
                raise damaged(part, f"cannot be read as Parquet ({error})", self.export_dir) from None

    def _has_foreign_files(self) -> bool:
        return self.export_dir.exists() and any(self.export_dir.iterdir())

    def _materialize(self) -> None:
        """Prepare the directory on the first write and start the table."""
        if self._table is not None:
            return
        self.export_dir.mkdir(parents=True, exist_ok=True)
        if self.resuming and self.writer_id is None:  # other writers' are theirs to finish
            for entry in (TABLE_DIR, "media"):
                media.remove_tmp_files(self.export_dir / entry)
        schema = pa.schema(list(VOCABULARY.arrow_schema())
                           + [pa.field(k, t) for k, t in self.types.dynamic.items()])
        self._parts_written: set[str] = set()
        self._table = TableWriter(self.export_dir / TABLE_DIR, schema, on_part=self._on_part,
                                  before_part=self.media.flush, writer_id=self.writer_id,
                                  **self._table_options)
        self._table.set_metadata(hf_label_metadata(self.manifest["class_names"]))
        self._write_manifest()

    def _on_part(self, path: Path) -> None:
        self._parts_written.add(path.name)
        self._write_manifest()

    def _own_parts(self) -> list[Path]:
        """The finished parts this writer vouches for: all of them, or its journal's."""
        table_dir = self.export_dir / TABLE_DIR
        if self.writer_id is None:
            return part_paths(table_dir)
        journal = read_journals(table_dir).get(self.writer_id)
        return [table_dir / name for name in journal["parts"]] if journal else []

    def _write_journal(self, status: str) -> None:
        table_dir = self.export_dir / TABLE_DIR
        previous = read_journals(table_dir).get(self.writer_id) or {"parts": []}
        finished = {p.name for p in table_dir.glob(f"part-{self.writer_id}-*.parquet")}
        vouched = set(previous["parts"]) | (finished & self._parts_written)
        write_journal(table_dir, {
            "writer": self.writer_id, "export_id": self.export_id, "status": status,
            "parts": sorted(vouched), "exporters": self.manifest["exporters"],
            "class_names": self.manifest["class_names"], "metric_states": self._metric_states})

    def _write_manifest(self) -> None:
        if self.writer_id is not None:  # the manifest is the committer's; the journal is ours
            self._write_journal("writing")
            return
        self.manifest["table"]["parts"] = [p.name for p in part_paths(self.export_dir / TABLE_DIR)]
        schema = self._table.schema if self._table is not None else []
        self.manifest["dynamic_columns"] = [
            {"name": f.name, "arrow_type": format_arrow_type(f.type)}
            for f in schema if f.name not in VOCABULARY
        ]
        write_manifest(self.export_dir, self.manifest)

    @names_disk_full
    def close(self) -> str | None:
        """Finish the table, build the FiftyOne dataset, mark the manifest complete.

        Returns the FiftyOne dataset's name (None when written without FiftyOne): the
        manifest's, or this directory's copy name when another directory owns that one.
        One of several writers (``writer_id``) only marks its journal done.

        Example:
            >>> import tempfile
            >>> w = ExportWriter(Path(tempfile.mkdtemp()) / "e", {"name": "x"}, fiftyone=False)
            >>> w.close(), w.manifest["status"]
            (None, 'complete')
        """
        if self._closed:
            return self._dataset_name
        with ExitStack() as stack:
            collection = None
            if self.writer_id is None and self.manifest["fiftyone"]["dataset"]:
                from armory_datasets.store.fiftyone_import import export_collection

                collection = stack.enter_context(export_collection())  # made while the table is finished
            self.end_batch()
            self._materialize()
            self._closed = True
            self._table.close()  # waits for the media first (before_part), its last rows written
            self.media.flush()  # and when no part was left to finish
            if self.writer_id is not None:
                self._write_journal("done")  # commit_export() makes it visible
                return None
            if self._replacement is not None:
                self._replacement.swap()
                self.export_dir = self.final_dir
            try:
                self.manifest, self._dataset_name = finalize_export(
                    self.export_dir, self._old_export, self.manifest, collection)
            except BaseException:
                if self._replacement is not None:
                    self._replacement.undo()
                raise
        if self._replacement is not None:
            self._replacement.finish()
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
        try:
            self.media.flush()  # an image that failed keeps the part naming it unfinished
            if self._table is not None:
                self._table.close()
                self._write_manifest()
        except Exception:  # noqa: BLE001 -- e.g. the full disk again: the first error is the one to show
            pass
        finally:
            if self._replacement is not None:
                self._replacement.discard()

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


def _shared_manifest(evaluation: dict[str, Any], png_compress_level: int, fiftyone: bool) -> dict[str, Any]:
    """The manifest the first of several writers creates (the others adopt it)."""
    manifest = new_manifest(evaluation, png_compress_level)
    manifest["fiftyone"]["dataset"] = default_dataset_name(manifest) if fiftyone else None
    return manifest
