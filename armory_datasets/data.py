"""Batches of evaluated samples: images, targets, predictions, metadata, metrics.

Arrays arrive as torch tensors (any device), numpy arrays or lists and are stored as
numpy (images keep their original container). Constructors validate; call
``batch.validate()`` again after mutating a batch. Every error is a ``ValueError``
naming the field, the sample position and the expected form.

torch is imported lazily, so criteria code can use batches without importing it.

Example:
    >>> import numpy as np
    >>> images = Images(np.zeros((2, 1, 4, 4), dtype=np.uint8))
    >>> batch = ImageClassificationBatch(images, targets=[3, 1],
    ...                                  predictions=np.eye(4)[[3, 0]] * 5.0)
    >>> batch.column("correct").tolist()
    [True, False]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from armory_datasets.schema import VOCABULARY

if TYPE_CHECKING:
    import torch

__all__ = [
    "Images",
    "Objects",
    "ImageClassificationBatch",
    "ObjectDetectionBatch",
    "Batch",
    "to_numpy",
]

_BOX_TOLERANCE = 1e-4
"""Pixels a box may exceed the image by (float rounding of clamped detector output)."""
_UNIT_TOLERANCE = 1e-3
"""How far de-normalised float images may leave 0..1 (normalisation round-off)."""
_SUPPORTED_CHANNELS = (1, 3, 4)


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array from a torch tensor (any device, detached), numpy array or sequence.

    Example:
        >>> to_numpy([1, 2]).tolist()
        [1, 2]
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _is_torch(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "cpu")


def _first_bad(mask: np.ndarray) -> int:
    """Position of the first True along axis 0 of a (N, ...) mask."""
    return int(np.argmax(mask.reshape(len(mask), -1).any(axis=1)))


def _scalar(value: Any, field: str) -> bool | int | float | str:
    """A plain python scalar from a python/numpy scalar or a one-element tensor."""
    if _is_torch(value) or isinstance(value, np.ndarray):
        array = to_numpy(value)
        if array.size != 1:
            raise ValueError(f"{field}: got an array of shape {array.shape}; expected a scalar")
        value = array.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (bool, int, float, str)):
        raise ValueError(f"{field}: got {type(value).__name__}; expected a bool, int, float or str")
    return value


# --------------------------------------------------------------------------- images


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
        if not (_is_torch(self.data) or isinstance(self.data, np.ndarray)):
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
        if _is_torch(self.data):
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
            bad = (array < 0) | (array > 255)
            if bad.any():
                i = _first_bad(bad)
                raise ValueError(f"{field}[{i}]: pixel {array[i][bad[i]][0]} outside 0..255; "
                                 f"expected uint8 pixels")
            return
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{field}: dtype {self._dtype_name()} with scale 'float'; expected "
                             f"a floating dtype")
        finite = np.isfinite(array)
        if not finite.all():
            raise ValueError(f"{field}[{_first_bad(~finite)}]: contains NaN or inf; expected "
                             f"finite values")
        unit = self._denormalise_numpy(array)
        bad = (unit < -_UNIT_TOLERANCE) | (unit > 1 + _UNIT_TOLERANCE)
        if bad.any():
            i = _first_bad(bad)
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

        data = self.data if _is_torch(self.data) else torch.from_numpy(np.ascontiguousarray(self.data))
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
        unit = self._denormalise_numpy(to_numpy(self.data))
        hwc = unit if self.layout == "HWC" else unit.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(np.round(np.clip(hwc, 0.0, 1.0) * 255.0), dtype=np.uint8)


# -------------------------------------------------------------------------- objects


@dataclasses.dataclass(eq=False)
class Objects:
    """Boxes of one image: ``boxes`` (K,4) xyxy pixels, ``labels`` (K,), ``scores`` (K,) or None.

    Stored as float64 / int64 / float64 numpy. Construction checks shapes, dtypes and
    finiteness; the batch checks boxes against the image and labels against class names.

    Example:
        >>> o = Objects.from_mapping({"boxes": [[0, 0, 2, 2]], "labels": [1], "scores": [0.9]})
        >>> len(o), o.labels.tolist()
        (1, [1])
    """

    boxes: Any
    labels: Any
    scores: Any = None

    def __post_init__(self) -> None:
        self.boxes = self._float_array(self.boxes, "boxes")
        if self.boxes.size == 0:
            self.boxes = self.boxes.reshape(0, 4)
        labels = to_numpy(self.labels)
        if labels.size == 0:
            labels = labels.astype(np.int64).reshape(0)
        elif np.issubdtype(labels.dtype, np.integer):
            labels = labels.astype(np.int64)
        self.labels = labels
        if self.scores is not None:
            self.scores = self._float_array(self.scores, "scores").reshape(-1)
        self.validate()

    @staticmethod
    def _float_array(value: Any, field: str) -> np.ndarray:
        array = to_numpy(value)
        if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.number) or array.size == 0):
            raise ValueError(f"{field}: dtype {array.dtype}; expected numbers")
        return array.astype(np.float64)

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> Objects:
        """Objects from a dict with "boxes", "labels" and optional "scores" (torchvision style).

        Example:
            >>> len(Objects.from_mapping({"boxes": [], "labels": []}))
            0
        """
        missing = {"boxes", "labels"} - set(value)
        if missing:
            raise ValueError(f"keys {sorted(value)}; expected 'boxes', 'labels' and optional "
                             f"'scores' (missing {sorted(missing)})")
        return cls(value["boxes"], value["labels"], value.get("scores"))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def above(self, score_threshold: float) -> Objects:
        """The objects with ``score >= score_threshold`` (all of them when scores are None).

        Example:
            >>> len(Objects([[0, 0, 1, 1], [0, 0, 2, 2]], [0, 1], [0.4, 0.5]).above(0.5))
            1
        """
        if self.scores is None:
            return self
        keep = self.scores >= score_threshold
        return Objects(self.boxes[keep], self.labels[keep], self.scores[keep])

    def validate(self, field: str = "objects", height: int | None = None, width: int | None = None,
                 num_classes: int | None = None, require_scores: bool = False) -> None:
        """Check shapes, dtypes, finiteness, box order and (when given) image bounds and labels.

        Example:
            >>> Objects([[3, 0, 1, 1]], [0]).validate()
            Traceback (most recent call last):
            ...
            ValueError: objects.boxes[0]: box [3.0, 0.0, 1.0, 1.0] has x_max < x_min or y_max < y_min; expected xyxy pixels (x_min, y_min, x_max, y_max)
        """
        k = self.boxes.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"{field}.boxes: got shape {self.boxes.shape}; expected (K,4) xyxy pixels")
        if self.labels.shape != (k,):
            raise ValueError(f"{field}.labels: got shape {self.labels.shape}; expected ({k},) "
                             f"one label per box")
        if self.labels.dtype != np.int64:
            raise ValueError(f"{field}.labels: dtype {self.labels.dtype}; expected integer class indices")
        if self.scores is None:
            if require_scores:
                raise ValueError(f"{field}.scores: missing; expected ({k},) scores for predictions")
        elif self.scores.shape != (k,):
            raise ValueError(f"{field}.scores: got shape {self.scores.shape}; expected ({k},) "
                             f"one score per box")
        for name, array in (("boxes", self.boxes), ("scores", self.scores)):
            if array is not None and not np.isfinite(array).all():
                raise ValueError(f"{field}.{name}[{_first_bad(~np.isfinite(array))}]: contains NaN "
                                 f"or inf; expected finite values")
        inverted = (self.boxes[:, 2] < self.boxes[:, 0]) | (self.boxes[:, 3] < self.boxes[:, 1])
        if inverted.any():
            j = int(np.argmax(inverted))
            raise ValueError(f"{field}.boxes[{j}]: box {self.boxes[j].tolist()} has x_max < x_min "
                             f"or y_max < y_min; expected xyxy pixels (x_min, y_min, x_max, y_max)")
        if height is not None and width is not None:
            t = _BOX_TOLERANCE
            outside = ((self.boxes[:, 0] < -t) | (self.boxes[:, 1] < -t)
                       | (self.boxes[:, 2] > width + t) | (self.boxes[:, 3] > height + t))
            if outside.any():
                j = int(np.argmax(outside))
                raise ValueError(f"{field}.boxes[{j}]: box {self.boxes[j].tolist()} outside the "
                                 f"{width}x{height} image; expected 0 <= x_min <= x_max <= {width} "
                                 f"and 0 <= y_min <= y_max <= {height}")
        bad = self.labels < 0
        if num_classes is not None:
            bad |= self.labels >= num_classes
        if bad.any():
            j = int(np.argmax(bad))
            bound = f" < {num_classes}" if num_classes is not None else ""
            raise ValueError(f"{field}.labels[{j}]: label {self.labels[j]} out of range; "
                             f"expected 0 <= label{bound}")


# -------------------------------------------------------------------------- batches


@dataclasses.dataclass(eq=False)
class _Batch:
    """Fields and validation shared by classification and detection batches."""

    inputs: Images
    targets: Any
    predictions: Any = None
    metadata: Mapping[str, Any] | None = None
    batch_metadata: Mapping[str, Any] | None = None
    perturbations: Mapping[str, Mapping[str, Any]] | None = None
    global_indices: Any = None
    chain: str = "benign"
    metrics: Mapping[str, Any] | None = None
    class_names: Sequence[str] | None = None
    # Columns only other chains of the evaluation have (e.g. their perturbations'
    # parameters): they read as missing (NaN) here, as they are null in the table.
    absent_columns: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, Images):
            raise ValueError(f"inputs: got {type(self.inputs).__name__}; expected "
                             f"armory_datasets.data.Images")
        self._convert_targets_predictions()
        self.metadata = {str(k): self._per_sample(v, f"metadata[{k!r}]")
                         for k, v in (self.metadata or {}).items()}
        self.batch_metadata = dict(self.batch_metadata or {})
        self.perturbations = {
            str(name): {str(p): _scalar(v, f"perturbations[{name!r}][{p!r}]") for p, v in params.items()}
            for name, params in (self.perturbations or {}).items()
        }
        self.metrics = {str(k): to_numpy(v) for k, v in (self.metrics or {}).items()}
        if self.global_indices is not None:
            self.global_indices = self._global_indices(to_numpy(self.global_indices))
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]
        self.validate()

    def _convert_targets_predictions(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _per_sample(value: Any, field: str) -> np.ndarray:
        if isinstance(value, (str, bytes)):
            raise ValueError(f"{field}: got a {type(value).__name__}; expected a sequence with one "
                             f"value per sample (put batch-level values in batch_metadata)")
        if _is_torch(value) or isinstance(value, np.ndarray):
            return to_numpy(value)
        if not isinstance(value, Sequence):
            raise ValueError(f"{field}: got {type(value).__name__}; expected a sequence with one "
                             f"value per sample (put batch-level values in batch_metadata)")
        array = np.empty(len(value), dtype=object)
        array[:] = list(value)
        try:
            typed = np.asarray(list(value))
        except ValueError:
            return array
        return typed if typed.ndim == 1 else array

    @staticmethod
    def _global_indices(array: np.ndarray) -> np.ndarray:
        if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
            raise ValueError(f"global_indices: got shape {array.shape} dtype {array.dtype}; "
                             f"expected (N,) integer sample indices")
        return array.astype(np.int64)

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def height(self) -> int:
        return self.inputs.height

    @property
    def width(self) -> int:
        return self.inputs.width

    def validate(self) -> None:
        """Check every field against the batch size and its expected form.

        Example:
            >>> images = Images(np.zeros((2, 1, 2, 2), np.uint8))
            >>> ImageClassificationBatch(images, [0, 12], np.zeros((2, 10)))
            Traceback (most recent call last):
            ...
            ValueError: targets[1]: label 12 out of range; expected 0 <= label < 10
        """
        n = len(self)
        self.inputs.validate("inputs")
        if not isinstance(self.chain, str) or not self.chain or "/" in self.chain:
            raise ValueError(f"chain: got {self.chain!r}; expected a non-empty name without '/'")
        for key, value in self.metadata.items():
            if key in VOCABULARY:
                raise ValueError(f"metadata[{key!r}]: name is a table column; expected a name not "
                                 f"in the vocabulary (rename the dataset column)")
            if len(value) != n:
                raise ValueError(f"metadata[{key!r}]: got {len(value)} values; expected {n} "
                                 f"(one per sample)")
        for key in self.batch_metadata:
            if key in VOCABULARY or key in self.metadata:
                raise ValueError(f"batch_metadata[{key!r}]: name already used by a table column or "
                                 f"metadata; expected a unique name")
        for name, value in self.metrics.items():
            if value.shape != (n,):
                raise ValueError(f"metrics[{name!r}]: got shape {value.shape}; expected ({n},) "
                                 f"one value per sample")
            if name in self.metadata or name in self.batch_metadata:
                raise ValueError(f"metrics[{name!r}]: name already used by metadata; expected a "
                                 f"unique name")
        if self.global_indices is not None:
            if self.global_indices.shape != (n,):
                raise ValueError(f"global_indices: got shape {self.global_indices.shape}; expected "
                                 f"({n},) one index per sample")
            if (self.global_indices < 0).any():
                i = int(np.argmax(self.global_indices < 0))
                raise ValueError(f"global_indices[{i}]: got {self.global_indices[i]}; expected >= 0")
        for field in self._perturbation_fields():
            if field in VOCABULARY or field in self.metadata or field in self.batch_metadata:
                raise ValueError(f"perturbations: field {field!r} already used by a table column or "
                                 f"metadata; expected a unique '{{perturbation}}_{{param}}' name")
        self._validate_task(n)

    def _validate_task(self, n: int) -> None:
        raise NotImplementedError

    def _perturbation_fields(self) -> dict[str, Any]:
        return {f"{name}_{param}": value
                for name, params in self.perturbations.items() for param, value in params.items()}

    def _builtin_columns(self) -> dict[str, Callable[[], Any]]:
        columns: dict[str, Callable[[], Any]] = {
            "chain": lambda: self.chain,
            "position": lambda: np.arange(len(self), dtype=np.int64),
            "width": lambda: self.width,
            "height": lambda: self.height,
        }
        if self.global_indices is not None:
            columns["sample_index"] = lambda: self.global_indices
        return columns

    def column(self, name: str) -> Any:
        """Values of a vocabulary/dynamic column: np.ndarray (N,) per sample, or a scalar.

        Looks in metrics, metadata, batch_metadata, perturbation fields
        (``{perturbation}_{param}``), then built-in columns computed from the batch.

        Example:
            >>> images = Images(np.zeros((2, 1, 2, 2), np.uint8))
            >>> b = ImageClassificationBatch(images, [0, 1], batch_metadata={"site": "a"},
            ...                              perturbations={"fgsm": {"epsilon": 0.1}})
            >>> b.column("target").tolist(), b.column("site"), b.column("fgsm_epsilon")
            ([0, 1], 'a', 0.1)
        """
        if name in self.metrics:
            return self.metrics[name]
        if name in self.metadata:
            return self.metadata[name]
        if name in self.batch_metadata:
            value = self.batch_metadata[name]
            return _scalar(value, name) if (_is_torch(value) or isinstance(value, np.generic)
                                             or getattr(value, "ndim", None) == 0) else value
        perturbation_fields = self._perturbation_fields()
        if name in perturbation_fields:
            return perturbation_fields[name]
        if name in self.absent_columns:
            return np.float64(np.nan)
        builtins = self._builtin_columns()
        if name in builtins:
            return builtins[name]()
        available = sorted({*self.metrics, *self.metadata, *self.batch_metadata,
                            *perturbation_fields, *builtins})
        raise KeyError(f"column {name!r} not available in this batch; available: {available}")

    def columns(self) -> list[str]:
        """Names ``column()`` accepts for this batch.

        Example:
            >>> b = ImageClassificationBatch(Images(np.zeros((1, 1, 1, 1), np.uint8)), [0])
            >>> "target" in b.columns()
            True
        """
        return sorted({*self.metrics, *self.metadata, *self.batch_metadata,
                       *self._perturbation_fields(), *self._builtin_columns()})


@dataclasses.dataclass(eq=False)
class ImageClassificationBatch(_Batch):
    """Images with integer targets (N,) and model outputs (N,C) (logits or probabilities).

    Example:
        >>> b = ImageClassificationBatch(Images(np.zeros((1, 1, 1, 1), np.uint8)), [1],
        ...                              predictions=[[0.0, 0.0]])
        >>> float(b.column("confidence")[0]), int(b.column("prediction")[0])
        (0.5, 0)
    """

    prediction_kind: Literal["logits", "probabilities"] = "logits"

    def _convert_targets_predictions(self) -> None:
        targets = to_numpy(self.targets)
        if np.issubdtype(targets.dtype, np.integer):
            targets = targets.astype(np.int64)
        self.targets = targets
        if self.predictions is not None:
            predictions = to_numpy(self.predictions)
            if predictions.dtype == np.float16:
                predictions = predictions.astype(np.float32)
            self.predictions = predictions

    @property
    def num_classes(self) -> int | None:
        """C from predictions.shape[1], else len(class_names), else None."""
        if self.predictions is not None and self.predictions.ndim == 2:
            return int(self.predictions.shape[1])
        return len(self.class_names) if self.class_names is not None else None

    def _validate_task(self, n: int) -> None:
        if self.prediction_kind not in ("logits", "probabilities"):
            raise ValueError(f"prediction_kind: got {self.prediction_kind!r}; expected 'logits' "
                             f"or 'probabilities'")
        t = self.targets
        if t.shape != (n,) or not (np.issubdtype(t.dtype, np.integer) or n == 0):
            raise ValueError(f"targets: got shape {t.shape} dtype {t.dtype}; expected ({n},) "
                             f"integer class indices")
        p = self.predictions
        if p is not None:
            if p.ndim != 2 or p.shape[0] != n or p.shape[1] < 1:
                raise ValueError(f"predictions: got shape {p.shape}; expected ({n},C) "
                                 f"{self.prediction_kind} with C >= 1")
            if not np.issubdtype(p.dtype, np.floating):
                raise ValueError(f"predictions: dtype {p.dtype}; expected floating "
                                 f"{self.prediction_kind} (N,C)")
            finite = np.isfinite(p)
            if not finite.all():
                raise ValueError(f"predictions[{_first_bad(~finite)}]: contains NaN or inf; "
                                 f"expected finite {self.prediction_kind}")
            if self.prediction_kind == "probabilities":
                bad = (p < 0) | (p > 1)
                if bad.any():
                    i = _first_bad(bad)
                    raise ValueError(f"predictions[{i}]: value {p[i][bad[i]][0]:.4g} outside 0..1; "
                                     f"expected probabilities (or prediction_kind='logits')")
            if self.class_names is not None and len(self.class_names) != p.shape[1]:
                raise ValueError(f"class_names: got {len(self.class_names)} names; expected "
                                 f"{p.shape[1]} (predictions.shape[1])")
        c = self.num_classes
        bad = t < 0 if c is None else (t < 0) | (t >= c)
        if bad.any():
            i = int(np.argmax(bad))
            bound = f" < {c}" if c is not None else ""
            raise ValueError(f"targets[{i}]: label {t[i]} out of range; expected 0 <= label{bound}")

    def probabilities(self) -> np.ndarray:
        """(N,C) float64 class probabilities: softmax of logits, or the predictions themselves.

        Example:
            >>> b = ImageClassificationBatch(Images(np.zeros((1, 1, 1, 1), np.uint8)), [0], [[0.0, 0.0]])
            >>> b.probabilities().tolist()
            [[0.5, 0.5]]
        """
        if self.predictions is None:
            raise ValueError("predictions: missing; expected (N,C) model outputs")
        p = self.predictions.astype(np.float64)
        if self.prediction_kind == "probabilities":
            return p
        e = np.exp(p - p.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def _builtin_columns(self) -> dict[str, Callable[[], Any]]:
        columns = super()._builtin_columns()
        columns["target"] = lambda: self.targets
        if self.predictions is not None:
            columns["prediction"] = lambda: self.predictions.argmax(axis=1).astype(np.int64)
            columns["confidence"] = lambda: self.probabilities().max(axis=1)
            columns["correct"] = lambda: self.predictions.argmax(axis=1) == self.targets
        return columns


@dataclasses.dataclass(eq=False)
class ObjectDetectionBatch(_Batch):
    """Images with per-image ground-truth and predicted ``Objects`` (dicts are converted).

    Predictions must carry scores. ``class_names`` (if given) bounds every label.

    Example:
        >>> b = ObjectDetectionBatch(Images(np.zeros((1, 1, 8, 8), np.uint8)),
        ...                          targets=[{"boxes": [[1, 1, 4, 4]], "labels": [0]}],
        ...                          predictions=[Objects([[1, 1, 4, 4]], [0], [0.9])])
        >>> b.column("num_targets").tolist(), b.column("recall").tolist()
        ([1], [1.0])
    """

    def _convert_targets_predictions(self) -> None:
        self.targets = self._objects_list(self.targets, "targets")
        if self.predictions is not None:
            self.predictions = self._objects_list(self.predictions, "predictions")

    @staticmethod
    def _objects_list(value: Any, field: str) -> list[Objects]:
        if isinstance(value, (Mapping, Objects)) or not isinstance(value, Sequence):
            raise ValueError(f"{field}: got {type(value).__name__}; expected a list with one "
                             f"Objects (or boxes/labels/scores dict) per image")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(item if isinstance(item, Objects) else Objects.from_mapping(item))
            except (ValueError, TypeError, AttributeError) as error:
                raise ValueError(f"{field}[{i}]: {error}") from None
        return out

    @property
    def num_classes(self) -> int | None:
        """len(class_names), or None when no class names are given."""
        return len(self.class_names) if self.class_names is not None else None

    def _validate_task(self, n: int) -> None:
        for field, objects, require_scores in (("targets", self.targets, False),
                                               ("predictions", self.predictions, True)):
            if objects is None:
                continue
            if len(objects) != n:
                raise ValueError(f"{field}: got {len(objects)} entries; expected {n} (one Objects "
                                 f"per image)")
            for i, item in enumerate(objects):
                item.validate(f"{field}[{i}]", height=self.height, width=self.width,
                              num_classes=self.num_classes, require_scores=require_scores)

    def _builtin_columns(self) -> dict[str, Callable[[], Any]]:
        from armory_datasets import metrics

        columns = super()._builtin_columns()
        columns["num_targets"] = lambda: metrics.NumTargets()(self)
        if self.predictions is not None:
            for metric in (metrics.NumPredictions(), metrics.MeanIoU(), metrics.Precision(),
                           metrics.Recall()):
                columns[metric.name] = lambda metric=metric: metric(self)
        return columns


Batch = ImageClassificationBatch | ObjectDetectionBatch
"""Either kind of batch."""
