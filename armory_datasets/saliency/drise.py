"""D-RISE saliency of an object detector's detections (Petsiuk et al., 2021), chunked and seeded.

For each of ``num_masks`` random masks (a low-resolution binary grid of ``grid_size`` plus
one spare row and column, each cell kept with probability ``p``, bilinearly upsampled to
``cell = ceil(H / rows) x ceil(W / cols)`` pixels per cell and cropped at a random shift in
``[0, cell)``, as in RISE), the detector sees the masked image
``image * mask + fill * (1 - mask)``. A mask's weight for a target detection is the best
similarity over the detector's proposals on the masked image:
``IoU(target box, proposal box) * cosine(one-hot target class, proposal probs)
[* proposal objectness]``. The map of a target is ``sum_i weight_i * mask_i / (num_masks * p)``:
the paper's weighted sum, with RISE's constant factor so that a value reads as the mean
similarity when that pixel is visible (comparable across ``num_masks``). It is NOT divided
by per-pixel mask coverage and not rescaled per map, so a constant map stays constant and
never becomes NaN.

Masks are generated and scored in chunks of ``chunk_size(H, W)`` = ``batch_size``, capped
at ``max_batch_pixels // (H * W)`` (at least 1), so memory is bounded by the chunk, whatever
``num_masks`` is, and large images get smaller chunks by default (8 masks at 512 x 512).
The masks depend only on ``seed``, ``num_masks``, ``grid_size``, ``p`` and the image size,
not on the chunking.

Example:
    >>> import torch
    >>> def detector(images):  # finds one box of class 1 wherever the image is bright
    ...     return [{"boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0]]), "probs": torch.tensor([[0.0, 1.0]]),
    ...              "scores": im.mean().reshape(1) * 2} for im in images]
    >>> maps = DRise(num_masks=16, grid_size=4, batch_size=8).attribute(
    ...     detector, torch.ones(1, 8, 12), boxes=[[0, 0, 8, 8]], labels=[1], num_classes=2)
    >>> maps.shape, maps.dtype.name
    ((1, 8, 12), 'float32')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from armory_datasets.extras import require

require("torch", extra="saliency", feature=__name__)  # before importing them

import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

from armory_datasets.boxes import box_iou

Detector = Callable[[torch.Tensor], Sequence[Mapping[str, torch.Tensor | np.ndarray]]]
"""images (B, C, H, W) 0..1 -> per image {"boxes": (P, 4) xyxy px, and "probs": (P, num_classes)
or "labels": (P,); optionally "scores": (P,) and "objectness": (P,)}."""


@dataclass(frozen=True)
class DRise:
    """D-RISE settings; `attribute` computes the maps of one image's target detections.

    ``grid_size``: cells of the low-resolution grid, an int (square) or (rows, cols).
    ``p``: probability that a cell is kept (visible). ``fill``: value of hidden pixels in
    0..1 (0 = black). ``score_threshold``: proposals on masked images whose score is below
    it are ignored (score = ``scores``, else the max of ``probs``). ``batch_size`` and
    ``max_batch_pixels`` bound the masked images given to the detector at once.

    Example:
        >>> DRise(num_masks=100, grid_size=(8, 12)).grid_shape
        (8, 12)
    """

    num_masks: int = 1000
    grid_size: int | tuple[int, int] = 16
    p: float = 0.5
    seed: int = 0
    batch_size: int = 64
    max_batch_pixels: int = 2**21
    score_threshold: float = 0.5
    fill: float = 0.0

    def __post_init__(self) -> None:
        for name, low in (("num_masks", 1), ("batch_size", 1), ("max_batch_pixels", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        shape = (self.grid_size, self.grid_size) if np.ndim(self.grid_size) == 0 else tuple(self.grid_size)
        if len(shape) != 2 or not all(isinstance(g, (int, np.integer)) and not isinstance(g, bool) and g >= 1 for g in shape):
            raise ValueError(f"grid_size: expected a positive int or (rows, cols), got {self.grid_size!r}")
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"p: expected a probability in (0, 1], got {self.p!r}")
        if not 0.0 <= self.fill <= 1.0:
            raise ValueError(f"fill: expected a value in 0..1, got {self.fill!r}")
        if not math.isfinite(self.score_threshold):
            raise ValueError(f"score_threshold: expected a finite float, got {self.score_threshold!r}")

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(rows, cols) of the low-resolution grid."""
        g = self.grid_size
        return (int(g), int(g)) if np.ndim(g) == 0 else (int(g[0]), int(g[1]))  # type: ignore[index]

    def chunk_size(self, height: int, width: int) -> int:
        """Masks per chunk for a (height, width) image.

        Example:
            >>> DRise().chunk_size(64, 96), DRise().chunk_size(512, 512)
            (64, 8)
        """
        return max(1, min(self.batch_size, self.max_batch_pixels // (height * width)))

    def masks(self, height: int, width: int) -> Iterator[torch.Tensor]:
        """The masks for a (height, width) image, float32 (b, H, W) in 0..1, `chunk_size` at a time.

        Example:
            >>> chunks = list(DRise(num_masks=5, batch_size=2, grid_size=2).masks(6, 10))
            >>> [tuple(c.shape) for c in chunks]
            [(2, 6, 10), (2, 6, 10), (1, 6, 10)]
        """
        # Written by hand rather than with xaitk's RISEGrid: RISEGrid.perturb materialises
        # all num_masks full-size masks at once (1 GB for 1,000 masks at 512 x 512),
        # restarts its shift RNG on every call (so it cannot be chunked without changing
        # the masks) and upsamples mask by mask with scikit-image. Here all randomness is
        # drawn up front from one seeded Generator (a few bytes per cell) and each chunk
        # is upsampled in one torch call. Geometry as in RISE, except that the grid has one
        # spare row and column instead of being stretched by (rows + 1) / rows, so every
        # cell is exactly cell_h x cell_w pixels (also on non-square images).
        rows, cols = self.grid_shape
        rng = np.random.default_rng(self.seed)
        grids = rng.random((self.num_masks, rows + 1, cols + 1)) < self.p
        offsets = rng.random((self.num_masks, 2))
        cell_h, cell_w = math.ceil(height / rows), math.ceil(width / cols)
        shift_y = np.floor(offsets[:, 0] * cell_h).astype(np.int64)
        shift_x = np.floor(offsets[:, 1] * cell_w).astype(np.int64)
        up_size = ((rows + 1) * cell_h, (cols + 1) * cell_w)
        chunk = self.chunk_size(height, width)
        for start in range(0, self.num_masks, chunk):
            stop = min(start + chunk, self.num_masks)
            low = torch.from_numpy(grids[start:stop]).float()[:, None]
            up = F.interpolate(low, size=up_size, mode="bilinear", align_corners=False)[:, 0]
            yield torch.stack(
                [
                    up[i, y : y + height, x : x + width]
                    for i, (y, x) in enumerate(zip(shift_y[start:stop].tolist(), shift_x[start:stop].tolist()))
                ]
            )

    def attribute(
        self,
        detector: Detector,
        image_unit: torch.Tensor | np.ndarray,
        boxes: ArrayLike,
        labels: ArrayLike,
        num_classes: int,
    ) -> np.ndarray:
        """Maps float32 (K, H, W), one per target detection (``boxes`` (K, 4) xyxy px, ``labels`` (K,)).

        ``image_unit``: (C, H, W) in 0..1, the detector's input (any H, W); masked images
        are made on its device and given to ``detector`` (in eval mode) under no_grad. Raises
        ValueError naming the field for a bad image, boxes, labels (e.g. a label >=
        num_classes) or detector output.

        Example:
            >>> import torch
            >>> nothing = lambda images: [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)} for _ in images]
            >>> float(DRise(num_masks=4).attribute(nothing, torch.zeros(3, 5, 7), [[0, 0, 2, 2]], [0], 1).max())
            0.0
        """
        image, target_boxes, target_labels = _validated(image_unit, boxes, labels, num_classes)
        _, height, width = image.shape
        total = torch.zeros((len(target_labels), height * width), dtype=torch.float64)
        if len(target_labels) == 0:
            return total.reshape(0, height, width).numpy().astype(np.float32)
        onehot = np.eye(num_classes)[target_labels]
        for masks in self.masks(height, width):
            m = masks.to(image.device)[:, None]
            masked = image[None] * m + self.fill * (1.0 - m)
            with torch.no_grad():
                detections = detector(masked)
            weights = self._weights(detections, len(masks), target_boxes, onehot)
            total += (torch.from_numpy(weights).T.float() @ masks.reshape(len(masks), -1)).double()
        total /= self.num_masks * self.p
        return total.reshape(-1, height, width).numpy().astype(np.float32)

    def _weights(
        self,
        detections: Sequence[Mapping[str, torch.Tensor | np.ndarray]],
        n: int,
        target_boxes: np.ndarray,
        onehot: np.ndarray,
    ) -> np.ndarray:
        """(n, K) best similarity of each masked image's proposals to each target (0 without proposals)."""
        if len(detections) != n:
            raise ValueError(f"detector: returned {len(detections)} results for {n} images")
        parts = [_proposals(detection, onehot.shape[1]) for detection in detections]
        owner = np.repeat(np.arange(n), [len(part[0]) for part in parts])
        boxes, probs, scores, objectness = (np.concatenate([part[j] for part in parts]) for j in range(4))
        keep = scores >= self.score_threshold
        weights = np.zeros((n, len(onehot)))
        if not keep.any():
            return weights
        owner, boxes, probs, objectness = owner[keep], boxes[keep], probs[keep], objectness[keep]
        norms = np.linalg.norm(probs, axis=1)
        cosine = (probs @ onehot.T) / np.where(norms > 0, norms, 1.0)[:, None]
        similarity = box_iou(boxes, target_boxes) * cosine * objectness[:, None]  # (proposals, K)
        # Proposals are grouped by image in order: one max per run of the same owner.
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        weights[owner[starts]] = np.maximum.reduceat(similarity, starts, axis=0)
        return weights


def _proposals(
    detection: Mapping[str, torch.Tensor | np.ndarray], num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """boxes (P,4), class probabilities (P,C), scores (P,), objectness (P,) of one detector output."""

    def get(key: str) -> np.ndarray | None:
        value = detection.get(key)
        if value is None:
            return None
        return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)

    boxes = get("boxes")
    if boxes is None or (get("probs") is None and get("labels") is None):
        raise ValueError(f"detector: each result needs 'boxes' and 'probs' or 'labels', got keys {sorted(detection)}")
    boxes = boxes.astype(np.float64).reshape(-1, 4)
    probs, labels, scores, objectness = get("probs"), get("labels"), get("scores"), get("objectness")
    if probs is not None:
        probs = probs.astype(np.float64).reshape(-1, num_classes) if probs.size == 0 else probs.astype(np.float64)
        if probs.shape != (len(boxes), num_classes):
            raise ValueError(f"detector: 'probs' has shape {probs.shape}, expected ({len(boxes)}, {num_classes})")
    else:
        # One label per proposal (no distribution): one-hot class scores and the
        # confidence as objectness, as xaitk's DRISEScoring recommends.
        labels = labels.astype(np.int64).reshape(-1)
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"detector: a proposal label is outside 0..{num_classes - 1}")
        probs = np.eye(num_classes)[labels]
        if objectness is None and scores is not None:
            objectness = scores
    if scores is None:
        scores = probs.max(axis=1) if len(probs) else np.zeros(0)
    objectness = np.ones(len(boxes)) if objectness is None else objectness.astype(np.float64).reshape(-1)
    return boxes, probs, scores.astype(np.float64).reshape(-1), objectness


def _validated(
    image_unit: torch.Tensor | np.ndarray, boxes: ArrayLike, labels: ArrayLike, num_classes: int
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    image = torch.as_tensor(image_unit)
    if image.ndim != 3 or not image.is_floating_point():
        raise ValueError(f"image_unit: expected a float (C, H, W) image in 0..1, got {image.dtype} {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("image_unit: contains NaN or infinite values")
    if image.numel() and (image.min() < 0 or image.max() > 1):
        raise ValueError(f"image_unit: expected values in 0..1, got {image.min().item():.4g}..{image.max().item():.4g}")
    target_boxes = np.asarray(boxes, dtype=np.float64)
    if target_boxes.size == 0:
        target_boxes = target_boxes.reshape(0, 4)
    if target_boxes.ndim != 2 or target_boxes.shape[1] != 4 or not np.isfinite(target_boxes).all():
        raise ValueError(f"boxes: expected finite xyxy boxes (K, 4), got shape {target_boxes.shape}")
    target_labels = np.asarray(labels).reshape(-1)
    if len(target_labels) != len(target_boxes):
        raise ValueError(f"labels: expected {len(target_boxes)} labels (one per box), got {len(target_labels)}")
    if len(target_labels) and not np.issubdtype(target_labels.dtype, np.integer):
        raise ValueError(f"labels: expected integer class indices, got {target_labels.dtype}")
    bad = (target_labels < 0) | (target_labels >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels: box {i} has label {int(target_labels[i])}, outside 0..{num_classes - 1}")
    return image.float(), target_boxes, target_labels.astype(np.int64)


def box_saliency_stats(saliency: np.ndarray, box: ArrayLike) -> dict[str, float]:
    """min, max, mean of a (H, W) map, and the share of its positive mass inside ``box`` (xyxy px).

    A pixel is inside when its centre is; ``in_box_positive_share`` is NaN when the map
    has no positive mass at all (the share is undefined).

    Example:
        >>> m = np.zeros((4, 4), np.float32); m[:2, :2] = 1.0; m[3, 3] = 1.0
        >>> box_saliency_stats(m, [0, 0, 2, 2])["in_box_positive_share"]
        0.8
    """
    values = np.asarray(saliency, dtype=np.float64)
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"saliency: expected a non-empty (H, W) map, got shape {values.shape}")
    if b.shape != (4,) or not np.isfinite(b).all():
        raise ValueError(f"box: expected one finite xyxy box (4,), got {np.asarray(box).tolist()}")
    ys = np.arange(values.shape[0]) + 0.5
    xs = np.arange(values.shape[1]) + 0.5
    inside = ((ys >= b[1]) & (ys < b[3]))[:, None] & ((xs >= b[0]) & (xs < b[2]))[None, :]
    positive = np.clip(values, 0, None)
    total = positive.sum()
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "in_box_positive_share": float(positive[inside].sum() / total) if total > 0 else float("nan"),
    }
