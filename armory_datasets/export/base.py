"""Exporter base class: select samples with a criterion, hand their fields to a writer.

An exporter is a context manager, like FiftyOne's exporters: ``setup`` (with the
engine's shared :class:`~armory_datasets.store.ExportWriter`, or standalone with its
own writer on ``export_dir``), ``export(batch_idx, batch)`` per batch, ``close``.

``export`` checks the batch first (``batch.validate()``, the criterion's mask, every
field's type): a bad batch raises ValueError naming the field, the sample and the
expected form, and nothing of it is written. It then selects positions with
``criterion.mask``, records the criterion's named metrics and ``batch.metrics``, the
dataset metadata (per sample), batch metadata and perturbation parameters (copied to
every record), and the task's own columns. As upstream, an exporter without a
criterion exports nothing and ``criteria.always()`` exports everything.

Global sample indices come from ``batch.global_indices``; a batch without them gets a
running count per chain (batches must then arrive in order), never upstream's
``batch_idx * len(batch) + i``, which is wrong after a short last batch.

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

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from armory_datasets.data import to_numpy

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
        self.name = name or self.default_name
        self.criterion = criterion
        self.export_dir = export_dir
        self.writer: Any = None
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

    def setup(self, writer: Any = None, export_dir: str | Path | None = None) -> None:
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
        """Export the samples of ``batch`` the criterion selects.

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
        indices = self._sample_indices(batch_idx, batch)
        if self.criterion is None:
            return
        positions = np.flatnonzero(self._mask(batch_idx, batch))
        if len(positions):
            fields = self.task_fields(batch, positions)
            self._add_recorded(fields, batch, positions)
            self.writer.set_class_names(batch.class_names)
            self.writer.add_records(
                self.name, batch.chain, indices[positions], fields, batch=batch_idx,
                positions=positions, constants=self._constants(batch),
                images=batch.inputs.to_uint8_hwc()[positions],
            )
        if self._owns_writer:
            self.writer.end_batch()

    def task_fields(self, batch: Any, positions: np.ndarray) -> dict[str, Any]:
        """The task's columns for the selected positions (one value per position)."""
        return {}

    def _sample_indices(self, batch_idx: int, batch: Any) -> np.ndarray:
        """Global indices: the batch's own, or a running count over the chain's batches."""
        expected, offset = self._next_index.get(batch.chain, (0, 0))
        n = len(batch)
        self._next_index[batch.chain] = (batch_idx + 1, offset + n)
        if batch.global_indices is not None:
            return batch.global_indices
        if batch_idx != expected:
            raise ValueError(
                f"global_indices: missing, and batch_idx {batch_idx} is not the next batch "
                f"({expected}) of chain {batch.chain!r}; expected batch.global_indices or "
                f"batches in order from 0")
        return np.arange(offset, offset + n, dtype=np.int64)

    def _mask(self, batch_idx: int, batch: Any) -> np.ndarray:
        mask = np.asarray(self.criterion.mask(batch_idx, batch))
        n = len(batch)
        if mask.ndim == 0:
            mask = np.full(n, bool(mask))
        if mask.shape != (n,) or mask.dtype != np.bool_:
            raise ValueError(f"criterion {self.criterion}: mask of shape {mask.shape} dtype "
                             f"{mask.dtype}; expected ({n},) bool")
        return mask

    def _add_recorded(self, fields: dict[str, Any], batch: Any, positions: np.ndarray) -> None:
        """Add the criterion's metrics, ``batch.metrics`` and per-sample metadata."""
        n = len(batch)
        metrics: dict[str, Callable[[], Any]] = {}
        for metric in self.criterion.metrics():
            name = getattr(metric, "name", None)
            if isinstance(name, str) and name:
                metrics[name] = lambda metric=metric: metric(batch)
        for name, values in batch.metrics.items():
            metrics[name] = lambda values=values: values
        for name, compute in metrics.items():
            if name not in fields:
                values = np.asarray(to_numpy(compute()))
                if values.ndim == 0:
                    values = np.full(n, values.item())
                if values.shape[:1] != (n,):
                    raise ValueError(f"metrics[{name!r}]: got shape {values.shape}; expected "
                                     f"({n},) one value per sample")
                fields[name] = values[positions]
        for name, values in batch.metadata.items():
            fields.setdefault(name, values[positions])

    @staticmethod
    def _constants(batch: Any) -> dict[str, Any]:
        """Batch metadata and perturbation parameters, copied to every record."""
        constants: dict[str, Any] = {}
        for name, value in batch.batch_metadata.items():
            constants[name] = value if isinstance(value, (str, bytes)) or not hasattr(value, "shape") \
                else to_numpy(value)
        for perturbation, params in batch.perturbations.items():
            for param, value in params.items():
                constants[f"{perturbation}_{param}"] = value
        return constants


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
