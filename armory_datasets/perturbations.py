"""Perturbations applied to unit-float (0..1) image batches, for models that take normalised inputs.

A perturbation has a ``name``, ``params()`` (scalars recorded as ``{name}_{param}`` columns)
and ``perturb(images_unit, targets, normalize)`` returning new 0..1 images. The evaluation
engine applies a chain of them in order.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> attack = FGSM(model, epsilon=0.1)
    >>> x = attack.perturb(torch.full((2, 1, 2, 2), 0.5), torch.tensor([0, 1]), lambda t: t)
    >>> attack.params(), bool(((x - 0.5).abs() <= 0.1 + 1e-6).all())
    ({'epsilon': 0.1, 'targeted': False}, True)
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from armory_datasets.extras import require

require("torch", extra="torch", feature=__name__)  # before importing them

import torch
import torch.nn.functional as F
from torch import nn

Normalize = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class Perturbation(Protocol):
    """What the evaluation engine needs from a perturbation.

    Example:
        >>> isinstance(FGSM(torch.nn.Identity(), 0.1), Perturbation)
        True
    """

    name: str

    def params(self) -> dict[str, float | int | bool | str]:
        """Scalar parameters to record with every perturbed sample."""
        ...

    def perturb(self, images_unit: torch.Tensor, targets: Any, normalize: Normalize) -> torch.Tensor:
        """Return perturbed images in 0..1, same shape as `images_unit` (N, C, H, W)."""
        ...


class FGSM:
    """Fast Gradient Sign Method (Goodfellow et al. 2015) for classifiers, one L-inf step of `epsilon`.

    Untargeted: ascend the cross-entropy of `targets` (the true labels); targeted: descend it
    (`targets` are the wanted labels). The gradient is taken w.r.t. the unit-space images
    through `normalize`, so epsilon is in 0..1 pixel units. Works under ``torch.no_grad``;
    leaves the model's mode and parameter gradients untouched.

    Example:
        >>> FGSM(torch.nn.Identity(), epsilon=8 / 255, name="fgsm8").params()["epsilon"]
        0.03137254901960784
    """

    def __init__(self, model: nn.Module, epsilon: float, name: str = "fgsm", targeted: bool = False) -> None:
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.model = model
        self.epsilon = float(epsilon)
        self.name = name
        self.targeted = targeted

    def params(self) -> dict[str, float | int | bool | str]:
        return {"epsilon": self.epsilon, "targeted": self.targeted}

    def perturb(self, images_unit: torch.Tensor, targets: Any, normalize: Normalize) -> torch.Tensor:
        x = images_unit.detach().clone().requires_grad_(True)
        targets = torch.as_tensor(targets, dtype=torch.int64, device=x.device)
        with torch.enable_grad():
            loss = F.cross_entropy(self.model(normalize(x)), targets, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        step = -self.epsilon if self.targeted else self.epsilon
        return (images_unit.detach() + step * grad.sign()).clamp_(0.0, 1.0)
