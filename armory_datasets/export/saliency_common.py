"""What every saliency exporter shares: field names, the model's input, and storing maps.

A saliency *field* is one map per record, e.g. ``captum_ig``. Each map is written as a
16-bit grayscale PNG the FiftyOne App draws (``media/heatmaps/{field}/{chain}/
{sample_index:08d}-{hash}.png``, via ``ExportWriter.write_heatmap``; values within 1e-5
of the range, see ``store.media``) and recorded in the table as ``{field}_path`` plus
``{field}_min``, ``{field}_max``, ``{field}_mean`` of the exact float map (D-RISE adds
``{field}_in_box``). The FiftyOne build turns ``{field}_path`` into an ``fo.Heatmap``
field ``{field}`` whose ``range`` spans the PNG's levels, ``[0, 65535]``.

Example:
    >>> sorted(heatmap_columns("captum_ig"))
    ['captum_ig_max', 'captum_ig_mean', 'captum_ig_min', 'captum_ig_path']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from armory_datasets.data import Images
from armory_datasets.export.base import Exporter

if TYPE_CHECKING:
    import torch

STATS = ("min", "max", "mean")
"""Per-map statistics recorded as ``{field}_{stat}`` columns."""

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def check_prefix(prefix: str, argument: str = "name") -> str:
    """A field prefix made of letters, digits and underscores, starting with a letter.

    Example:
        >>> check_prefix("captum")
        'captum'
    """
    if not isinstance(prefix, str) or not _NAME.fullmatch(prefix):
        raise ValueError(f"{argument}: got {prefix!r}; expected letters, digits and '_', starting "
                         f"with a letter (it names the saliency fields)")
    return prefix


def heatmap_columns(field: str) -> dict[str, pa.DataType]:
    """The table columns of one saliency field (path and statistics).

    Example:
        >>> heatmap_columns("captum_ig")["captum_ig_min"]
        DataType(double)
    """
    return {f"{field}_path": pa.string(), **{f"{field}_{s}": pa.float64() for s in STATS}}


def map_stats(heatmap: np.ndarray) -> dict[str, float]:
    """min, max and mean of a map, as Python floats.

    Example:
        >>> map_stats(np.array([[0.0, 2.0]]))
        {'min': 0.0, 'max': 2.0, 'mean': 1.0}
    """
    values = np.asarray(heatmap, dtype=np.float64)
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean())}


def model_input(images: Images) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function taking 0..1 CHW images to what the model was given (``to_model_input``).

    Float images get the batch's mean/std; uint8 images were given to the model as
    floats 0..255. Differentiable, so attributions are taken on the 0..1 image.

    Example:
        >>> import torch
        >>> model_input(Images(np.zeros((1, 1, 2, 2), np.uint8)))(torch.ones(1, 1, 2, 2)).max().item()
        255.0
    """
    if images.scale == "uint8":
        return lambda unit: unit * 255.0
    return images.normalize


class SaliencyFields:
    """Mixin for saliency exporters: unique field prefix, global indices, skipping resumed
    samples, and writing maps with their columns. Put it before the task exporter.

    Example:
        >>> from armory_datasets.export import ImageClassificationExporter
        >>> class Mine(SaliencyFields, ImageClassificationExporter): pass
        >>> Mine(name="mine").name
        'mine'
    """

    writer: Any
    name: str
    _batch_indices: np.ndarray  # the sample indices of the batch being exported (set by Exporter)

    def setup(self, writer: Any = None, export_dir: Any = None) -> None:
        """As ``Exporter.setup``; refuses a name another exporter of the export already has."""
        given = self.name
        super().setup(writer=writer, export_dir=export_dir)  # type: ignore[misc]
        if self.name != given:
            raise ValueError(f"name: another exporter of this export is already named {given!r}; "
                             f"expected a unique name, since it names the saliency fields")

    def pending(self, batch: Any, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global indices of ``positions`` and which of them still need maps (not resumed).

        Example:
            >>> import tempfile
            >>> from armory_datasets.criteria import always
            >>> from armory_datasets.data import ImageClassificationBatch
            >>> from armory_datasets.export import ImageClassificationExporter
            >>> from armory_datasets.store import ExportWriter
            >>> class Mine(SaliencyFields, ImageClassificationExporter):
            ...     def task_fields(self, batch, positions):
            ...         indices, todo = self.pending(batch, positions)
            ...         print(indices.tolist(), todo.tolist())
            ...         return super().task_fields(batch, positions)
            >>> e = Mine(criterion=always())
            >>> e.setup(writer=ExportWriter(tempfile.mkdtemp(), fiftyone=False))
            >>> images = Images(np.zeros((2, 1, 2, 2), np.uint8))
            >>> e.export(0, ImageClassificationBatch(images, [0, 1], np.eye(2), global_indices=[5, 7]))
            [5, 7] [True, True]
        """
        indices = self._batch_indices[positions]
        return indices, ~np.asarray(self.writer.written(batch.chain, indices), dtype=bool)

    def store(
        self, field: str, chain: str, indices: np.ndarray, maps: Sequence[np.ndarray | None]
    ) -> dict[str, list[Any]]:
        """Write each map (None: no map, e.g. a resumed sample) and return the field's columns.

        Example:
            >>> import tempfile
            >>> from armory_datasets.export import ImageClassificationExporter
            >>> from armory_datasets.store import ExportWriter
            >>> class Mine(SaliencyFields, ImageClassificationExporter): pass
            >>> e = Mine(name="mine")
            >>> e.setup(writer=ExportWriter(tempfile.mkdtemp(), fiftyone=False))
            >>> columns = e.store("mine_map", "benign", np.array([3, 4]), [np.ones((2, 2)), None])
            >>> columns["mine_map_max"], columns["mine_map_path"][1]
            ([1.0, None], None)
        """
        for i, heatmap in zip(indices.tolist(), maps):
            check_finite(field, i, heatmap)
        columns: dict[str, list[Any]] = {name: [] for name in heatmap_columns(field)}
        for i, heatmap in zip(indices.tolist(), maps):
            stats = dict.fromkeys(STATS) if heatmap is None else map_stats(heatmap)
            path = None if heatmap is None else self.writer.write_heatmap(field, chain, i, heatmap)
            columns[f"{field}_path"].append(path)
            for stat, value in stats.items():
                columns[f"{field}_{stat}"].append(value)
        return columns


def check_finite(field: str, sample_index: int, heatmap: np.ndarray | None) -> None:
    """Refuse a map with NaN or inf before it is written.

    Example:
        >>> check_finite("captum_ig", 0, np.zeros((2, 2)))
    """
    if heatmap is not None and not np.isfinite(heatmap).all():
        raise ValueError(f"{field}: the map of sample {sample_index} has NaN or inf values; "
                         f"expected finite saliency (check the model's output)")


def check_eval(model: Any, exporter: type[Exporter]) -> None:
    """Refuse a torch module in training mode (BatchNorm/Dropout would change the maps).

    Example:
        >>> from torch import nn
        >>> check_eval(nn.Linear(1, 1).eval(), Exporter)
    """
    if getattr(model, "training", False):
        raise ValueError(f"model: in training mode; expected model.eval() before "
                         f"{exporter.__name__} (BatchNorm and Dropout would change the maps)")
