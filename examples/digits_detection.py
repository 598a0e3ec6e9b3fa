"""Digits detection: export the images with a missed digit and every confident false positive.

Trains the tiny sliding-window detector of ``armory_datasets.demo.digits`` on 64x96
canvases of pasted training digits, evaluates 48 canvases of held-out digits in two
chains, ``benign`` and ``fgsm`` (one FGSM step against the detector's own loss, a
perturbation written here in a few lines), and exports, into one directory and a
FiftyOne dataset, every image with a missed digit (``fn > 0``) and every attacked image
with a false positive scored above 0.8
(``chains(["fgsm"]) & any(predicted_objects, score > 0.8 & match == "fp")``). Each box
carries its COCO match (``match``, ``iou``, ``matched_index``), each image ``tp``/``fp``/
``fn``, the manifest the run's AP and mAP, and ``objects/`` one row per box. Benign
images with a missed digit also get a D-RISE saliency map for every true and predicted
box (16-bit PNG heatmaps linked to their boxes).

Run it::

    python examples/digits_detection.py                  # -> ./exports/digits-detection
    python examples/digits_detection.py --export-dir DIR --quick

Re-running replaces the previous export in the same directory (``overwrite=True``),
including its FiftyOne dataset; pass another ``--export-dir`` to keep both.

Example:
    >>> result = main(export_dir="/tmp/digits-detection", quiet=True, quick=True)  # doctest: +SKIP
    >>> sorted(result.metrics)  # doctest: +SKIP
    ['benign', 'fgsm']
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

import armory_datasets
from armory_datasets.demo.digits import CLASS_NAMES, dense_targets, make_detection_canvases, train_detector
from armory_datasets.engine import EvaluationEngine, EvaluationResult
from armory_datasets.evaluation import Evaluation
from armory_datasets.export import Exporter, ObjectDetectionExporter, criteria
from armory_datasets.export.drise import DRiseSaliencyObjectDetectionExporter

DEFAULT_EXPORT_DIR = Path("exports/digits-detection")
SCORE_THRESHOLD = 0.5
MISSED = criteria.parse("fn > 0")
"""Images with a digit no prediction matched (COCO rules at IoU 0.5)."""
CONFIDENT_FP = criteria.parse('chains(["fgsm"]) & any(predicted_objects, score > 0.8 & match == "fp")')
"""Attacked images with a false positive scored above 0.8."""
OBJECT_QUERIES = {
    "missed digit": MISSED,
    "fp above 0.8 under attack": CONFIDENT_FP,
    "a missed 3": criteria.parse('count(ground_truth_objects, label == 3 & match == "fn") >= 1'),
    "every digit found": criteria.parse('all(ground_truth_objects, match == "tp")'),
}
"""The object criteria the report counts in pandas, DuckDB and FiftyOne."""


class DetectorFGSM:
    """A perturbation: one FGSM step of ``epsilon`` against the detector's own training loss.

    The loss is the cross-entropy of every window of the score map against its label
    (``dense_targets`` of the true boxes), ascended: digits fade into background and
    background turns into digits. Any object with ``name``, ``params()`` and
    ``perturb(images_unit, targets, normalize)`` can be a chain's perturbation;
    ``params()`` become ``fgsm_epsilon`` in the table.

    Example:
        >>> from armory_datasets.demo.digits import TinyDigitsDetector
        >>> from armory_datasets.data import Objects
        >>> x = DetectorFGSM(TinyDigitsDetector().eval(), 0.1).perturb(
        ...     torch.zeros(1, 1, 64, 96), [Objects([[0, 0, 24, 24]], [3])], None)
        >>> x.shape, round(float(x.max()), 3)
        (torch.Size([1, 1, 64, 96]), 0.1)
    """

    name = "fgsm"

    def __init__(self, detector: torch.nn.Module, epsilon: float) -> None:
        self.detector = detector
        self.epsilon = epsilon

    def params(self) -> dict[str, float]:
        return {"epsilon": self.epsilon}

    def perturb(self, images_unit: torch.Tensor, targets: Any, normalize: Any) -> torch.Tensor:
        x = images_unit.detach().clone().requires_grad_(True)
        logits = self.detector.score_map(x)
        dense = dense_targets(self.detector, [{"boxes": t.boxes, "labels": t.labels} for t in targets],
                              *logits.shape[-2:])
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(dense).to(x.device),
                                                 ignore_index=-100, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        return (images_unit.detach() + self.epsilon * grad.sign()).clamp_(0.0, 1.0)


def load_batches(n_canvases: int = 48, batch_size: int = 8, seed: int = 1) -> list[dict[str, Any]]:
    """Canvases of held-out digits as dataset items: 0..1 images and {boxes, labels} targets.

    Example:
        >>> batches = load_batches(n_canvases=16, batch_size=8)
        >>> len(batches), batches[0]["images"].shape, sorted(batches[0]["targets"][0])
        (2, (8, 1, 64, 96), ['boxes', 'labels'])
    """
    images, targets = make_detection_canvases(n_canvases, height=64, width=96, seed=seed, split="test")
    return [{"images": images[i:i + batch_size], "targets": targets[i:i + batch_size]}
            for i in range(0, n_canvases, batch_size)]


def build_exporters(detector: torch.nn.Module | None = None, num_masks: int = 1000) -> list[Exporter]:
    """The evaluation's exporters; with ``detector``, D-RISE maps of benign images with a miss.

    One exporter chooses the images with a missed digit or, under attack, a false
    positive above 0.8. The D-RISE exporter adds ``drise_gt_{k}`` / ``drise_pred_{k}``
    heatmaps (one per box of ``ground_truth_objects`` / ``predicted_objects``) and the
    ``drise_boxes`` list to the benign records with a miss.

    Example:
        >>> [str(e.criterion) for e in build_exporters()]
        ['fn > 0 | chains(["fgsm"]) & any(predicted_objects, score > 0.8 & match == "fp")']
    """
    exporters: list[Exporter] = [ObjectDetectionExporter(score_threshold=SCORE_THRESHOLD,
                                                         criterion=MISSED | CONFIDENT_FP)]
    if detector is not None:
        exporters.append(DRiseSaliencyObjectDetectionExporter(
            model=detector, num_classes=len(CLASS_NAMES), num_masks=num_masks, seed=0,
            score_threshold=SCORE_THRESHOLD, criterion=MISSED & criteria.chains(["benign"])))
    return exporters


def main(export_dir: str | Path | None = None, quiet: bool = False, quick: bool = False,
         epsilon: float = 0.15, seed: int = 0) -> EvaluationResult:
    """Train the detector, evaluate benign and fgsm chains, export, and (unless ``quiet``) print.

    ``quick``: a detector trained on 100 canvases, not 200 (it misses more digits),
    16 evaluated canvases instead of 48, and 300 D-RISE masks instead of 1000.

    Example:
        >>> main(export_dir="/tmp/digits-detection", quiet=True, quick=True).counts  # doctest: +SKIP
        {'benign': 16, 'fgsm': 16}
    """
    torch.set_num_threads(1)
    started = time.perf_counter()
    detector = train_detector(seed=seed, n_canvases=100 if quick else 200)
    if not quiet:
        print(f"Trained TinyDigitsDetector in {time.perf_counter() - started:.1f} s")

    evaluation = Evaluation(
        name="digits-detection",
        description="TinyDigitsDetector on 64x96 canvases of held-out digits, benign and FGSM",
        author="armory_datasets examples",
    )
    evaluation.use_dataset(load_batches(n_canvases=16 if quick else 48), name="digits-canvases-test",
                           task="detection", scale="float", class_names=CLASS_NAMES)
    evaluation.use_model(detector, name="TinyDigitsDetector")
    evaluation.add_chain("fgsm", [DetectorFGSM(detector, epsilon)])
    evaluation.use_exporters(build_exporters(detector=detector, num_masks=300 if quick else 1000))

    engine = EvaluationEngine(evaluation, export_dir=export_dir or DEFAULT_EXPORT_DIR,
                              quiet=quiet, overwrite=True)
    result = engine.run()
    if not quiet:
        print_report(result, epsilon)
        print(f"Done in {time.perf_counter() - started:.1f} s")
    return result


def print_report(result: EvaluationResult, epsilon: float) -> None:
    """Print the run's detection metrics, per-image metrics, object queries and D-RISE maps.

    Example:
        >>> print_report(main(quiet=True, quick=True), 0.15)  # doctest: +SKIP
    """
    for chain, label in (("benign", "benign"), ("fgsm", f"fgsm (epsilon {epsilon})")):
        m = result.metrics[chain]
        print(f"{label}: AP50 {_format(m['ap50'], '.3f')}, mAP@[.5:.95] {_format(m['map'], '.3f')} "
              f"(COCO), mean precision {_format(m['mean_precision'], '.1%')}, mean recall "
              f"{_format(m['mean_recall'], '.1%')} over {result.counts[chain]} canvases")
    export = armory_datasets.open_export(result.export_dir)
    print(f"Exported {export.count()} records to {result.export_dir} "
          f"(FiftyOne dataset {result.dataset_name!r})")

    per_image = ["chain", "sample_index", "num_targets", "num_predictions", "precision", "recall", "mean_iou"]
    metrics = export.to_pandas(columns=per_image).sort_values(["sample_index", "chain"])
    print("\nPer-image metrics, export.to_pandas(columns=[...]), first 6 by sample:")
    print(_indent(metrics.head(6).round(2).to_string(index=False)))

    print("\nObject criteria: images each selects, in pandas (Parquet), DuckDB and FiftyOne:")
    from armory_datasets.database import import_fiftyone

    dataset = import_fiftyone().load_dataset(result.dataset_name)
    for name, criterion in OBJECT_QUERIES.items():
        in_duckdb = export.sql(f"SELECT count(*) AS n FROM samples WHERE {criterion.to_sql()}").column("n")[0]
        print(f"  {name:<26} {len(export.to_pandas(criterion, ['record_key'])):>3} "
              f"{in_duckdb.as_py():>3} {dataset.match(criterion.to_fiftyone()).count():>3}   {criterion}")

    fps = export.objects('kind == "pred" & match == "fp" & score > 0.8',
                         ["chain", "sample_index", "label", "score", "x_min", "y_min"]).to_pandas()
    print(f"\npandas: export.objects('kind == \"pred\" & match == \"fp\" & score > 0.8'), "
          f"{len(fps)} boxes, first 5:")
    print(_indent(fps.head().round(2).to_string(index=False)))
    per_chain = export.sql("SELECT chain, kind, match, count(*) AS boxes FROM objects "
                           "GROUP BY ALL ORDER BY ALL").to_pandas()
    print("\nDuckDB: SELECT chain, kind, match, count(*) FROM objects GROUP BY ALL:")
    print(_indent(per_chain.to_string(index=False)))
    from fiftyone import ViewField as F

    flagged = dataset.filter_labels("predictions", (F("eval") == "fp") & (F("confidence") > 0.8))
    print(f"\nFiftyOne: dataset.filter_labels('predictions', (F('eval') == 'fp') & "
          f"(F('confidence') > 0.8)) has {flagged.count('predictions.detections')} boxes in "
          f"{len(flagged)} samples (no evaluate_detections run: eval, eval_iou, eval_id are stored)")
    explained = export.to_pandas(columns=["sample_index", "drise_boxes"]).dropna()
    maps = [{"sample_index": r.sample_index, **{k: box[k] for k in ("field", "kind", "label", "score", "in_box")}}
            for r in explained.itertuples() for box in r.drise_boxes]
    print(f"\nD-RISE maps of {len(maps)} boxes in {len(explained)} benign images with a missed digit "
          f"(column drise_boxes; FiftyOne: sample['drise_gt_0'] explains ground_truth.detections[0]); "
          f"in_box = share of above-mean saliency inside the box; first 6:")
    if maps:
        import pandas as pd

        print(_indent(pd.DataFrame(maps).head(6).round(3).to_string(index=False)))
    print(f"\nOpen it in the FiftyOne App: armory-datasets app {result.export_dir}")


def _format(value: float | None, spec: str) -> str:
    """A run-level metric, or "n/a" when it is undefined (e.g. precision without predictions).

    Example:
        >>> _format(0.5, ".1%"), _format(None, ".1%")
        ('50.0%', 'n/a')
    """
    return "n/a" if value is None else format(value, spec)


def _indent(text: str) -> str:
    """Indent every line by two spaces.

    Example:
        >>> _indent("a")
        '  a'
    """
    return "\n".join("  " + line for line in text.splitlines())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the example.

    Example:
        >>> parse_args(["--quick"]).quick
        True
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", type=Path, default=DEFAULT_EXPORT_DIR,
                        help=f"export directory, replaced if it exists (default: {DEFAULT_EXPORT_DIR})")
    parser.add_argument("--quick", action="store_true",
                        help="a briefly trained detector and 16 canvases instead of 48 (a smoke test)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    main(export_dir=args.export_dir, quick=args.quick)
