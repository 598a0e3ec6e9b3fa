"""Exporter base class: build a batch's records, select them with the criterion, write them.

An exporter is a context manager, like FiftyOne's exporters: ``setup`` (with the
engine's shared :class:`~armory_datasets.export.sink.ExportSink`, or standalone with its
own writer on ``export_dir``), ``export(batch_idx, batch)`` per batch, ``close``.

``export`` follows one flow for every exporter and every caller (the engine, or the
user's own loop):

1. check the batch (``batch.validate()``; an empty batch is an error);
2. give its samples their ``sample_index``: the batch's ``global_indices`` when it has
   them, else a running count per chain (batches must then arrive in order); never
   upstream's ``batch_idx * len(batch) + i``, which is wrong after a short last batch;
3. build the records of every sample as Arrow columns
   (:func:`~armory_datasets.records.builder.build_records`: keys, the task's
   ``record_columns`` at the exporter's settings, metrics, metadata, perturbations),
   every name and value checked;
4. evaluate the criterion on those columns
   (:func:`~armory_datasets.records.selection.select`), as a query of the table would;
5. only for the selected records: ``task_fields`` (saliency maps), then the
   images, the columns and the ``exporters`` entry go to the sink.

A bad batch raises ValueError naming the field, the sample and the expected form, and
nothing of it is written. As upstream, an exporter without a criterion exports nothing
and ``criteria.always()`` exports everything.

Example:
    >>> import numpy as np
    >>> from armory_datasets.criteria import always
    >>> from armory_datasets.data import ImageClassificationBatch, Images
    >>> from armory_datasets.export import ImageClassificationExporter
    >>> batch = ImageClassificationBatch(Images(np.zeros((2, 1, 4, 4), np.uint8)), [0, 1], np.eye(2))
    >>> with ImageClassificationExporter(criterion=always(), export_dir="out") as e:
    ...     e.export(0, batch)
    >>> import armory_datasets
    >>> armory_datasets.open_export("out").count("correct")
    2
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from armory_datasets.export.sink import ExportSink
from armory_datasets.records.builder import Records, build_records
from armory_datasets.records.names import check_name
from armory_datasets.records.selection import select
from armory_datasets.store.column_types import ColumnTypes

__all__ = ["Exporter"]


class Exporter:
    """Base of all exporters; subclasses set ``batch_type``/``default_name`` and add task fields.

    Args:
        name: name in the ``exporters`` column and the manifest (default: the kind,
            made unique by the writer, e.g. ``image_classification_2``).
        criterion: which samples to export (a criterion or an upstream-style function);
            None exports nothing.
        export_dir: standalone use: the directory of the exporter's own writer.

    Example:
        >>> Exporter(criterion=None).params()
        {}
    """

    batch_type: ClassVar[type | tuple[type, ...]] = object
    default_name: ClassVar[str] = "exporter"

    def __init__(
        self,
        name: str | None = None,
        criterion: Any = None,
        export_dir: str | Path | None = None,
    ) -> None:
        if criterion is not None and not hasattr(criterion, "mask"):
            from armory_datasets.criteria.nodes import as_criterion

            criterion = as_criterion(criterion)
        self.name = check_name(self.default_name if name is None else name, "name")
        self.criterion = criterion
        self.export_dir = export_dir
        self.writer: ExportSink | Any = None
        self._owns_writer = False
        self._next_index: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ description

    def params(self) -> dict[str, Any]:
        """The exporter's own parameters, for the manifest (JSON values).

        Example:
            >>> Exporter().params()
            {}
        """
        return {}

    def columns(self) -> dict[str, pa.DataType]:
        """Dynamic columns this exporter writes, declared to the writer before any batch.

        Example:
            >>> Exporter().columns()
            {}
        """
        return {}

    # ------------------------------------------------------------------ lifecycle

    def setup(self, writer: ExportSink | None = None, export_dir: str | Path | None = None) -> None:
        """Attach to the engine's writer, or open an own writer on ``export_dir``.

        Example:
            >>> from armory_datasets.store import ExportWriter
            >>> e = Exporter(name="mine"); e.setup(writer=ExportWriter("/tmp/never-written"))
            >>> e.name
            'mine'
        """
        if writer is None:
            export_dir = export_dir if export_dir is not None else self.export_dir
            if export_dir is None:
                raise ValueError("setup: got neither writer nor export_dir; expected an "
                                 "ExportWriter (engine) or a directory (standalone use)")
            from armory_datasets.store import ExportWriter

            writer, self._owns_writer = ExportWriter(export_dir), True
        self.writer = writer
        criterion = None if self.criterion is None else str(self.criterion)
        self.name = writer.register_exporter(self.name, type(self).__name__, criterion,
                                             self.params(), self.columns())

    def close(self) -> None:
        """Finish: closes the writer only if the exporter opened it (standalone use).

        Example:
            >>> Exporter().close()
        """
        if self._owns_writer and self.writer is not None:
            self.writer.close()
            self.writer, self._owns_writer = None, False

    def __enter__(self) -> Exporter:
        if self.writer is None:
            self.setup()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif self._owns_writer and self.writer is not None:
            self.writer.abort()
            self.writer, self._owns_writer = None, False

    # ------------------------------------------------------------------ exporting

    def export(self, batch_idx: int, batch: Any) -> None:
        """Export the samples of ``batch`` the criterion selects (the flow of the module docstring).

        Example:
            >>> import numpy as np
            >>> from armory_datasets.criteria import first_n_samples
            >>> from armory_datasets.data import ImageClassificationBatch, Images
            >>> from armory_datasets.export import ImageClassificationExporter
            >>> batch = ImageClassificationBatch(Images(np.zeros((3, 1, 4, 4), np.uint8)), [0, 1, 1],
            ...                                  np.eye(2)[[0, 1, 0]])
            >>> with ImageClassificationExporter(criterion=first_n_samples(2), export_dir="out") as e:
            ...     e.export(0, batch)
            >>> import armory_datasets
            >>> armory_datasets.open_export("out").count()
            2
        """
        if self.writer is None:
            raise RuntimeError(f"exporter {self.name!r}: export() before setup(); use it as a "
                               f"context manager or call setup(writer=...) first")
        if not isinstance(batch, self.batch_type):
            raise ValueError(f"batch: got {type(batch).__name__}; expected "
                             f"{_type_names(self.batch_type)} for {type(self).__name__}")
        batch.validate()
        indices, advance = self._sample_indices(batch_idx, batch)
        self._batch_indices = indices
        if self.criterion is not None:
            records = self.records(batch_idx, batch, indices)
            positions = np.flatnonzero(self._mask(records, batch_idx, batch))
            if len(positions):
                self._write(records, batch, positions)
        advance()
        if self._owns_writer:
            self.writer.end_batch()

    def records(self, batch_idx: int, batch: Any, sample_indices: np.ndarray) -> Records:
        """Every sample's record of this batch (columns of ``build_records``), checked.

        Example:
            >>> from armory_datasets.criteria import always
            >>> from armory_datasets.data import ImageClassificationBatch, Images
            >>> from armory_datasets.export import ImageClassificationExporter
            >>> b = ImageClassificationBatch(Images(np.zeros((2, 1, 4, 4), np.uint8)), [0, 1], np.eye(2))
            >>> records = ImageClassificationExporter(criterion=always()).records(0, b, np.array([7, 8]))
            >>> records.table().column("sample_index").to_pylist()
            [7, 8]
        """
        metrics = self.criterion.metrics() if self.criterion is not None else []
        types = getattr(self.writer, "types", None) or ColumnTypes()
        return build_records(batch_idx, batch, sample_indices, self.record_columns(batch), metrics, types)

    def record_columns(self, batch: Any) -> dict[str, Any]:
        """The task's columns for every sample of the batch (one value per sample).

        Example:
            >>> Exporter().record_columns(None)
            {}
        """
        return {}

    def task_fields(self, batch: Any, positions: np.ndarray) -> dict[str, Any]:
        """Columns computed only for the selected ``positions`` (saliency maps); none here.

        Example:
            >>> Exporter().task_fields(None, np.arange(2))
            {}
        """
        return {}

    def _write(self, records: Records, batch: Any, positions: np.ndarray) -> None:
        fields = records.take(positions)
        fields.update(self.task_fields(batch, positions))
        self.writer.set_class_names(batch.class_names)
        images = batch.inputs.to_uint8_hwc()
        if not np.array_equal(positions, np.arange(len(images))):  # every sample: no copy to make
            images = images[positions]
        self.writer.add_records(
            self.name, batch.chain, records.sample_indices[positions], fields,
            batch=records.batch_idx, positions=positions, images=images,
        )

    def _sample_indices(self, batch_idx: int, batch: Any) -> tuple[np.ndarray, Any]:
        """Global indices (the batch's own, or a running count over the chain's batches), and
        the function that advances the count once the batch is exported."""
        expected, offset = self._next_index.get(batch.chain, (0, 0))
        n = len(batch)

        def advance() -> None:
            self._next_index[batch.chain] = (batch_idx + 1, offset + n)

        if batch.global_indices is not None:
            return batch.global_indices, advance
        if batch_idx != expected:
            raise ValueError(
                f"global_indices: missing, and batch_idx {batch_idx} is not the next batch "
                f"({expected}) of chain {batch.chain!r}; expected batch.global_indices or "
                f"batches in order from 0")
        return np.arange(offset, offset + n, dtype=np.int64), advance

    def _mask(self, records: Records, batch_idx: int, batch: Any) -> np.ndarray:
        mask = np.asarray(select(self.criterion, records, (batch_idx, batch)))
        n = len(batch)
        if mask.shape != (n,) or mask.dtype != np.bool_:
            raise ValueError(f"criterion {self.criterion}: mask of shape {mask.shape} dtype "
                             f"{mask.dtype}; expected ({n},) bool")
        return mask


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
