"""``Images``: a batch of images, its layout, scale and normalisation.

Example:
    >>> import numpy as np
    >>> Images(np.zeros((2, 1, 4, 4), dtype=np.uint8)).to_uint8_hwc().shape
    (2, 4, 4, 1)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from armory_datasets.data.arrays import first_bad, is_torch, require_finite, to_numpy

if TYPE_CHECKING:
    import torch

_UNIT_TOLERANCE = 1e-3
"""How far de-normalised float images may leave 0..1 (normalisation round-off)."""
_SUPPORTED_CHANNELS = (1, 3, 4)


@dataclasses.dataclass(eq=False)
class Images:
    """A batch of images as given to the model.

    ``data`` is (N,C,H,W) for layout "CHW" or (N,H,W,C) for "HWC", torch or numpy.
    ``scale`` "uint8" means integer pixels 0..255; "float" means 0..1 before
    normalisation. ``mean``/``std`` (scalar or per channel) describe a normalisation
    ``(x - mean) / std`` ALREADY applied to float data. ``scale=None`` infers it from
    the dtype (integer -> "uint8", floating -> "float").

    Example:
        >>> x = Images(np.full((1, 2, 2, 3), 0.5, dtype=np.float32), layout="HWC")
        >>> x.to_uint8_hwc()[0, 0, 0].tolist(), x.channels, x.height
        ([128, 128, 128], 3, 2)
    """

    data: Any
    layout: Literal["CHW", "HWC"] = "CHW"
    scale: Literal["uint8", "float"] | None = None
    mean: Sequence[float] | float | None = None
    std: Sequence[float] | float | None = None

    def __post_init__(self) -> None:
        if not (is_torch(self.data) or isinstance(self.data, np.ndarray)):
            self.data = np.asarray(self.data)
        if self.layout not in ("CHW", "HWC"):
            raise ValueError(f"inputs.layout: got {self.layout!r}; expected 'CHW' or 'HWC'")
        if len(self.data.shape) != 4:
            raise ValueError(f"inputs: got shape {tuple(self.data.shape)}; expected 4 dimensions "
                             f"{'(N,C,H,W)' if self.layout == 'CHW' else '(N,H,W,C)'}")
        if self.scale is None:
            self.scale = "float" if self._is_floating() else "uint8"
        if self.scale not in ("uint8", "float"):
            raise ValueError(f"inputs.scale: got {self.scale!r}; expected 'uint8' or 'float'")
        self.mean = self._per_channel(self.mean, "mean", 0.0)
        self.std = self._per_channel(self.std, "std", 1.0)
        self.validate()

    def _per_channel(self, value: Any, name: str, neutral: float) -> tuple[float, ...] | None:
        if value is None:
            return None
        values = np.asarray(to_numpy(value), dtype=np.float64).reshape(-1)
        if values.size == 1:
            values = np.repeat(values, self.channels)
        if values.size != self.channels:
            raise ValueError(f"inputs.{name}: got {values.size} values; expected 1 or "
                             f"{self.channels} (one per channel)")
        if self.scale == "uint8" and np.any(values != neutral):
            raise ValueError(f"inputs.{name}: normalisation given for uint8 images; expected "
                             f"scale='float' data in 0..1 before normalisation")
        return tuple(float(v) for v in values)

    def _is_floating(self) -> bool:
        if is_torch(self.data):
            return bool(self.data.is_floating_point())
        return np.issubdtype(self.data.dtype, np.floating)

    def _dtype_name(self) -> str:
        return str(self.data.dtype).replace("torch.", "")

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.data.shape[1] if self.layout == "CHW" else self.data.shape[3])

    @property
    def height(self) -> int:
        return int(self.data.shape[2] if self.layout == "CHW" else self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.data.shape[3] if self.layout == "CHW" else self.data.shape[2])

    def validate(self, field: str = "inputs") -> None:
        """Check shape, dtype, finiteness and value range; ValueError names the sample.

        Example:
            >>> Images(np.full((1, 1, 2, 2), 2.0)).validate()
            Traceback (most recent call last):
            ...
            ValueError: inputs[0]: value 2 outside 0..1; expected float images in 0..1 (before normalisation by mean/std)
        """
        form = "(N,C,H,W)" if self.layout == "CHW" else "(N,H,W,C)"
        if self.channels not in _SUPPORTED_CHANNELS:
            raise ValueError(f"{field}: got shape {tuple(self.data.shape)} with {self.channels} "
                             f"channels for layout {self.layout!r}; expected {form} with C in 1, 3, 4")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"{field}: got shape {tuple(self.data.shape)}; expected {form} "
                             f"with H, W >= 1")
        if len(self) == 0:
            return
        array = to_numpy(self.data)
        if self.scale == "uint8":
            if not (np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_):
                raise ValueError(f"{field}: dtype {self._dtype_name()} with scale 'uint8'; expected "
                                 f"integer pixels 0..255 (or pass scale='float' for 0..1 floats)")
            if array.dtype == np.uint8 or (array.min() >= 0 and array.max() <= 255):
                return  # one pass each for other integer dtypes; a mask only to name a sample
            bad = (array < 0) | (array > 255)
            if bad.any():
                i = first_bad(bad)
                raise ValueError(f"{field}[{i}]: pixel {array[i][bad[i]][0]} outside 0..255; "
                                 f"expected uint8 pixels")
            return
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{field}: dtype {self._dtype_name()} with scale 'float'; expected "
                             f"a floating dtype")
        unit = array if self.mean is None and self.std is None else self._denormalise_numpy(array)
        low, high = unit.min(), unit.max()  # NaN and inf reach the extremes: one pass each, no mask
        if not (np.isfinite(low) and np.isfinite(high)):
            require_finite(array, field)
        if low < -_UNIT_TOLERANCE or high > 1 + _UNIT_TOLERANCE:
            bad = (unit < -_UNIT_TOLERANCE) | (unit > 1 + _UNIT_TOLERANCE)
            i = first_bad(bad)
            raise ValueError(f"{field}[{i}]: value {unit[i][bad[i]][0]:.4g} outside 0..1; expected "
                             f"float images in 0..1 (before normalisation by mean/std)")

    def _stats_shape(self) -> tuple[int, ...]:
        return (1, self.channels, 1, 1) if self.layout == "CHW" else (1, 1, 1, self.channels)

    def _denormalise_numpy(self, array: np.ndarray) -> np.ndarray:
        unit = array.astype(np.float64)
        if self.std is not None:
            unit = unit * np.reshape(self.std, self._stats_shape())
        if self.mean is not None:
            unit = unit + np.reshape(self.mean, self._stats_shape())
        return unit

    def _tensor_chw(self) -> torch.Tensor:
        import torch

        data = self.data if is_torch(self.data) else torch.from_numpy(np.ascontiguousarray(self.data))
        return data if self.layout == "CHW" else data.permute(0, 3, 1, 2)

    def _stat(self, values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)

    def to_model_input(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The data as the model was given it: a CHW tensor (float32 by default), same device.

        uint8 images become float 0..255 (no rescaling); float images stay normalised.

        Example:
            >>> Images(np.zeros((1, 2, 2, 1), np.uint8), layout="HWC").to_model_input().shape
            torch.Size([1, 1, 2, 2])
        """
        import torch

        return self._tensor_chw().to(dtype or torch.float32)

    def to_unit_float_chw(self) -> torch.Tensor:
        """Float32 CHW tensor in 0..1 with any normalisation undone (same device).

        Example:
            >>> Images(np.full((1, 1, 1, 1), 255, np.uint8)).to_unit_float_chw().item()
            1.0
        """
        import torch

        data = self._tensor_chw().to(torch.float32)
        if self.scale == "uint8":
            return data / 255.0
        if self.std is not None:
            data = data * self._stat(self.std, data)
        if self.mean is not None:
            data = data + self._stat(self.mean, data)
        return data

    def normalize(self, unit_chw: torch.Tensor) -> torch.Tensor:
        """Apply this batch's mean/std to 0..1 CHW images (identity when there is none).

        Keeps autograd, so attributions and perturbations can differentiate through it.

        Example:
            >>> import torch
            >>> Images(np.zeros((1, 1, 1, 1), np.float32), mean=0.5, std=0.5).normalize(torch.ones(1, 1, 1, 1)).item()
            1.0
        """
        out = unit_chw
        if self.mean is not None:
            out = out - self._stat(self.mean, out)
        if self.std is not None:
            out = out / self._stat(self.std, out)
        return out

    def with_unit_float(self, unit_chw: torch.Tensor) -> Images:
        """New Images holding 0..1 CHW images (e.g. perturbed) in this batch's model form.

        Float images are normalised with the same mean/std; uint8 images are rounded back
        to uint8 (so the model sees exactly what the PNG stores).

        Example:
            >>> import torch
            >>> x = Images(np.zeros((1, 1, 1, 1), np.float32), mean=0.5, std=0.5)
            >>> x.with_unit_float(torch.ones(1, 1, 1, 1)).data.item()
            1.0
        """
        import torch

        unit = unit_chw.detach().clamp(0.0, 1.0)
        if self.scale == "uint8":
            return Images(torch.round(unit * 255.0).to(torch.uint8), layout="CHW", scale="uint8")
        return Images(self.normalize(unit.to(torch.float32)), layout="CHW", scale="float",
                      mean=self.mean, std=self.std)

    def to_uint8_hwc(self) -> np.ndarray:
        """(N,H,W,C) uint8 numpy pixels for writing PNGs (de-normalised, clipped, rounded).

        Example:
            >>> Images(np.full((1, 1, 1, 1), 0.0, np.float32), mean=0.5, std=0.25).to_uint8_hwc().item()
            128
        """
        if self.scale == "uint8":
            array = to_numpy(self.data)
            hwc = array if self.layout == "HWC" else array.transpose(0, 2, 3, 1)
            return np.ascontiguousarray(hwc, dtype=np.uint8)
        # One image at a time through one float64 buffer (it stays in cache), in place:
        # clip(x * 255, 0, 255) equals clip(x, 0, 1) * 255 exactly in IEEE arithmetic, and
        # rint is np.round's half-to-even.
        out = np.empty((len(self), self.height, self.width, self.channels), np.uint8)
        unit = np.empty(out.shape[1:], np.float64)
        std = None if self.std is None else np.reshape(self.std, (1, 1, self.channels))
        mean = None if self.mean is None else np.reshape(self.mean, (1, 1, self.channels))
        for i, image in enumerate(to_numpy(self.data)):
            np.copyto(unit, image if self.layout == "HWC" else image.transpose(1, 2, 0))
            if std is not None:
                unit *= std
            if mean is not None:
                unit += mean
            np.multiply(unit, 255.0, out=unit)
            np.clip(unit, 0.0, 255.0, out=unit)
            out[i] = np.rint(unit, out=unit)
        return out


# -------------------------------------------------------------------------- objects
