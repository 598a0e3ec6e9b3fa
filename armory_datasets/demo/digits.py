"""scikit-learn's bundled digits: images, a tiny CNN classifier, detection canvases, a tiny detector.

Everything is offline and deterministic for a seed. Training is meant for one CPU thread
(call ``torch.set_num_threads(1)`` first; results can differ in the last bits across
thread counts).

Example:
    >>> import torch; torch.set_num_threads(1)
    >>> model = train_classifier(seed=0)
    >>> split = train_test_split_digits()
    >>> classifier_accuracy(model, split.test_images, split.test_labels) > 0.95
    True
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from armory_datasets.extras import require

require("torch", "sklearn", extra="torch", feature=__name__)  # before importing them

import torch
import torch.nn.functional as F
from torch import nn

from armory_datasets.boxes import box_iou, nms

DIGITS_MEAN: float = 0.3053
"""Pixel mean of the unit-scaled (0..1) 8x8 digits; the classifier expects (x - mean) / std."""
DIGITS_STD: float = 0.3760
"""Pixel standard deviation of the unit-scaled (0..1) 8x8 digits."""
NUM_CLASSES: int = 10
"""Digit classes 0..9 (class index == digit)."""
CLASS_NAMES: list[str] = [str(d) for d in range(NUM_CLASSES)]


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    images.setflags(write=False)
    labels = bunch.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def _upscale(images_8x8: np.ndarray, size: int) -> np.ndarray:
    x = torch.tensor(images_8x8, dtype=torch.float32)[:, None]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0).numpy()


def load_digits_images(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as float32 (N, 1, size, size) in 0..1 (bilinear upscale) and int64 labels (N,).

    Example:
        >>> images, labels = load_digits_images(32)
        >>> images.shape, labels[:3].tolist()
        ((1797, 1, 32, 32), [0, 1, 2])
    """
    images, labels = _raw_digits()
    return _upscale(images, size), labels.copy()


def normalize_digits(images_unit: torch.Tensor) -> torch.Tensor:
    """Map 0..1 images to the classifier's input space: (x - DIGITS_MEAN) / DIGITS_STD.

    Example:
        >>> normalize_digits(torch.full((1, 1, 2, 2), DIGITS_MEAN)).abs().max().item()
        0.0
    """
    return (images_unit - DIGITS_MEAN) / DIGITS_STD


class DigitsSplit(NamedTuple):
    """A train/test split of the digits (images float32 (N,1,S,S) 0..1, labels int64, indices into the 1,797)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    train_indices: np.ndarray
    test_indices: np.ndarray


def train_test_split_digits(seed: int = 0, size: int = 32, test_fraction: float = 0.25) -> DigitsSplit:
    """Deterministic stratified split of the digits (default: 1,347 train / 450 test).

    Example:
        >>> split = train_test_split_digits(seed=0)
        >>> len(split.train_labels), len(split.test_labels)
        (1347, 450)
    """
    from sklearn.model_selection import train_test_split

    images, labels = load_digits_images(size)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return DigitsSplit(
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], train_idx, test_idx
    )


class TinyDigitsCNN(nn.Module):
    """Small CNN: normalised (N,1,S,S) images (any S >= 8, non-square too) -> logits (N,10).

    Layers (distinct modules, no in-place ReLU, so Captum hooks work):
    ``conv1`` (16 ch, stride 2) -> ``bn1`` -> ``relu1`` -> ``conv2`` (32 ch, S/2 x S/2)
    -> ``bn2`` -> ``relu2`` -> ``pool2`` (max 2) -> ``pool3`` (adaptive avg 4x4) -> ``flatten`` -> ``fc``.
    Use ``model.conv2`` as the LayerGradCam layer.

    Example:
        >>> TinyDigitsCNN()(torch.zeros(2, 1, 32, 48)).shape
        torch.Size([2, 10])
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, stride=2, padding=2)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.pool3 = nn.AdaptiveAvgPool2d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32 * 4 * 4, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.flatten(self.pool3(x)))


def train_classifier(seed: int = 0, size: int = 32, epochs: int = 5, batch_size: int = 64) -> TinyDigitsCNN:
    """Train a TinyDigitsCNN on the train split of `train_test_split_digits(seed)`; returns it in eval mode.

    Adam with a one-cycle learning rate; ~2-3 s on one thread, ~98% test accuracy.
    Uses its own RNG (the global torch RNG is left untouched).

    Example:
        >>> model = train_classifier(seed=0, epochs=1)
        >>> model.training
        False
    """
    split = train_test_split_digits(seed=seed, size=size)
    x = normalize_digits(torch.from_numpy(split.train_images))
    y = torch.from_numpy(split.train_labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyDigitsCNN()
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        steps_per_epoch = -(-len(y) // batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=epochs * steps_per_epoch)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), batch_size):
                idx = order[start : start + batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        optimizer.zero_grad()
    return model.eval()


@torch.no_grad()
def classifier_accuracy(model: nn.Module, images_unit: np.ndarray | torch.Tensor, labels: np.ndarray) -> float:
    """Top-1 accuracy of `model` on 0..1 images (normalised here with `normalize_digits`).

    Example:
        >>> round(classifier_accuracy(TinyDigitsCNN().eval(), np.zeros((4, 1, 32, 32)), np.zeros(4)), 1) in (0.0, 1.0)
        True
    """
    x = normalize_digits(torch.as_tensor(np.asarray(images_unit), dtype=torch.float32))
    predictions = model(x).argmax(1).numpy()
    return float((predictions == np.asarray(labels)).mean())


def make_detection_canvases(
    n: int,
    height: int = 64,
    width: int = 96,
    digits_per_canvas: tuple[int, int] = (1, 3),
    digit_size: int = 24,
    seed: int = 0,
    split: str = "all",
    min_gap: int = 2,
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Paste random digits (no overlap, `min_gap` px apart) on black canvases.

    Returns images float32 (n, 1, height, width) in 0..1 and one target dict per canvas with
    ``boxes`` float32 (K, 4) xyxy pixels (the pasted digit_size x digit_size square) and
    ``labels`` int64 (K,). K is drawn uniformly from `digits_per_canvas` (inclusive); a digit
    that finds no free spot after 100 tries is left out. `split` ("all", "train", "test")
    draws digits from `train_test_split_digits(seed=0)` so held-out canvases use held-out digits.

    Example:
        >>> images, targets = make_detection_canvases(2, seed=1)
        >>> images.shape, sorted(targets[0])
        ((2, 1, 64, 96), ['boxes', 'labels'])
    """
    lo, hi = digits_per_canvas
    if not (0 <= lo <= hi) or digit_size > min(height, width):
        raise ValueError(f"bad digits_per_canvas={digits_per_canvas} or digit_size={digit_size} for {height}x{width}")
    raw, labels = _raw_digits()
    if split == "all":
        pool = np.arange(len(labels))
    elif split in ("train", "test"):
        split_indices = train_test_split_digits(seed=0, size=8)
        pool = split_indices.train_indices if split == "train" else split_indices.test_indices
    else:
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, height, width), dtype=np.float32)
    targets = []
    for i in range(n):
        boxes: list[list[float]] = []
        chosen: list[int] = []
        for _ in range(rng.integers(lo, hi + 1)):
            for _attempt in range(100):
                x0 = int(rng.integers(0, width - digit_size + 1))
                y0 = int(rng.integers(0, height - digit_size + 1))
                if all(
                    x0 >= bx1 + min_gap or x0 + digit_size + min_gap <= bx0
                    or y0 >= by1 + min_gap or y0 + digit_size + min_gap <= by0
                    for bx0, by0, bx1, by1 in boxes
                ):
                    boxes.append([x0, y0, x0 + digit_size, y0 + digit_size])
                    chosen.append(int(rng.choice(pool)))
                    break
        if chosen:
            patches = _upscale(raw[chosen], digit_size)
            for (x0, y0, x1, y1), patch in zip(boxes, patches):
                images[i, :, y0:y1, x0:x1] = patch
        targets.append(
            {
                "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                "labels": labels[chosen].astype(np.int64),
            }
        )
    return images, targets


class TinyDigitsDetector(nn.Module):
    """Sliding-window digit detector: a fully-convolutional 11-way classifier (10 digits + background).

    Every output cell scores one `window` x `window` box at a stride of 4 px. `forward` takes
    images (B,1,H,W) in 0..1 (H, W >= window; normalised inside) and returns per image a dict
    of tensors: ``boxes`` float32 (K,4) xyxy pixels, ``labels`` int64 (K,), ``scores`` float32
    (K,) and ``probs`` float32 (K, 10), the softmax probabilities of the ten digit classes
    (the background share is left out, so a row sums to <= 1; ``scores`` is its max).
    Post-processing: score threshold, class-agnostic NMS, then each kept box becomes the
    score-weighted mean of the candidate windows overlapping it (IoU > 0.5).
    Runs under ``torch.no_grad`` and is vectorised over the batch.

    Example:
        >>> out = TinyDigitsDetector()(torch.zeros(2, 1, 64, 96))
        >>> len(out), sorted(out[0])
        (2, ['boxes', 'labels', 'probs', 'scores'])
    """

    num_classes: int = NUM_CLASSES
    stride: int = 4

    def __init__(
        self,
        window: int = 24,
        score_threshold: float = 0.6,
        iou_threshold: float = 0.3,
        max_detections: int = 10,
    ) -> None:
        super().__init__()
        if window % self.stride:
            raise ValueError(f"window must be a multiple of {self.stride}, got {window}")
        self.window = window
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, window // self.stride),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, NUM_CLASSES + 1, 1),
        )

    def score_map(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, 11, h, w) of the windows; cell (i, j) is the box `window_boxes(h, w)[i * w + j]`."""
        return self.backbone(normalize_digits(images))

    def window_boxes(self, h: int, w: int) -> np.ndarray:
        """xyxy boxes (h*w, 4) float32 of the score-map cells, row-major."""
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        x0, y0 = xs.ravel() * self.stride, ys.ravel() * self.stride
        return np.stack([x0, y0, x0 + self.window, y0 + self.window], 1).astype(np.float32)

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        with torch.no_grad():
            probs = torch.softmax(self.score_map(images.float()), dim=1)
        b, c, h, w = probs.shape
        digit_probs = probs.reshape(b, c, h * w).transpose(1, 2)[..., :NUM_CLASSES].cpu().numpy()
        windows = self.window_boxes(h, w)
        return [self._postprocess(windows, p, images.device) for p in digit_probs]

    def _postprocess(self, windows: np.ndarray, probs: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        scores = probs.max(1)
        candidates = np.flatnonzero(scores >= self.score_threshold)
        keep = candidates[nms(windows[candidates], scores[candidates], self.iou_threshold)]
        keep = keep[: self.max_detections]
        overlap = box_iou(windows[keep], windows[candidates]) > 0.5
        weights = overlap * scores[candidates][None, :]
        boxes = (weights @ windows[candidates]) / np.maximum(weights.sum(1, keepdims=True), 1e-12)
        return {
            "boxes": torch.as_tensor(boxes.reshape(-1, 4), dtype=torch.float32, device=device),
            "labels": torch.as_tensor(probs[keep].argmax(1), dtype=torch.int64, device=device),
            "scores": torch.as_tensor(scores[keep], dtype=torch.float32, device=device),
            "probs": torch.as_tensor(probs[keep].reshape(-1, NUM_CLASSES), dtype=torch.float32, device=device),
        }


def dense_targets(
    detector: TinyDigitsDetector, targets: list[dict[str, np.ndarray]], h: int, w: int,
    positive_iou: float = 0.55, negative_iou: float = 0.3,
) -> np.ndarray:
    """The detector's training labels per score-map cell (B, h, w): the digit of a window
    with IoU >= ``positive_iou``, background (10) below ``negative_iou``, -100 between.

    Example:
        >>> dense_targets(TinyDigitsDetector(), [{"boxes": np.zeros((0, 4)), "labels": []}], 2, 3).tolist()
        [[[10, 10, 10], [10, 10, 10]]]
    """
    windows = detector.window_boxes(h, w)
    dense = np.full((len(targets), h * w), NUM_CLASSES, dtype=np.int64)
    for i, target in enumerate(targets):
        if len(target["labels"]) == 0:
            continue
        iou = box_iou(windows, target["boxes"])
        best = iou.max(1)
        dense[i, best >= negative_iou] = -100
        positive = best >= positive_iou
        dense[i, positive] = target["labels"][iou.argmax(1)[positive]]
    return dense.reshape(len(targets), h, w)


def train_detector(
    seed: int = 0,
    n_canvases: int = 200,
    epochs: int = 6,
    batch_size: int = 16,
    positive_iou: float = 0.55,
    negative_iou: float = 0.3,
    background_weight: float = 0.3,
) -> TinyDigitsDetector:
    """Train a TinyDigitsDetector densely on canvases of training-split digits; returns it in eval mode.

    Trains on `n_canvases` 64x96 canvases with 2-4 digits of 24 px (the detector's window), so it
    finds digits of about that size (~3.5 s CPU on one thread; recall ~0.95, precision ~0.9 at
    IoU 0.5 on held-out canvases). Window targets: the digit label where IoU with a digit box >= `positive_iou`, background
    where every IoU < `negative_iou`, ignored in between.

    Example:
        >>> detector = train_detector(seed=0, n_canvases=32, epochs=1)
        >>> detector.training
        False
    """
    images, targets = make_detection_canvases(n_canvases, digits_per_canvas=(2, 4), seed=seed, split="train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        detector = TinyDigitsDetector()
        x = torch.from_numpy(images)
        with torch.no_grad():
            h, w = detector.score_map(x[:1]).shape[-2:]
        y = torch.from_numpy(dense_targets(detector, targets, h, w, positive_iou, negative_iou))
        class_weights = torch.ones(NUM_CLASSES + 1)
        class_weights[NUM_CLASSES] = background_weight
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(detector.parameters(), lr=1e-2)
        steps_per_epoch = -(-n_canvases // batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=epochs * steps_per_epoch)
        detector.train()
        for _ in range(epochs):
            order = torch.randperm(n_canvases, generator=generator)
            for start in range(0, n_canvases, batch_size):
                idx = order[start : start + batch_size]
                loss = F.cross_entropy(detector.score_map(x[idx]), y[idx], weight=class_weights, ignore_index=-100)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        optimizer.zero_grad()
    return detector.eval()


def evaluate_detector(
    detector: nn.Module, images: np.ndarray | torch.Tensor, targets: list[dict[str, np.ndarray]], iou_threshold: float = 0.5
) -> dict[str, float]:
    """Recall and precision over a set of canvases: a prediction is a true positive when it matches
    (greedily, by decreasing score) an unmatched ground-truth box of the same label with IoU >= threshold.

    Example:
        >>> images, targets = make_detection_canvases(4, seed=5, split="test")
        >>> sorted(evaluate_detector(TinyDigitsDetector().eval(), images, targets))
        ['precision', 'recall']
    """
    predictions = detector(torch.as_tensor(np.asarray(images), dtype=torch.float32))
    true_positives = n_predictions = n_targets = 0
    for prediction, target in zip(predictions, targets):
        boxes, labels = prediction["boxes"].cpu().numpy(), prediction["labels"].cpu().numpy()
        order = np.argsort(-prediction["scores"].cpu().numpy(), kind="stable")
        iou = box_iou(boxes, target["boxes"])
        matched = np.zeros(len(target["labels"]), dtype=bool)
        for k in order:
            ok = (~matched) & (np.asarray(target["labels"]) == labels[k]) & (iou[k] >= iou_threshold)
            if ok.any():
                matched[np.flatnonzero(ok)[np.argmax(iou[k][ok])]] = True
        true_positives += int(matched.sum())
        n_predictions += len(labels)
        n_targets += len(target["labels"])
    return {
        "recall": true_positives / max(n_targets, 1),
        "precision": true_positives / max(n_predictions, 1),
    }
