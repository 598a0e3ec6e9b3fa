"""Classification and detection batches: validation and the column lookup criteria use.

Example:
    >>> import numpy as np
    >>> from armory_datasets.data import Images
    >>> batch = ImageClassificationBatch(Images(np.zeros((2, 1, 4, 4), np.uint8)), [3, 1],
    ...                                  predictions=np.eye(4)[[3, 0]] * 5.0)
    >>> batch.column("correct").tolist()
    [True, False]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Literal

import numpy as np

from armory_datasets.boxes import match_scores
from armory_datasets.data.arrays import as_scalar, first_bad, is_torch, require_finite, to_numpy
from armory_datasets.data.images import Images
from armory_datasets.data.objects import Objects
from armory_datasets.records.names import check_column_name, check_name
from armory_datasets.schema import VOCABULARY


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
            str(name): {str(p): as_scalar(v, f"perturbations[{name!r}][{p!r}]") for p, v in params.items()}
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
        if is_torch(value) or isinstance(value, np.ndarray):
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
        if typed.dtype.kind in "US" and not all(isinstance(v, str) for v in value):
            return array  # numpy turns [1, "one"] into strings; the record refuses mixed types
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
        if n == 0:
            raise ValueError("inputs: an empty batch (0 samples); expected at least one sample "
                             "(skip empty batches)")
        self.inputs.validate("inputs")
        check_name(self.chain, "chain")
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
        for key in self.metadata:
            check_column_name(key, f"metadata[{key!r}]")
        for key in self.batch_metadata:
            check_column_name(key, f"batch_metadata[{key!r}]")
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
            return as_scalar(value, name) if (is_torch(value) or isinstance(value, np.generic)
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
            require_finite(p, "predictions", f"finite {self.prediction_kind}")
            if self.prediction_kind == "probabilities":
                bad = (p < 0) | (p > 1)
                if bad.any():
                    i = first_bad(bad)
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
        columns = super()._builtin_columns()
        columns["num_targets"] = lambda: np.array([len(t) for t in self.targets], dtype=np.int64)
        if self.predictions is not None:
            # at the default thresholds; an exporter's records use its own
            scores = functools.cache(lambda: match_scores(self.predictions, self.targets))
            for name in ("num_predictions", "mean_iou", "precision", "recall"):
                columns[name] = lambda name=name: scores()[name]
        return columns


Batch = ImageClassificationBatch | ObjectDetectionBatch
"""Either kind of batch."""
