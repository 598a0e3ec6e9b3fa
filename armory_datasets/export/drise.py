"""DRiseSaliencyObjectDetectionExporter: a D-RISE map for every ground-truth and predicted box.

Upstream's arguments (``model``, ``num_classes``, ``num_masks``, ``batch_size``,
``criterion``, ``score_threshold``) plus ``seed``, ``grid_size``, ``p``, ``name``. For each
selected image, every ground-truth box and every prediction with ``score >=
score_threshold`` (the boxes of ``predicted_objects``) is explained with its label, by
``armory_datasets.saliency.DRise``: seeded masks (deterministic for a seed), scored in
chunks of ``batch_size`` masked images, any image size. The masked 0..1 images reach the
model through the batch's input transform; the same ``score_threshold`` decides which
proposals on a masked image count.

Fields (prefix = the exporter's name, default ``drise``), one per explained box:

- ``drise_gt_{k}``: the map of ``ground_truth_objects[k]`` (FiftyOne: ``ground_truth.detections[k]``);
- ``drise_pred_{k}``: the map of ``predicted_objects[k]`` (FiftyOne: ``predictions.detections[k]``),

each with the columns of ``saliency_common`` and ``{field}_in_box``: the share of the map's
above-mean mass (``max(map - mean, 0)``) inside its own box. D-RISE maps are non-negative
with a large baseline (the mean weight of all masks), so the share of raw mass is close to
the box's area share whatever the map shows; null for a constant map. ``drise_boxes`` lists the explained boxes of a
record: ``{field, kind ("gt"/"pred"), index, label, x_min, y_min, x_max, y_max, score,
path, min, max, mean, in_box}``, so a map leads to its box and a box to its map, in
Parquet and in FiftyOne (``sample["drise_boxes"]``, ``sample["drise_pred_0"]``). The
record also gets the detection columns. Every exporter of the export must use the same
``score_threshold`` (checked before any work), so ``predicted_objects`` is the list indexed.

Example:
    >>> from armory_datasets.demo.digits import TinyDigitsDetector
    >>> exporter = DRiseSaliencyObjectDetectionExporter(TinyDigitsDetector().eval(), num_classes=10)
    >>> exporter.field("pred", 2)
    'drise_pred_2'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from armory_datasets.extras import require

require("torch", extra="saliency", feature=__name__)  # before importing them

import torch

from armory_datasets.data import ObjectDetectionBatch, Objects
from armory_datasets.export.object_detection import ObjectDetectionExporter
from armory_datasets.export.saliency_common import (
    SaliencyFields,
    check_eval,
    check_finite,
    check_prefix,
    map_stats,
    model_input,
)
from armory_datasets.saliency.drise import DRise, box_saliency_stats

__all__ = ["DRiseSaliencyObjectDetectionExporter", "BOX_TYPE", "in_box"]

BOX_TYPE = pa.struct([
    ("field", pa.string()), ("kind", pa.string()), ("index", pa.int64()), ("label", pa.int64()),
    ("x_min", pa.float64()), ("y_min", pa.float64()), ("x_max", pa.float64()), ("y_max", pa.float64()),
    ("score", pa.float64()), ("path", pa.string()), ("min", pa.float64()), ("max", pa.float64()),
    ("mean", pa.float64()), ("in_box", pa.float64()),
])
"""One explained box of the ``{name}_boxes`` column."""


class DRiseSaliencyObjectDetectionExporter(SaliencyFields, ObjectDetectionExporter):
    """Exports D-RISE maps of every box (see the module docstring for the fields).

    Args:
        model: the evaluated detector (batch model input -> [{"boxes", "labels", "scores"
            [, "probs"]}, ...] per image).
        num_classes: number of classes; every explained label must be below it.
        num_masks: random masks per image (the same masks explain all of its boxes).
        criterion: which images get maps (None: none, as upstream).
        batch_size: masked images per forward pass.
        seed: seed of the masks.
        score_threshold: predictions explained and proposals counted (score >= it).
        grid_size, p: mask grid cells and the probability a cell is visible.
        name: exporter name and field prefix (default ``drise``).

    Example:
        >>> from armory_datasets.demo.digits import TinyDigitsDetector
        >>> DRiseSaliencyObjectDetectionExporter(TinyDigitsDetector(), 10, num_masks=10).params()["num_masks"]
        10
    """

    default_name = "drise"

    def __init__(
        self,
        model: Callable[[torch.Tensor], Sequence[Mapping[str, Any]]],
        num_classes: int,
        num_masks: int = 1000,
        criterion: Any = None,
        batch_size: int = 64,
        seed: int = 0,
        score_threshold: float = 0.5,
        grid_size: int | tuple[int, int] = 16,
        p: float = 0.5,
        name: str | None = None,
        export_dir: str | Path | None = None,
    ) -> None:
        super().__init__(name=name, score_threshold=score_threshold, criterion=criterion,
                         export_dir=export_dir)
        check_prefix(self.name)
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes: got {num_classes!r}; expected a positive int")
        if not callable(model):
            raise ValueError(f"model: got {type(model).__name__}; expected a callable detector")
        self.model = model
        self.num_classes = int(num_classes)
        self.drise = DRise(num_masks=num_masks, grid_size=grid_size, p=p, seed=seed,
                           batch_size=batch_size, score_threshold=self.score_threshold)

    def field(self, kind: str, index: int) -> str:
        """The field of the map of box ``index`` of kind "gt" or "pred".

        Example:
            >>> from armory_datasets.demo.digits import TinyDigitsDetector
            >>> DRiseSaliencyObjectDetectionExporter(TinyDigitsDetector(), 10, name="d").field("gt", 0)
            'd_gt_0'
        """
        return f"{self.name}_{kind}_{index}"

    def params(self) -> dict[str, Any]:
        d = self.drise
        return {**super().params(), "num_classes": self.num_classes, "num_masks": d.num_masks,
                "grid_size": list(d.grid_shape), "p": d.p, "seed": d.seed, "batch_size": d.batch_size,
                "fields": [f"{self.name}_gt_{{k}}", f"{self.name}_pred_{{k}}", f"{self.name}_boxes"]}

    def columns(self) -> dict[str, pa.DataType]:
        return {f"{self.name}_boxes": pa.list_(BOX_TYPE)}

    def task_fields(self, batch: ObjectDetectionBatch, positions: np.ndarray) -> dict[str, Any]:
        """Detection columns plus each explained box's map columns and the ``{name}_boxes`` list."""
        fields = super().task_fields(batch, positions)
        check_eval(self.model, type(self))
        self._check_threshold()
        explained = [self._explained(batch, j) for j in positions.tolist()]
        indices, todo = self.pending(batch, positions)
        images = batch.inputs.to_unit_float_chw()[positions]
        to_input = model_input(batch.inputs)

        def detector(masked: torch.Tensor) -> Sequence[Mapping[str, Any]]:
            return self.model(to_input(masked))

        boxes_column: list[list[dict[str, Any]] | None] = []
        columns: dict[str, list[Any]] = {}
        for row, (i, objects) in enumerate(zip(indices.tolist(), explained)):
            if not todo[row]:
                boxes_column.append(None)
                continue
            boxes = np.concatenate([o.boxes for _, o in objects])
            labels = np.concatenate([o.labels for _, o in objects])
            maps = self.drise.attribute(detector, images[row], boxes, labels, self.num_classes)
            entries = self._store_maps(batch.chain, i, objects, maps)
            boxes_column.append(entries)
            for entry in entries:
                for stat in ("path", "min", "max", "mean", "in_box"):
                    columns.setdefault(f"{entry['field']}_{stat}", [None] * len(positions))[row] = entry[stat]
        fields[f"{self.name}_boxes"] = boxes_column
        fields.update(columns)
        return fields

    def _check_threshold(self) -> None:
        """``drise_pred_{k}`` is ``predicted_objects[k]`` only if every exporter keeps the same boxes."""
        manifest = getattr(self.writer, "manifest", None) or {}
        for entry in manifest.get("exporters", []):
            other = entry.get("params", {}).get("score_threshold", self.score_threshold)
            if other != self.score_threshold:
                raise ValueError(
                    f"score_threshold: {self.score_threshold} here, {other} in exporter {entry['name']!r}; "
                    f"expected one threshold, so that {self.name}_pred_{{k}} explains predicted_objects[k]")

    def _explained(self, batch: ObjectDetectionBatch, position: int) -> list[tuple[str, Objects]]:
        """("gt", targets) and ("pred", predictions >= threshold) of a sample, labels checked."""
        objects = [("gt", batch.targets[position])]
        if batch.predictions is not None:
            objects.append(("pred", batch.predictions[position].above(self.score_threshold)))
        for kind, o in objects:
            bad = np.flatnonzero(o.labels >= self.num_classes)
            if len(bad):
                field = "targets" if kind == "gt" else "predictions"
                raise ValueError(f"{field}[{position}].labels[{bad[0]}]: label {o.labels[bad[0]]} outside "
                                 f"0..{self.num_classes - 1}; expected labels < num_classes={self.num_classes}")
        return objects

    def _store_maps(self, chain: str, sample_index: int, objects: list[tuple[str, Objects]],
                    maps: np.ndarray) -> list[dict[str, Any]]:
        """Write each box's map; its ``{name}_boxes`` entry (the stats double as columns)."""
        entries, row = [], 0
        for kind, o in objects:
            scores = o.scores if o.scores is not None else [None] * len(o)
            for k, (box, label, score) in enumerate(zip(o.boxes.tolist(), o.labels.tolist(), scores)):
                field = self.field(kind, k)
                heatmap = maps[row]
                row += 1
                check_finite(field, sample_index, heatmap)
                path = self.writer.write_heatmap(field, chain, sample_index, heatmap)
                x_min, y_min, x_max, y_max = box
                entries.append({"field": field, "kind": kind, "index": k, "label": label,
                                "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max,
                                "score": None if score is None else float(score), "path": path,
                                **map_stats(heatmap), "in_box": in_box(heatmap, box)})
        return entries


def in_box(heatmap: np.ndarray, box: Sequence[float]) -> float | None:
    """Share of the map's above-mean mass inside ``box`` (xyxy px); None for a constant map.

    Example:
        >>> m = np.zeros((4, 4)); m[:2, :2] = 1.0
        >>> in_box(m, [0, 0, 2, 2])
        1.0
    """
    share = box_saliency_stats(heatmap - heatmap.mean(), box)["in_box_positive_share"]
    return None if np.isnan(share) else share
