"""An evaluation: dataset, model, chains of perturbations, metrics and exporters.

The dataset is any re-iterable or one-shot iterable (a DataLoader, a list, a generator)
of batches. Each item is either a ready ``ImageClassificationBatch`` /
``ObjectDetectionBatch`` (without predictions) or a simple form that the
``DatasetAdapter`` turns into one:

- a tuple ``(images, targets)`` or ``(images, targets, metadata)``;
- a dict with ``"images"`` and ``"targets"``, optional ``"batch_metadata"`` (dict of
  batch-level values) and ``"global_indices"``; every other key is a per-sample
  metadata column.

``images`` is a tensor/array read with the adapter's ``layout``/``scale``/``mean``/``std``
(or an ``Images``); classification targets are class indices (N,), detection targets a
list of ``Objects`` or ``{"boxes", "labels"}`` dicts.

Example:
    >>> import numpy as np
    >>> evaluation = Evaluation("digits", "Digits under FGSM", "me")
    >>> evaluation.use_dataset([(np.zeros((2, 1, 8, 8), np.float32), [3, 4])], name="digits")
    >>> evaluation.add_chain("noisy").name, list(evaluation.chains)
    ('noisy', ['benign', 'noisy'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from armory_datasets.data import Images, ImageClassificationBatch, ObjectDetectionBatch
from armory_datasets.metrics import Metric
from armory_datasets.records.names import check_name

__all__ = [
    "Perturbation",
    "DatasetAdapter",
    "Dataset",
    "Model",
    "Chain",
    "Evaluation",
]


@runtime_checkable
class Perturbation(Protocol):
    """What a chain applies to images (see ``armory_datasets.perturbations``).

    ``perturb`` gets float32 CHW images in 0..1, the targets (classification: an int64
    tensor (N,) on the images' device; detection: a list of ``Objects``) and the batch's
    ``normalize`` function; it returns perturbed images in 0..1.
    """

    name: str

    def params(self) -> dict[str, Any]: ...

    def perturb(self, images_unit: Any, targets: Any, normalize: Any) -> Any: ...


@dataclass
class DatasetAdapter:
    """Turns dataset items (batches, tuples or dicts) into validated batches.

    Example:
        >>> import numpy as np
        >>> adapt = DatasetAdapter(task="classification", mean=0.5, std=0.5)
        >>> batch = adapt({"images": np.zeros((2, 1, 4, 4), np.float32), "targets": [1, 2],
        ...                "site": ["a", "b"], "batch_metadata": {"camera": "c7"}})
        >>> batch.column("site").tolist(), batch.column("camera")
        (['a', 'b'], 'c7')
    """

    task: Literal["classification", "detection"] = "classification"
    layout: Literal["CHW", "HWC"] = "CHW"
    scale: Literal["uint8", "float"] | None = None
    mean: Sequence[float] | float | None = None
    std: Sequence[float] | float | None = None
    class_names: Sequence[str] | None = None
    images_key: str = "images"
    targets_key: str = "targets"

    def __post_init__(self) -> None:
        if self.task not in ("classification", "detection"):
            raise ValueError(f"task: got {self.task!r}; expected 'classification' or 'detection'")

    def __call__(self, item: Any) -> ImageClassificationBatch | ObjectDetectionBatch:
        if isinstance(item, (ImageClassificationBatch, ObjectDetectionBatch)):
            if item.class_names is None and self.class_names is not None:
                return replace(item, class_names=self.class_names)
            return item
        global_indices = None
        batch_metadata: Mapping[str, Any] = {}
        if isinstance(item, Mapping):
            missing = {self.images_key, self.targets_key} - set(item)
            if missing:
                raise ValueError(f"dataset item: keys {sorted(item)}; expected {self.images_key!r} "
                                 f"and {self.targets_key!r} (missing {sorted(missing)})")
            reserved = {self.images_key, self.targets_key, "batch_metadata", "global_indices"}
            images, targets = item[self.images_key], item[self.targets_key]
            metadata = {k: v for k, v in item.items() if k not in reserved}
            batch_metadata = item.get("batch_metadata") or {}
            global_indices = item.get("global_indices")
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
            images, targets = item[0], item[1]
            metadata = item[2] if len(item) == 3 else {}
        else:
            raise ValueError(f"dataset item: got {type(item).__name__}; expected a batch, a tuple "
                             f"(images, targets[, metadata]) or a dict with {self.images_key!r} "
                             f"and {self.targets_key!r}")
        if not isinstance(images, Images):
            images = Images(images, layout=self.layout, scale=self.scale, mean=self.mean, std=self.std)
        cls = ImageClassificationBatch if self.task == "classification" else ObjectDetectionBatch
        return cls(images, targets, metadata=metadata, batch_metadata=batch_metadata,
                   global_indices=global_indices, class_names=self.class_names)


@dataclass
class Dataset:
    """An iterable of dataset items and the adapter that reads them."""

    batches: Iterable[Any]
    adapter: DatasetAdapter
    name: str | None = None


@dataclass
class Model:
    """The evaluated torch module and how to read its output.

    Classification: ``module(inputs) -> (N,C)`` logits or probabilities. Detection:
    ``module(inputs) -> [{"boxes", "labels", "scores"}, ...]``. ``inputs`` is
    ``batch.inputs.to_model_input()`` on ``device``.
    """

    module: Any
    prediction_kind: Literal["logits", "probabilities"] = "logits"
    class_names: Sequence[str] | None = None
    device: Any = None
    name: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or type(self.module).__name__


@dataclass
class Chain:
    """A named sequence of perturbations applied to every batch (none: benign).

    Usable as a context manager, as upstream's ``with evaluation.add_chain(name) as chain``.

    Example:
        >>> with Chain("clean") as chain:
        ...     chain.use_perturbations([])
        >>> chain.perturbations
        []
    """

    name: str
    perturbations: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_name(self.name, "chain")
        self.use_perturbations(self.perturbations)

    def use_perturbations(self, perturbations: Iterable[Any]) -> None:
        """Replace the chain's perturbations (applied in order)."""
        self.perturbations = []
        for perturbation in perturbations:
            self.add_perturbation(perturbation)

    def add_perturbation(self, perturbation: Any) -> None:
        """Append a perturbation; names must be unique within the chain."""
        if not isinstance(perturbation, Perturbation):
            raise ValueError(f"chain {self.name!r}: got {type(perturbation).__name__}; expected a "
                             f"perturbation with name, params() and perturb(images, targets, normalize)")
        if any(p.name == perturbation.name for p in self.perturbations):
            raise ValueError(f"chain {self.name!r}: perturbation name {perturbation.name!r} used "
                             f"twice; expected unique names")
        self.perturbations.append(perturbation)

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class Evaluation:
    """Configuration of one evaluation; run it with ``EvaluationEngine(evaluation).run()``.

    A "benign" chain without perturbations exists from the start.

    Example:
        >>> evaluation = Evaluation("e", "d", "a")
        >>> evaluation.use_exporters()
        >>> evaluation.exporters, list(evaluation.chains)
        ([], ['benign'])
    """

    def __init__(self, name: str, description: str, author: str) -> None:
        self.name = name
        self.description = description
        self.author = author
        self.dataset: Dataset | None = None
        self.model: Model | None = None
        self.metrics: list[Metric] = []
        self.exporters: list[Any] = []
        self.chains: dict[str, Chain] = {"benign": Chain("benign")}

    def use_dataset(self, batches: Iterable[Any], name: str | None = None, **adapter_options: Any) -> None:
        """Set the dataset; ``adapter_options`` go to ``DatasetAdapter`` (task, layout, scale,
        mean, std, class_names, images_key, targets_key)."""
        self.dataset = Dataset(batches, DatasetAdapter(**adapter_options), name)

    def use_model(self, model: Any, prediction_kind: Literal["logits", "probabilities"] = "logits",
                  class_names: Sequence[str] | None = None, device: Any = None,
                  name: str | None = None) -> None:
        """Set the model; ``device`` defaults to the device of its first parameter (else CPU)."""
        if not callable(model):
            raise ValueError(f"model: got {type(model).__name__}; expected a callable torch module")
        self.model = Model(model, prediction_kind, class_names, device, name)

    def use_metrics(self, *metrics: Metric | Iterable[Metric]) -> None:
        """Record these named metrics besides the built-in ones (one, several or an iterable)."""
        chosen = _flatten(metrics, lambda m: isinstance(m, Metric) or hasattr(m, "name"))
        names = [getattr(m, "name", None) for m in chosen]
        for metric, metric_name in zip(chosen, names):
            if not metric_name or not callable(metric):
                raise ValueError(f"metrics: {metric!r} has no name; expected a Metric, e.g. "
                                 f"armory_datasets.metrics.named_metric('my_metric', fn)")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metrics: names {duplicates} used twice; expected unique names")
        self.metrics = chosen

    def add_chain(self, name: str, perturbations: Iterable[Any] = ()) -> Chain:
        """Add a chain (also a context manager to configure it); names must be new."""
        if name in self.chains:
            raise ValueError(f"chain {name!r} exists; expected a new name (or use_perturbations)")
        chain = Chain(name, list(perturbations))
        self.chains[name] = chain
        return chain

    def use_perturbations(self, chain_name: str, perturbations: Iterable[Any]) -> None:
        """Set a chain's perturbations, creating the chain if needed."""
        if chain_name in self.chains:
            self.chains[chain_name].use_perturbations(perturbations)
        else:
            self.add_chain(chain_name, perturbations)

    def use_exporters(self, *exporters: Any) -> None:
        """Set the exporters: one exporter, several, or one iterable of exporters."""
        self.exporters = _flatten(exporters, lambda e: hasattr(e, "export"))

    def validate(self) -> None:
        """Check that a dataset and a model are set."""
        if self.dataset is None:
            raise ValueError(f"evaluation {self.name!r}: no dataset; call use_dataset(...)")
        if self.model is None:
            raise ValueError(f"evaluation {self.name!r}: no model; call use_model(...)")

    def info(self) -> dict[str, Any]:
        """JSON-ready description of the evaluation for the export manifest."""
        return {
            "name": self.name,
            "description": self.description,
            "author": self.author,
            "dataset": self.dataset.name if self.dataset else None,
            "task": self.dataset.adapter.task if self.dataset else None,
            "model": self.model.display_name if self.model else None,
            "chains": {c.name: {p.name: p.params() for p in c.perturbations}
                       for c in self.chains.values()},
            "metrics": [m.name for m in self.metrics],
            "exporters": [getattr(e, "name", type(e).__name__) for e in self.exporters],
        }


def _flatten(items: tuple[Any, ...], is_item: Any) -> list[Any]:
    """``(a,)``, ``(a, b)`` or ``([a, b],)`` -> ``[a, b]``."""
    if len(items) == 1 and not is_item(items[0]) and isinstance(items[0], Iterable):
        return list(items[0])
    return list(items)
