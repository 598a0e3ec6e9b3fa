"""A reference xaitk black box for tests, independent of the library's own."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator

import numpy as np
import torch
from smqtk_classifier.interfaces.classify_image import ClassifyImage

from armory_datasets.demo.digits import normalize_digits


class SoftmaxOneAtATime(ClassifyImage):
    """Softmax probabilities of the digits model, one uint8 HWC image at a time."""

    def __init__(self, model: torch.nn.Module, classes: list[int]) -> None:
        self.model, self.classes = model, classes

    def get_labels(self) -> list[Hashable]:
        return list(self.classes)

    def classify_images(self, img_iter: Iterable[np.ndarray]) -> Iterator[dict[Hashable, float]]:
        for image in img_iter:
            x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()
            with torch.no_grad():
                probs = torch.softmax(self.model(normalize_digits(x)), 1)[0]
            yield {c: float(probs[c]) for c in self.classes}

    def get_config(self) -> dict:
        return {}
