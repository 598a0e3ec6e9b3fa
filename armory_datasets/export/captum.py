"""CaptumImageClassificationExporter: Captum attribution maps of selected samples as heatmaps.

Upstream's arguments (``do_saliency``, ``do_integrated_grads``, ``do_smoothgrad_squared``,
``do_deeplift``, ``internal_batch_size``, ``n_steps``, ``criterion``) plus ``layer`` (adds
GradCAM on that layer, upsampled to the image) and ``explain`` (which class each map
explains). Attributions are taken on the 0..1 image through the batch's own input
transform (mean/std, or x 255 for uint8 images), so the real model sees its real input
and map pixel (i, j) is pixel (i, j) of the exported PNG. Maps are summed over channels
and signed (``saliency`` and ``smoothgrad_sq`` are non-negative by construction).

Fields (prefix = the exporter's name, default ``captum``): ``captum_saliency``,
``captum_ig``, ``captum_smoothgrad_sq``, ``captum_deeplift``, ``captum_gradcam``; with
``explain=[c, ...]`` one field per class, ``captum_ig_{c}``. Each field gets the columns
of ``saliency_common``; ``captum_ig_delta`` / ``captum_deeplift_delta`` hold Captum's
convergence delta, and ``captum_class`` the explained class (``explain`` "target" or
"prediction"). The record also gets the classification columns.

Example:
    >>> from armory_datasets import criteria as C
    >>> from armory_datasets.demo.digits import TinyDigitsCNN
    >>> exporter = CaptumImageClassificationExporter(
    ...     model=TinyDigitsCNN().eval(), do_integrated_grads=True, n_steps=8,
    ...     criterion=C.when_metric_in(C.batch_targets(), [6, 3]))
    >>> exporter.fields
    ['captum_saliency', 'captum_ig']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from armory_datasets.extras import require

require("torch", "captum", extra="saliency", feature=__name__)  # before importing them

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
from armory_datasets.saliency.captum_maps import CaptumSaliency

__all__ = ["CaptumImageClassificationExporter", "METHOD_FIELDS"]

METHOD_FIELDS: dict[str, str] = {
    "saliency": "saliency",
    "integrated_gradients": "ig",
    "smoothgrad_squared": "smoothgrad_sq",
    "deeplift": "deeplift",
    "gradcam": "gradcam",
}
"""Captum method -> the field suffix of its maps."""

_WITH_DELTA = ("integrated_gradients", "deeplift")


class CaptumImageClassificationExporter(SaliencyFields, ImageClassificationExporter):
    """Exports Captum attribution maps (see the module docstring for methods and fields).

    Args:
        model: the evaluated classifier (an ``nn.Module`` taking the batch's model input).
        name: exporter name and field prefix (default ``captum``).
        do_saliency, do_integrated_grads, do_smoothgrad_squared, do_deeplift: methods, as upstream.
        internal_batch_size: images (samples x steps) per forward pass; None: automatic, bounded.
        n_steps: Integrated Gradients steps (also under SmoothGrad²).
        criterion: which samples get maps (None: none, as upstream).
        layer: a submodule (or its dotted name) for GradCAM; None: no GradCAM.
        explain: "target" (upstream), "prediction", or a list of classes (a map per class).
        nt_samples, nt_stdev, seed: SmoothGrad² noise (copies, std in 0..1 pixels, seed).

    Example:
        >>> from armory_datasets.demo.digits import TinyDigitsCNN
        >>> model = TinyDigitsCNN().eval()
        >>> CaptumImageClassificationExporter(model, layer=model.conv2, explain=[6, 3]).fields
        ['captum_saliency_6', 'captum_saliency_3', 'captum_gradcam_6', 'captum_gradcam_3']
    """

    default_name = "captum"

    def __init__(
        self,
        model: nn.Module,
        name: str | None = None,
        do_saliency: bool = True,
        do_integrated_grads: bool = False,
        do_smoothgrad_squared: bool = False,
        do_deeplift: bool = False,
        internal_batch_size: int | None = None,
        n_steps: int = 50,
        criterion: Any = None,
        layer: nn.Module | str | None = None,
        explain: Literal["target", "prediction"] | Sequence[int] = "target",
        nt_samples: int = 10,
        nt_stdev: float = 0.2,
        seed: int = 0,
        export_dir: str | Path | None = None,
    ) -> None:
        super().__init__(name=name, criterion=criterion, export_dir=export_dir)
        check_prefix(self.name)
        chosen = {"saliency": do_saliency, "integrated_gradients": do_integrated_grads,
                  "smoothgrad_squared": do_smoothgrad_squared, "deeplift": do_deeplift,
                  "gradcam": layer is not None}
        methods = [method for method, on in chosen.items() if on]
        if not methods:
            raise ValueError("do_saliency, do_integrated_grads, do_smoothgrad_squared, do_deeplift, "
                             "layer: all off; expected at least one method")
        self.model = model
        self.explain = _check_explain(explain)
        self.methods = {
            method: CaptumSaliency(
                model, method=method, n_steps=n_steps, internal_batch_size=internal_batch_size,
                layer=layer if method == "gradcam" else None, nt_samples=nt_samples,
                nt_stdev=nt_stdev, seed=seed)
            for method in methods
        }

    @property
    def fields(self) -> list[str]:
        """The heatmap fields this exporter writes, in order.

        Example:
            >>> from torch import nn
            >>> CaptumImageClassificationExporter(nn.Linear(2, 2), name="cap", do_deeplift=True).fields
            ['cap_saliency', 'cap_deeplift']
        """
        return [field for _, _, field in self._maps()]

    def _maps(self) -> list[tuple[str, int | None, str]]:
        """(method, class or None for target/prediction, field) of every map of a record."""
        classes = self.explain if isinstance(self.explain, list) else [None]
        return [(method, c, f"{self.name}_{METHOD_FIELDS[method]}" + ("" if c is None else f"_{c}"))
                for method in self.methods for c in classes]

    def params(self) -> dict[str, Any]:
        return {**super().params(), "explain": self.explain, "fields": self.fields,
                "methods": {m: s.params() for m, s in self.methods.items()},
                "internal_batch_size": next(iter(self.methods.values())).internal_batch_size}

    def columns(self) -> dict[str, pa.DataType]:
        columns: dict[str, pa.DataType] = {}
        for method, _, field in self._maps():
            columns.update(heatmap_columns(field))
            if method in _WITH_DELTA:
                columns[f"{field}_delta"] = pa.float64()
        if not isinstance(self.explain, list):
            columns[f"{self.name}_class"] = pa.int64()
        return columns

    def task_fields(self, batch: ImageClassificationBatch, positions: np.ndarray) -> dict[str, Any]:
        """Classification columns plus every field's map path, statistics and delta."""
        fields = super().task_fields(batch, positions)
        check_eval(self.model, type(self))
        classes = self._classes(batch, positions)
        indices, todo = self.pending(batch, positions)
        images = batch.inputs.to_unit_float_chw()[positions[todo]]
        to_input = model_input(batch.inputs)
        computed = {}
        for method, c, field in self._maps() if todo.any() else []:
            wanted = np.full(len(positions), c) if classes is None else classes
            computed[field] = self.methods[method].attribute(images, wanted[todo], normalize=to_input)
        if classes is not None:
            fields[f"{self.name}_class"] = classes
        for method, _, field in self._maps():
            maps: list[np.ndarray | None] = [None] * len(positions)
            deltas: list[float | None] = [None] * len(positions)
            if field in computed:
                for k, j in enumerate(np.flatnonzero(todo).tolist()):
                    maps[j] = computed[field].maps[k]
                    if computed[field].delta is not None:
                        deltas[j] = float(computed[field].delta[k])
            fields.update(self.store(field, batch.chain, indices, maps))
            if method in _WITH_DELTA:
                fields[f"{field}_delta"] = deltas
        return fields

    def _classes(self, batch: ImageClassificationBatch, positions: np.ndarray) -> np.ndarray | None:
        """Each selected sample's explained class (None for a class list), checked against the model."""
        if self.explain == "prediction":
            if batch.predictions is None:
                raise ValueError("predictions: missing; expected (N,C) model outputs for "
                                 "explain='prediction'")
            classes = batch.predictions[positions].argmax(axis=1).astype(np.int64)
        elif self.explain == "target":
            classes = batch.targets[positions]
        else:
            classes = np.asarray(self.explain, dtype=np.int64)
        num_classes = batch.num_classes
        if num_classes is not None and (classes >= num_classes).any():
            raise ValueError(f"explain: class {int(classes[classes >= num_classes][0])} outside the "
                             f"model's classes 0..{num_classes - 1}; expected classes < {num_classes}")
        return None if isinstance(self.explain, list) else classes


def _check_explain(explain: Any) -> str | list[int]:
    if explain in ("target", "prediction"):
        return str(explain)
    if isinstance(explain, str):
        raise ValueError(f"explain: got {explain!r}; expected 'target', 'prediction' or a list of classes")
    classes = list(np.asarray(explain).reshape(-1)) if explain is not None else []
    if (not classes or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0
                               for c in classes) or len(set(classes)) != len(classes)):
        raise ValueError(f"explain: got {explain!r}; expected 'target', 'prediction' or a non-empty "
                         f"list of distinct class indices >= 0")
    return [int(c) for c in classes]
