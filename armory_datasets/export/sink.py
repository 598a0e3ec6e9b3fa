"""``ExportSink``: the API an exporter sees of the writer it hands records to.

:class:`armory_datasets.store.ExportWriter` implements it; the engine shares one among
its exporters, a standalone exporter opens its own. A test double or another store
only needs these members.

Example:
    >>> from armory_datasets.store import ExportWriter
    >>> isinstance(ExportWriter("/tmp/never-written", {"name": "x"}), ExportSink)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from armory_datasets.store.column_types import ColumnTypes

__all__ = ["ExportSink"]


@runtime_checkable
class ExportSink(Protocol):
    """Where an exporter's records go (see ``armory_datasets.store.writer`` for the semantics)."""

    manifest: dict[str, Any]
    types: ColumnTypes

    def register_exporter(self, name: str, exporter_type: str, criterion: str | None,
                          params: Mapping[str, Any],
                          columns: Mapping[str, pa.DataType] | None = None) -> str: ...

    def set_class_names(self, class_names: Sequence[str] | None) -> None: ...

    def set_run_metrics(self, exporter_name: str, metrics: Mapping[str, Mapping[str, Any]],
                        states: Mapping[str, Any] | None = None) -> None: ...

    def written(self, chain: str, sample_indices: Sequence[int] | np.ndarray) -> np.ndarray: ...

    def add_records(self, exporter_name: str, chain: str, sample_indices: Sequence[int] | np.ndarray,
                    fields: Mapping[str, Any], batch: int, positions: Sequence[int] | np.ndarray,
                    constants: Mapping[str, Any] | None = None,
                    images: np.ndarray | None = None) -> None: ...

    def write_heatmap(self, field: str, chain: str, sample_index: int, heatmap: np.ndarray) -> str: ...

    def end_batch(self) -> None: ...

    def close(self) -> str | None: ...

    def abort(self) -> None: ...
