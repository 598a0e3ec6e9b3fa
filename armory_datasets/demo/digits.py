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
