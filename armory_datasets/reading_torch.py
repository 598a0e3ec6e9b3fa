"""A torch ``Dataset`` over selected records of an export, for re-training and analysis.

Items are ``(image, target)`` or, with ``with_heatmap="field"``, ``(image, target,
heatmap)``: ``image`` a float32 (C, H, W) tensor in 0..1 read from the record's PNG
(then passed through ``transform``), ``target`` the class index (int64 tensor) for
classification or ``{"boxes": (K, 4) float32 xyxy pixels, "labels": (K,) int64}`` for
detection, ``heatmap`` the float32 (H, W) map read from ``{field}_path`` (``media.read_heatmap``).
Only records that have that heatmap are included. Detection targets vary in size:
use ``DataLoader(..., collate_fn=collate_detection)``.

Example:
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> from armory_datasets.reading import open_export
    >>> data = ExportTorchDataset(open_export(tiny_export()), where="~correct")
    >>> image, target = data[0]
    >>> image.shape, image.dtype, target
    (torch.Size([3, 8, 8]), torch.float32, tensor(1))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from armory_datasets.extras import require

require("torch", extra="torch", feature=__name__)  # before importing them

import torch

from armory_datasets.reading import UnknownColumnError
from armory_datasets.untrusted import damaged, inside_export

if TYPE_CHECKING:
    from armory_datasets.reading import Export, Where


def collate_detection(items: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Collate detection items: stacked images, a list of target dicts (and stacked heatmaps).

    Example:
        >>> collate_detection([(torch.zeros(1, 2, 2), {"labels": torch.tensor([1])})])[0].shape
        torch.Size([1, 1, 2, 2])
    """
    columns = list(zip(*items))
    return (torch.stack(columns[0]), list(columns[1]), *(torch.stack(c) for c in columns[2:]))


class ExportTorchDataset(torch.utils.data.Dataset):
    """Records of an export matching ``where`` as a map-style torch Dataset (module docstring).

    ``records`` holds the selected rows' keys (``record_key``, ``chain``, ``sample_index``).

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> from armory_datasets.reading import open_export
        >>> len(ExportTorchDataset(open_export(tiny_export()), where="chains(['noisy'])"))
        8
    """

    def __init__(self, export: Export, where: Where = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 with_heatmap: str | None = None) -> None:
        self.root = export.path
        self.transform = transform
        self.with_heatmap = with_heatmap
        self.target_column = "target" if export.task == "classification" else "ground_truth_objects"
        columns = ["record_key", "chain", "sample_index", "image_path", self.target_column]
        criterion = export.criterion(where)
        expression = None if criterion is None else criterion.to_arrow()
        if with_heatmap is not None:
            heatmap_column = f"{with_heatmap}_path"
            if heatmap_column not in export.columns:
                fields = [c[: -len("_path")] for c in export.columns
                          if c.endswith("_path") and c != "image_path"]
                raise UnknownColumnError(f"with_heatmap {with_heatmap!r} (heatmap fields: "
                                         f"{fields})", heatmap_column, export.columns)
            columns.append(heatmap_column)
            has_heatmap = pc.is_valid(pc.field(heatmap_column))
            expression = has_heatmap if expression is None else expression & has_heatmap
        table = export.dataset.to_table(columns=columns, filter=expression)
        self.records: pa.Table = table.select(["record_key", "chain", "sample_index"])
        keys = table.column("record_key").to_pylist()
        self._images: list[Path] = [
            inside_export(self.root, p, f"record {k!r} image_path", "media/images/")
            for k, p in zip(keys, table.column("image_path").to_pylist())]
        self._targets: list[Any] = table.column(self.target_column).to_pylist()
        self._heatmaps: list[Path] | None = None if with_heatmap is None else [
            inside_export(self.root, p, f"record {k!r} {columns[-1]}",
                          f"media/heatmaps/{with_heatmap}/")
            for k, p in zip(keys, table.column(columns[-1]).to_pylist())]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        from PIL import Image

        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} records")
        path = self._images[index]
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image)
        except Exception as error:  # noqa: BLE001 -- decoders raise many types on damaged files
            raise damaged(path, f"cannot be read as a PNG image ({error})", self.root) from None
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        tensor = torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float() / 255.0
        if self.transform is not None:
            tensor = self.transform(tensor)
        item: tuple[Any, ...] = (tensor, self._target(self._targets[index]))
        if self._heatmaps is not None:
            item += (torch.from_numpy(self._heatmap(self._heatmaps[index])),)
        return item

    def _heatmap(self, path: Path) -> np.ndarray:
        from armory_datasets.store.media import read_heatmap

        try:
            heatmap = read_heatmap(path)
        except Exception as error:  # noqa: BLE001 -- decoders raise many types on damaged files
            cause = str(error).removeprefix(f"{path}: ")
            raise damaged(path, f"cannot be read as a heatmap ({cause})", self.root) from None
        if heatmap.ndim != 2:
            raise damaged(path, f"holds a map of shape {heatmap.shape}; expected (H, W)", self.root)
        return heatmap

    def _target(self, value: Any) -> Any:
        if self.target_column == "target":
            return torch.tensor(value, dtype=torch.int64)
        boxes = [[o["x_min"], o["y_min"], o["x_max"], o["y_max"]] for o in value or []]
        return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([o["label"] for o in value or []], dtype=torch.int64)}
