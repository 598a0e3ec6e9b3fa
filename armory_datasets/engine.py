"""Run an evaluation: perturb, predict, measure and export every batch of every chain.

The dataset is read once. For each dataset batch the engine assigns global sample
indices (a running count, unless the dataset provides them), then for each chain:
applies the chain's perturbations to a copy, predicts under ``torch.no_grad``, records
metrics in ``batch.metrics``, calls ``exporter.export(batch_idx, batch)`` for every
exporter and then ``writer.end_batch()``. ``batch_idx`` counts the chain's batches from
0, so it restarts per chain as upstream; a sample's records share one global index.

Sharded runs (several processes, one export): ``shard=(rank, world_size)``, or a
``torch.distributed`` process group (``torchrun``), makes this process evaluate the
dataset batches with ``batch_idx % world_size == rank``. Every process reads every
batch to count samples, so ``sample_index`` and ``batch`` are those of a one-process
run; each writes its own parts as writer ``rank{rank}``. Under torch.distributed, rank
0 commits the export after a barrier; otherwise run ``armory-datasets commit DIR``
when every shard is done. Each process's ``metrics`` aggregate its own shard.

Example:
    >>> import numpy as np, torch
    >>> from armory_datasets.evaluation import Evaluation
    >>> evaluation = Evaluation("toy", "constant model", "me")
    >>> evaluation.use_dataset([(np.zeros((3, 1, 2, 2), np.float32), [0, 1, 0])])
    >>> evaluation.use_model(lambda x: torch.tensor([[1.0, 0.0]]).repeat(len(x), 1))
    >>> EvaluationEngine(evaluation, quiet=True).run().metrics["benign"]["accuracy"]
    0.6666666666666666
"""

from __future__ import annotations

import re
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from armory_datasets.data import ImageClassificationBatch, ObjectDetectionBatch, to_numpy
from armory_datasets.evaluation import Chain, Evaluation
from armory_datasets.extras import require
from armory_datasets.metrics import Metric, NamedMetric, default_metrics, summarize

require("torch", "tqdm", extra="torch", feature=__name__)  # imported where used

__all__ = ["EvaluationEngine", "EvaluationResult"]

Batch = ImageClassificationBatch | ObjectDetectionBatch


@dataclass
class EvaluationResult:
    """What a run produced.

    ``metrics``: per chain, run-level aggregates (``accuracy``, ``mean_confidence``,
    ``mean_precision``, ...; None when undefined), plus a detection exporter's COCO
    ``ap50``, ``map`` and ``ap50_per_class``. ``counts``: samples per chain.
    ``export_dir`` and ``dataset_name`` (the FiftyOne dataset) are None without exporters.
    """

    metrics: dict[str, dict[str, Any]]
    export_dir: Path | None
    dataset_name: str | None
    counts: dict[str, int] = field(default_factory=dict)


class _CriterionMetric(NamedMetric):
    """A metric a criterion reads; a scalar result applies to every sample."""

    def compute(self, batch: Any) -> Any:
        values = to_numpy(self.fn(batch))
        return np.full(len(batch), values.item()) if values.ndim == 0 else values


class EvaluationEngine:
    """Runs an ``Evaluation`` and writes its exports.

    ``export_dir`` defaults to ``armory-exports/{name}-{UTC time}`` when there are
    exporters; ``overwrite`` and ``fiftyone`` go to the ``armory_datasets.store.ExportWriter``
    the engine opens. ``shard=(rank, world_size)``: evaluate one shard (module docstring).
    ``writer`` replaces that writer (any object with ``end_batch()``, ``close()`` and the
    context manager protocol). ``quiet=True`` hides the progress bar.

    Example:
        >>> from armory_datasets.evaluation import Evaluation
        >>> EvaluationEngine(Evaluation("e", "d", "a"), quiet=True).export_dir is None
        True
    """

    def __init__(self, evaluation: Evaluation, export_dir: str | Path | None = None,
                 quiet: bool = False, writer: Any = None, overwrite: bool = False,
                 fiftyone: bool = True, shard: tuple[int, int] | None = None) -> None:
        self.evaluation = evaluation
        self.shard, self.distributed = _resolve_shard(shard)
        if self.shard is not None and export_dir is None and evaluation.exporters and writer is None:
            raise ValueError(f"export_dir: got None with shard={self.shard}; expected the one "
                             f"directory every shard writes into")
        self.quiet = quiet
        self.writer = writer
        self.writer_options: dict[str, Any] = {"overwrite": overwrite, "fiftyone": fiftyone}
        if self.shard is not None:
            self.writer_options["writer_id"] = f"rank{self.shard[0]}"
        if export_dir is None and evaluation.exporters and writer is None:
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", evaluation.name).strip("-") or "evaluation"
            export_dir = Path("armory-exports") / f"{slug}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        self.export_dir = Path(export_dir) if export_dir is not None else None

    def run(self) -> EvaluationResult:
        """Evaluate every batch of every chain; returns the aggregates and where exports went."""
        import torch

        evaluation = self.evaluation
        evaluation.validate()
        model = evaluation.model
        module = model.module
        if isinstance(module, torch.nn.Module):
            module.eval()
        device = torch.device(model.device) if model.device is not None else _module_device(module)
        exporters = evaluation.exporters
        extra_metrics = list(evaluation.metrics) + _criteria_metrics(exporters, evaluation.metrics)
        values: dict[str, dict[str, list[np.ndarray]]] = {c: {} for c in evaluation.chains}
        counts = {c: 0 for c in evaluation.chains}
        metrics_used: dict[str, list[Metric]] = {}
        dataset_name = None
        with ExitStack() as stack:
            writer = self._open_writer(stack) if exporters else None
            closing = stack.enter_context(ExitStack())
            for exporter in exporters:
                exporter.setup(writer=writer)
                closing.callback(exporter.close)
            offset = 0
            absent = self._absent_columns()
            for batch_idx, item in enumerate(self._progress(evaluation.dataset.batches)):
                base = evaluation.dataset.adapter(item)
                if base.global_indices is None:
                    base = replace(base, global_indices=np.arange(offset, offset + len(base)))
                offset += len(base)
                if self.shard is not None and batch_idx % self.shard[1] != self.shard[0]:
                    continue  # another shard's batch: counted, not evaluated
                for chain in evaluation.chains.values():
                    batch = self._evaluate(base, chain, device, absent[chain.name])
                    metrics = metrics_used.setdefault(chain.name, _metrics_for(batch, extra_metrics))
                    for metric in metrics:
                        batch.metrics[metric.name] = metric(batch)
                        values[chain.name].setdefault(metric.name, []).append(batch.metrics[metric.name])
                    counts[chain.name] += len(batch)
                    for exporter in exporters:
                        exporter.export(batch_idx, batch)
                    if writer is not None:
                        writer.end_batch()
            closing.close()
            if writer is not None:
                dataset_name = _dataset_name(writer, writer.close())
                if self.distributed:
                    dataset_name = self._commit_after_barrier()
        summary = {c: summarize(metrics_used.get(c, []), values[c]) for c in evaluation.chains}
        for exporter in exporters:  # run-level metrics an exporter measured (detection AP)
            for chain, measured in getattr(exporter, "run_metrics", dict)().items():
                summary[chain].update(measured)
        return EvaluationResult(summary, self.export_dir if exporters else None, dataset_name, counts)

    def _commit_after_barrier(self) -> str | None:
        """Every rank has closed its writer: rank 0 commits, the others wait for it."""
        import torch.distributed as dist

        from armory_datasets.store.commit import commit_export
        from armory_datasets.store.manifest import read_manifest

        dist.barrier()
        failure = None
        if self.shard[0] == 0:
            try:
                commit_export(self.export_dir)
            except Exception as error:  # noqa: BLE001 (re-raised after the barrier below)
                failure = error
        dist.barrier()  # reached by rank 0 even when its commit failed: nobody hangs
        if failure is not None:
            raise failure
        manifest = read_manifest(self.export_dir)
        if manifest["status"] != "complete":
            raise RuntimeError(f"{self.export_dir}: rank 0 could not commit the export (see its "
                               f"error); fix it and run `armory-datasets commit {self.export_dir}`")
        return manifest["fiftyone"]["dataset"]

    def _open_writer(self, stack: ExitStack) -> Any:
        writer = self.writer
        if writer is None:
            from armory_datasets.store import ExportWriter

            writer = ExportWriter(self.export_dir, self.evaluation.info(), **self.writer_options)
        return stack.enter_context(writer)

    def _progress(self, batches: Any) -> Any:
        from tqdm.auto import tqdm

        total = len(batches) if hasattr(batches, "__len__") else None
        return tqdm(batches, total=total, disable=self.quiet, desc=self.evaluation.name, unit="batch")

    def _absent_columns(self) -> dict[str, frozenset[str]]:
        """Per chain, the perturbation fields of the other chains: missing in its records."""
        fields = {name: {f"{p.name}_{param}" for p in c.perturbations for param in p.params()}
                  for name, c in self.evaluation.chains.items()}
        every = set().union(*fields.values())
        return {name: frozenset(every - own) for name, own in fields.items()}

    def _evaluate(self, base: Batch, chain: Chain, device: Any, absent: frozenset[str]) -> Batch:
        """The chain's copy of a batch: perturbed inputs and the model's predictions."""
        import torch

        inputs, applied = base.inputs, {}
        if chain.perturbations:
            unit = base.inputs.to_unit_float_chw().to(device)
            targets = (torch.as_tensor(base.targets, device=device)
                       if isinstance(base, ImageClassificationBatch) else base.targets)
            with torch.enable_grad():
                for perturbation in chain.perturbations:
                    unit = perturbation.perturb(unit, targets, base.inputs.normalize)
                    applied[perturbation.name] = perturbation.params()
            inputs = base.inputs.with_unit_float(unit)
        model = self.evaluation.model
        with torch.no_grad():
            output = model.module(inputs.to_model_input().to(device))
        class_names = base.class_names if base.class_names is not None else model.class_names
        changes: dict[str, Any] = dict(inputs=inputs, chain=chain.name, perturbations=applied,
                                       class_names=class_names, metrics={},
                                       absent_columns=absent)
        if isinstance(base, ImageClassificationBatch):
            changes.update(predictions=output, prediction_kind=model.prediction_kind)
        else:
            changes["predictions"] = list(output)
        return replace(base, **changes)


def _resolve_shard(shard: tuple[int, int] | None) -> tuple[tuple[int, int] | None, bool]:
    """``(shard, under torch.distributed)``: the given shard, or the process group's."""
    if shard is None:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return None, False
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None, False
        return (dist.get_rank(), dist.get_world_size()), True
    rank, world_size = shard
    if not (isinstance(rank, int) and isinstance(world_size, int) and 0 <= rank < world_size):
        raise ValueError(f"shard: got {shard!r}; expected (rank, world_size) integers with "
                         f"0 <= rank < world_size")
    return (rank, world_size), False


def _metrics_for(batch: Batch, extra: list[Metric]) -> list[Metric]:
    """Built-in metrics of the batch's kind, then the extra ones; an extra metric named like
    a built-in one (e.g. ``Precision(score_threshold=0.1)``) replaces it."""
    names = {m.name for m in extra}
    return [m for m in default_metrics(batch) if m.name not in names] + list(extra)


def _dataset_name(writer: Any, returned: Any) -> str | None:
    """The FiftyOne dataset name: what ``close()`` returned, else the writer's manifest."""
    if returned is not None:
        return returned
    manifest = getattr(writer, "manifest", None) or {}
    return (manifest.get("fiftyone") or {}).get("dataset")


def _module_device(module: Any) -> Any:
    import torch

    parameters = getattr(module, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")


def _criteria_metrics(exporters: list[Any], recorded: list[Metric]) -> list[Metric]:
    """Named metrics the exporters' criteria read that are not batch columns or recorded.

    A ``Metric`` is used as it is (``when_metric_eq(Correct(), False)`` keeps the
    ``accuracy`` aggregate); any other callable is wrapped."""
    from armory_datasets.criteria import BatchColumn

    names = {m.name for m in recorded}
    found: list[Metric] = []
    for exporter in exporters:
        fields = getattr(getattr(exporter, "criterion", None), "fields", None)
        for f in fields() if callable(fields) else []:
            if f.name and f.metric is not None and not isinstance(f.metric, BatchColumn) \
                    and f.name not in names:
                names.add(f.name)
                found.append(f.metric if isinstance(f.metric, Metric)
                             else _CriterionMetric(f.name, f.metric))
    return found
