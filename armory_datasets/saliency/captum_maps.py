"""Captum attributions of an image classifier, as float32 maps aligned with the 0..1 image.

Attributions are taken with respect to the *un-normalised* 0..1 image: the model is
wrapped as ``model(normalize(x))``, so the attribution is of the real model on its real
input, and pixel (i, j) of a map is pixel (i, j) of the exported image. The baseline of
Integrated Gradients, DeepLift and SmoothGrad² is a black image in pixel space (all
zeros before normalisation), so IG's maps sum to ``F(image) - F(black)`` up to ``delta``.

Example:
    >>> import torch; from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    >>> out = CaptumSaliency(model, n_steps=8).attribute(torch.rand(2, 1, 4, 4), [0, 2])
    >>> out.maps.shape, out.maps.dtype.name, out.delta.shape
    ((2, 4, 4), 'float32', (2,))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from armory_datasets.extras import require

require("torch", "captum", extra="saliency", feature=__name__)  # before importing them

import torch
from torch import nn

Method = Literal["integrated_gradients", "saliency", "smoothgrad_squared", "deeplift", "gradcam"]
METHODS: tuple[str, ...] = ("integrated_gradients", "saliency", "smoothgrad_squared", "deeplift", "gradcam")
AUTO_INTERNAL_VALUES: int = 2**19
"""Input values (C*H*W per image) per forward pass when internal_batch_size is None: 128 images of 64x64x1."""


@dataclass(frozen=True)
class AttributionMaps:
    """Result of `CaptumSaliency.attribute`.

    ``maps``: float32 (N, H, W), summed over channels, signed (``saliency`` and
    ``smoothgrad_squared`` are non-negative by construction). ``delta``: float32 (N,)
    convergence delta for ``integrated_gradients`` / ``deeplift``, else None.

    Example:
        >>> AttributionMaps(np.zeros((1, 2, 2), np.float32), None, "saliency").maps.shape
        (1, 2, 2)
    """

    maps: np.ndarray
    delta: np.ndarray | None
    method: str


class NormalizedModel(nn.Module):
    """``model(normalize(x))`` as a module: the model as a function of the 0..1 image.

    Example:
        >>> from torch import nn
        >>> NormalizedModel(nn.Identity(), lambda x: 2 * x)(torch.ones(1)).item()
        2.0
    """

    def __init__(self, model: nn.Module, normalize: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x if self.normalize is None else self.normalize(x))


class CaptumSaliency:
    """One Captum attribution method over a classifier, batched over samples.

    ``method``: ``integrated_gradients`` (``n_steps`` and ``internal_batch_size``, the
    images per forward pass, as in Captum; None picks about ``AUTO_INTERNAL_VALUES``
    input values per pass, at least one step of every sample, which bounds memory and
    runs ~2x faster on CPU than Captum's all-steps-at-once),
    ``saliency`` (absolute gradient), ``smoothgrad_squared`` (SmoothGrad² over
    Integrated Gradients, as upstream: ``nt_samples`` noisy copies with standard
    deviation ``nt_stdev`` in 0..1 pixel units, noise drawn from ``seed``),
    ``deeplift``, ``gradcam`` (``captum.attr.LayerGradCam`` on ``layer`` — a submodule
    or its dotted name — signed, i.e. without the final ReLU, bilinearly upsampled to
    the image size). The model should be in eval mode; it is not modified.

    Example:
        >>> import torch; from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 3)).eval()
        >>> cam = CaptumSaliency(model, method="gradcam", layer="0")
        >>> cam.attribute(torch.rand(1, 1, 4, 4), [1]).maps.shape
        (1, 4, 4)
    """

    def __init__(
        self,
        model: nn.Module,
        method: Method = "integrated_gradients",
        n_steps: int = 50,
        internal_batch_size: int | None = None,
        layer: nn.Module | str | None = None,
        nt_samples: int = 10,
        nt_stdev: float = 0.2,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        for name, value in (("n_steps", n_steps), ("nt_samples", nt_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if internal_batch_size is not None and (not isinstance(internal_batch_size, int) or internal_batch_size < 1):
            raise ValueError(f"internal_batch_size: expected None or a positive int, got {internal_batch_size!r}")
        if not nt_stdev >= 0:
            raise ValueError(f"nt_stdev: expected a non-negative float, got {nt_stdev!r}")
        self.model = model
        self.method: str = method
        self.n_steps = n_steps
        self.internal_batch_size = internal_batch_size
        self.layer = _resolve_layer(model, layer, method)
        self.nt_samples = nt_samples
        self.nt_stdev = float(nt_stdev)
        self.seed = int(seed)

    def params(self) -> dict[str, object]:
        """The settings that determine the maps (for an exporter's manifest).

        Example:
            >>> from torch import nn
            >>> CaptumSaliency(nn.Linear(4, 2), method="saliency").params()["method"]
            'saliency'
        """
        params: dict[str, object] = {"method": self.method, "baseline": "black (0 in pixel space)"}
        if self.method in ("integrated_gradients", "smoothgrad_squared"):
            params.update(n_steps=self.n_steps)
        if self.method == "smoothgrad_squared":
            params.update(nt_samples=self.nt_samples, nt_stdev=self.nt_stdev, seed=self.seed)
        if self.method == "gradcam":
            params.update(layer=next(n for n, m in self.model.named_modules() if m is self.layer))
        return params

    def attribute(
        self,
        images_unit: torch.Tensor,
        classes: torch.Tensor | Sequence[int] | np.ndarray,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> AttributionMaps:
        """Attribute ``classes[i]`` on ``images_unit[i]`` (N, C, H, W, 0..1) for all i in one batch.

        ``normalize`` maps 0..1 images to the model's input (e.g. ``(x - mean) / std``);
        None when the model takes 0..1 images. Raises ValueError naming the field for
        bad images (shape, dtype, NaN, outside 0..1) or classes (length, range).

        Example:
            >>> import torch; from torch import nn
            >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
            >>> out = CaptumSaliency(model, method="deeplift").attribute(torch.ones(3, 1, 2, 2), [0, 1, 1])
            >>> out.maps.shape
            (3, 2, 2)
        """
        wrapped = NormalizedModel(self.model, normalize)
        x, target = _validated_inputs(wrapped, images_unit, classes)
        attribution, delta = self._run(wrapped, x, target)
        maps = attribution.detach().sum(dim=1).to("cpu", torch.float32).numpy()
        delta_np = None if delta is None else delta.detach().to("cpu", torch.float32).numpy().reshape(-1)
        return AttributionMaps(maps=maps, delta=delta_np, method=self.method)

    def _run(
        self, wrapped: NormalizedModel, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        from captum.attr import (
            DeepLift,
            IntegratedGradients,
            LayerAttribution,
            LayerGradCam,
            NoiseTunnel,
            Saliency,
        )

        baseline = torch.zeros_like(x)
        if self.method == "integrated_gradients":
            return IntegratedGradients(wrapped).attribute(
                x,
                baselines=baseline,
                target=target,
                n_steps=self.n_steps,
                internal_batch_size=self._internal_batch_size(x, len(x)),
                return_convergence_delta=True,
            )
        if self.method == "deeplift":
            return DeepLift(wrapped).attribute(x, baselines=baseline, target=target, return_convergence_delta=True)
        if self.method == "saliency":
            return Saliency(wrapped).attribute(x, target=target, abs=True), None
        if self.method == "smoothgrad_squared":
            # Captum draws the noise from the global torch RNG: fork it so that the maps
            # depend only on `seed` and the caller's RNG state is left untouched.
            devices = [x.device.index or 0] if x.is_cuda else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                return (
                    NoiseTunnel(IntegratedGradients(wrapped)).attribute(
                        x,
                        nt_type="smoothgrad_sq",
                        nt_samples=self.nt_samples,
                        stdevs=self.nt_stdev,
                        baselines=baseline,
                        target=target,
                        n_steps=self.n_steps,
                        internal_batch_size=self._internal_batch_size(x, len(x) * self.nt_samples),
                    ),
                    None,
                )
        cam = LayerGradCam(wrapped, self.layer).attribute(x, target=target, relu_attributions=False)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear"), None


    def _internal_batch_size(self, x: torch.Tensor, examples: int) -> int:
        """Captum's internal_batch_size: images per pass, never fewer than the examples (Captum's minimum)."""
        if self.internal_batch_size is not None:
            return self.internal_batch_size
        return max(examples, AUTO_INTERNAL_VALUES // x[0].numel())


def _resolve_layer(model: nn.Module, layer: nn.Module | str | None, method: str) -> nn.Module | None:
    if method != "gradcam":
        if layer is not None:
            raise ValueError(f"layer: only used by method='gradcam', got layer={layer!r} for method={method!r}")
        return None
    if layer is None:
        raise ValueError("layer: method='gradcam' needs a layer (a submodule of the model or its name)")
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            raise ValueError(f"layer: the model has no submodule {layer!r}; it has {names}") from None
    if not isinstance(layer, nn.Module) or not any(m is layer for m in model.modules()):
        raise ValueError(f"layer: expected a submodule of the model or its name, got {type(layer).__name__}")
    return layer


def _validated_inputs(
    wrapped: nn.Module, images_unit: torch.Tensor, classes: torch.Tensor | Sequence[int] | np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images_unit, torch.Tensor):
        raise ValueError(f"images_unit: expected a torch.Tensor (N, C, H, W), got {type(images_unit).__name__}")
    if images_unit.ndim != 4 or not images_unit.is_floating_point() or images_unit.shape[0] == 0:
        raise ValueError(
            f"images_unit: expected a non-empty float tensor (N, C, H, W), got {images_unit.dtype} {tuple(images_unit.shape)}"
        )
    if not torch.isfinite(images_unit).all():
        raise ValueError("images_unit: contains NaN or infinite values")
    low, high = images_unit.min().item(), images_unit.max().item()
    if low < 0.0 or high > 1.0:
        raise ValueError(f"images_unit: expected un-normalised values in 0..1, got {low:.4g}..{high:.4g}")
    target = torch.as_tensor(np.asarray(classes) if not isinstance(classes, torch.Tensor) else classes)
    if target.ndim != 1 or len(target) != len(images_unit):
        raise ValueError(f"classes: expected shape ({len(images_unit)},), got {tuple(target.shape)}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"classes: expected integer class indices, got {target.dtype}")
    param = next(wrapped.parameters(), None)
    device = param.device if param is not None else images_unit.device
    x = images_unit.detach().to(device).requires_grad_()
    with torch.no_grad():
        probe = wrapped(x[:1])
    if probe.ndim != 2:
        raise ValueError(f"model: expected logits (N, num_classes), got output shape {tuple(probe.shape)}")
    num_classes = probe.shape[1]
    bad = (target < 0) | (target >= num_classes)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"classes: sample {i} has class {int(target[i])}, outside 0..{num_classes - 1}")
    return x, target.to(device=device, dtype=torch.int64)
