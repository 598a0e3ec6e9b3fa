"""xaitk-saliency black-box saliency of an image classifier, one float32 map per class.

The black box handed to xaitk is `ProbabilityBlackbox`: it classifies the occluded
0..1 images in batches and returns class PROBABILITIES (softmax over all of the model's
logits, then the requested classes), which is what xaitk's scorers expect
(upstream passed raw logits). Maps are xaitk's: signed, in [-1, 1], (H, W) aligned with
the image; positive where the region raises the class probability.

Example:
    >>> import torch; from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    >>> maps = XaitkSaliency(model, classes=[0, 2]).attribute(torch.rand(2, 1, 8, 8))
    >>> maps.shape, maps.dtype.name
    ((2, 2, 8, 8), 'float32')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from armory_datasets.extras import require

require("torch", "xaitk_saliency", "smqtk_classifier", extra="saliency", feature=__name__)  # before importing them

import torch
from smqtk_classifier.interfaces.classify_image import ClassifyImage
from torch import nn

if TYPE_CHECKING:
    from xaitk_saliency import GenerateImageClassifierBlackboxSaliency


class ProbabilityBlackbox(ClassifyImage):
    """An xaitk/smqtk ``ClassifyImage``: (H, W[, C]) 0..1 float images -> {class: probability}.

    Images are stacked ``batch_size`` at a time, normalised with ``normalize`` and fed to
    ``model``; the softmax of its logits is taken over all classes, then ``classes`` kept.

    Example:
        >>> from torch import nn
        >>> box = ProbabilityBlackbox(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), [2, 0])
        >>> sorted(next(box.classify_images([np.zeros((2, 2, 1), np.float32)])))
        [0, 2]
    """

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[int],
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batch_size: int = 64,
    ) -> None:
        self.model = model
        self.classes = [int(c) for c in classes]
        self.normalize = normalize
        self.batch_size = batch_size

    def get_labels(self) -> Sequence[Hashable]:
        return list(self.classes)

    def classify_images(self, img_iter: np.ndarray | Iterable[np.ndarray]) -> Iterator[dict[Hashable, float]]:
        chunk: list[np.ndarray] = []
        for image in img_iter:
            chunk.append(image)
            if len(chunk) == self.batch_size:
                yield from self._classify(chunk)
                chunk = []
        if chunk:
            yield from self._classify(chunk)

    def probabilities(self, images_unit: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (N, num_classes) of 0..1 images (N, C, H, W).

        Example:
            >>> from torch import nn
            >>> box = ProbabilityBlackbox(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), [0])
            >>> round(box.probabilities(torch.zeros(1, 1, 2, 2)).sum().item(), 6)
            1.0
        """
        param = next(self.model.parameters(), None)
        x = images_unit if param is None else images_unit.to(param.device)
        with torch.no_grad():
            logits = self.model(x if self.normalize is None else self.normalize(x))
        return torch.softmax(logits.float(), dim=1).cpu()

    def _classify(self, images_hwc: list[np.ndarray]) -> list[dict[Hashable, float]]:
        batch = torch.from_numpy(np.stack([_as_hwc(im) for im in images_hwc]).astype(np.float32, copy=False))
        probs = self.probabilities(batch.permute(0, 3, 1, 2))[:, self.classes].double().numpy()
        return [dict(zip(self.classes, row.tolist())) for row in probs]

    def get_config(self) -> dict[str, object]:
        return {"classes": self.classes, "batch_size": self.batch_size}


class XaitkSaliency:
    """Black-box saliency of ``classes`` for each image, with any xaitk image-classifier algorithm.

    ``algorithm``: a ``GenerateImageClassifierBlackboxSaliency`` (e.g. ``RISEStack``); by
    default xaitk's ``SlidingWindowStack`` with a window of a quarter of the image's height
    and width and a stride of an eighth (rounded up), i.e. an 8 x 8 grid of 64 occlusions
    per image whatever its size — a 32 x 32 digit gets 8 px windows every 4 px. Occluded
    pixels are black (0) unless the algorithm's ``fill`` says otherwise.

    Example:
        >>> import torch; from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4)).eval()
        >>> images = np.zeros((1, 4, 4, 3), np.uint8)
        >>> XaitkSaliency(model, classes=[3]).attribute(images).shape
        (1, 1, 4, 4)
    """

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[int],
        algorithm: GenerateImageClassifierBlackboxSaliency | None = None,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batch_size: int = 64,
    ) -> None:
        from xaitk_saliency import GenerateImageClassifierBlackboxSaliency

        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        class_list = list(np.asarray(classes).reshape(-1))
        if not class_list or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in class_list):
            raise ValueError(f"classes: expected a non-empty sequence of int class indices, got {classes!r}")
        if len(set(class_list)) != len(class_list):
            raise ValueError(f"classes: contains duplicates: {classes!r}")
        if algorithm is not None and not isinstance(algorithm, GenerateImageClassifierBlackboxSaliency):
            raise ValueError(
                f"algorithm: expected an xaitk GenerateImageClassifierBlackboxSaliency, got {type(algorithm).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.blackbox = ProbabilityBlackbox(model, [int(c) for c in class_list], normalize, batch_size)
        self.algorithm = algorithm

    @property
    def classes(self) -> list[int]:
        """The classes whose maps `attribute` returns, in that order."""
        return list(self.blackbox.classes)

    def algorithm_for(self, height: int, width: int) -> GenerateImageClassifierBlackboxSaliency:
        """The algorithm used on (height, width) images (the default one depends on the size).

        Example:
            >>> from torch import nn
            >>> XaitkSaliency(nn.Linear(2, 2), [0]).algorithm_for(32, 64).get_config()["window_size"]
            [8, 16]
        """
        from xaitk_saliency.impls.gen_image_classifier_blackbox_sal.slidingwindow import SlidingWindowStack

        if self.algorithm is not None:
            return self.algorithm
        window = (math.ceil(height / 4), math.ceil(width / 4))
        stride = (math.ceil(height / 8), math.ceil(width / 8))
        return SlidingWindowStack(window_size=window, stride=stride, threads=0)

    def attribute(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Maps float32 (N, len(classes), H, W) for uint8 (N, H, W, C) numpy or 0..1 float (N, C, H, W) torch images.

        Raises ValueError naming the field for bad images (shape, dtype, NaN, range) or
        classes outside the model's outputs.

        Example:
            >>> import torch; from torch import nn
            >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
            >>> XaitkSaliency(model, [1, 0]).attribute(torch.ones(3, 1, 4, 4)).shape
            (3, 2, 4, 4)
        """
        images_hwc = _unit_hwc(images)
        num_classes = self.blackbox.probabilities(
            torch.from_numpy(images_hwc[:1]).permute(0, 3, 1, 2)
        ).shape[1]
        outside = [c for c in self.blackbox.classes if not 0 <= c < num_classes]
        if outside:
            raise ValueError(f"classes: {outside} outside the model's classes 0..{num_classes - 1}")
        algorithm = self.algorithm_for(*images_hwc.shape[1:3])
        return np.stack([algorithm.generate(image, self.blackbox) for image in images_hwc]).astype(np.float32)


def _as_hwc(image: np.ndarray) -> np.ndarray:
    return image[..., None] if image.ndim == 2 else image


def _unit_hwc(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 (N,H,W,C) numpy or float (N,C,H,W) torch -> float32 (N,H,W,C) numpy in 0..1."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"images: expected a float tensor (N, C, H, W) in 0..1, got {images.dtype} {tuple(images.shape)}"
            )
        hwc = images.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
    elif isinstance(images, np.ndarray):
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images: expected a uint8 array (N, H, W, C), got {images.dtype} {images.shape}")
        hwc = images.astype(np.float32) / 255.0
    else:
        raise ValueError(f"images: expected a numpy uint8 array or a torch float tensor, got {type(images).__name__}")
    if len(hwc) == 0:
        raise ValueError("images: empty batch")
    if not np.isfinite(hwc).all():
        raise ValueError("images: contains NaN or infinite values")
    if hwc.min() < 0.0 or hwc.max() > 1.0:
        raise ValueError(f"images: expected un-normalised values in 0..1, got {hwc.min():.4g}..{hwc.max():.4g}")
    return hwc
