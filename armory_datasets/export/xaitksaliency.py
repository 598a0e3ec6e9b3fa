"""XaitkSaliencyBlackboxImageClassificationExporter: xaitk black-box maps, one per requested class.

Upstream's arguments (``name``, ``model``, ``classes``, ``algorithm``, ``criterion``);
``algorithm`` is optional: by default xaitk's ``SlidingWindowStack`` sized to the image
(see ``armory_datasets.saliency.XaitkSaliency``); any
``GenerateImageClassifierBlackboxSaliency`` is accepted. The black box sees the occluded
0..1 images through the batch's input transform and returns softmax PROBABILITIES (a
model that already outputs probabilities, ``prediction_kind="probabilities"``, is not
softmaxed twice). Maps are xaitk's: signed, in [-1, 1], aligned with the exported image.

Fields: ``xaitk_{name}_{class}`` for each class in ``classes`` (e.g. ``xaitk_slidingwindow_6``),
with the columns of ``saliency_common``. The record also gets the classification columns.

Example:
    >>> from armory_datasets.demo.digits import TinyDigitsCNN
    >>> XaitkSaliencyBlackboxImageClassificationExporter(
    ...     name="slidingwindow", model=TinyDigitsCNN().eval(), classes=[6, 3]).fields
    ['xaitk_slidingwindow_6', 'xaitk_slidingwindow_3']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from armory_datasets.extras import require

require("torch", "xaitk_saliency", extra="saliency", feature=__name__)  # before importing them

import torch
from torch import nn

from armory_datasets.data import ImageClassificationBatch
from armory_datasets.export.image_classification import ImageClassificationExporter
from armory_datasets.export.saliency_common import (
    SaliencyFields,
    check_eval,
    check_prefix,
    heatmap_columns,
    model_input,
)
from armory_datasets.saliency.xaitk_maps import XaitkSaliency

if TYPE_CHECKING:
    from xaitk_saliency import GenerateImageClassifierBlackboxSaliency

__all__ = ["XaitkSaliencyBlackboxImageClassificationExporter"]


class _LogProbabilities(nn.Module):
    """``log(model(x))``: softmax of it gives back a probability model's own output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.model(x).clamp_min(torch.finfo(torch.float32).tiny))


class XaitkSaliencyBlackboxImageClassificationExporter(SaliencyFields, ImageClassificationExporter):
    """Exports xaitk black-box saliency maps (see the module docstring for the fields).

    Args:
        name: exporter name; fields are ``xaitk_{name}_{class}``.
        model: the evaluated classifier (an ``nn.Module`` taking the batch's model input).
        classes: the classes to explain, a map each.
        algorithm: an xaitk ``GenerateImageClassifierBlackboxSaliency``; None: SlidingWindowStack.
        criterion: which samples get maps (None: none, as upstream).
        batch_size: occluded images per forward pass.

    Example:
        >>> from torch import nn
        >>> XaitkSaliencyBlackboxImageClassificationExporter("rise", nn.Linear(4, 2), [1]).fields
        ['xaitk_rise_1']
    """

    default_name = "xaitk"

    def __init__(
        self,
        name: str,
        model: nn.Module,
        classes: Sequence[int],
        algorithm: GenerateImageClassifierBlackboxSaliency | None = None,
        criterion: Any = None,
        batch_size: int = 64,
        export_dir: str | Path | None = None,
    ) -> None:
        super().__init__(name=check_prefix(name), criterion=criterion, export_dir=export_dir)
        self.model = model
        self.saliency = XaitkSaliency(model, classes, algorithm=algorithm, batch_size=batch_size)
        self.classes = self.saliency.classes
        self.algorithm = algorithm
        self.batch_size = batch_size

    @property
    def fields(self) -> list[str]:
        """The heatmap fields, one per class, in the order of ``classes``.

        Example:
            >>> from torch import nn
            >>> XaitkSaliencyBlackboxImageClassificationExporter("sw", nn.Linear(4, 3), [2, 0]).fields
            ['xaitk_sw_2', 'xaitk_sw_0']
        """
        return [f"xaitk_{self.name}_{c}" for c in self.classes]

    def params(self) -> dict[str, Any]:
        algorithm = ("SlidingWindowStack, window H/4 x W/4, stride H/8 x W/8" if self.algorithm is None
                     else {"type": type(self.algorithm).__name__, "config": self.algorithm.get_config()})
        return {**super().params(), "classes": self.classes, "algorithm": algorithm,
                "batch_size": self.batch_size, "fields": self.fields}

    def columns(self) -> dict[str, pa.DataType]:
        return {name: t for field in self.fields for name, t in heatmap_columns(field).items()}

    def task_fields(self, batch: ImageClassificationBatch, positions: np.ndarray) -> dict[str, Any]:
        """Classification columns plus each class's map path and statistics."""
        fields = super().task_fields(batch, positions)
        check_eval(self.model, type(self))
        num_classes = batch.num_classes
        outside = [c for c in self.classes if num_classes is not None and c >= num_classes]
        if outside:
            raise ValueError(f"classes: {outside} outside the model's classes 0..{num_classes - 1}; "
                             f"expected classes < {num_classes}")
        indices, todo = self.pending(batch, positions)
        maps = np.zeros((0, len(self.classes)))
        if todo.any():
            model = self.model if batch.prediction_kind == "logits" else _LogProbabilities(self.model)
            saliency = XaitkSaliency(model, self.classes, algorithm=self.algorithm,
                                     normalize=model_input(batch.inputs), batch_size=self.batch_size)
            maps = saliency.attribute(batch.inputs.to_unit_float_chw()[positions[todo]])
        done = np.flatnonzero(todo).tolist()
        for k, field in enumerate(self.fields):
            per_record: list[np.ndarray | None] = [None] * len(positions)
            for row, j in enumerate(done):
                per_record[j] = maps[row, k]
            fields.update(self.store(field, batch.chain, indices, per_record))
        return fields
