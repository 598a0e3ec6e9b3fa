"""Digits detection: export boxes of every 3rd batch and of every image with a missed digit.

Trains the tiny sliding-window detector of ``armory_datasets.demo.digits`` on 64x96
canvases of pasted training digits, evaluates 48 canvases of held-out digits in two
chains, ``benign`` and ``noise`` (Gaussian pixel noise, a perturbation written here in a
few lines), and exports the selected images with their ground-truth and predicted boxes
(scores >= 0.5) and per-image detection metrics into one directory and a FiftyOne dataset.
Benign images with a missed digit also get a D-RISE saliency map for every true and
predicted box (16-bit PNG heatmaps linked to their boxes).

Run it::

    python examples/digits_detection.py                  # -> ./exports/digits-detection
    python examples/digits_detection.py --export-dir DIR --quick

Re-running replaces the previous export in the same directory (``overwrite=True``),
including its FiftyOne dataset; pass another ``--export-dir`` to keep both.

Example:
    >>> result = main(export_dir="/tmp/digits-detection", quiet=True, quick=True)  # doctest: +SKIP
    >>> sorted(result.metrics)  # doctest: +SKIP
    ['benign', 'noise']
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

import armory_datasets
from armory_datasets.demo.digits import CLASS_NAMES, make_detection_canvases, train_detector
from armory_datasets.engine import EvaluationEngine, EvaluationResult
from armory_datasets.evaluation import Evaluation
from armory_datasets.export import Exporter, ObjectDetectionExporter, criteria
from armory_datasets.export.drise import DRiseSaliencyObjectDetectionExporter
from armory_datasets.metrics import Recall

DEFAULT_EXPORT_DIR = Path("exports/digits-detection")
SCORE_THRESHOLD = 0.5


class GaussianNoise:
    """A perturbation: add N(0, sigma) noise to 0..1 images (seeded, so runs repeat).

    Any object with ``name``, ``params()`` and ``perturb(images_unit, targets, normalize)``
    can be a chain's perturbation; ``params()`` become ``noise_sigma`` in the table.

    Example:
        >>> noisy = GaussianNoise(0.2).perturb(torch.zeros(1, 1, 4, 4), None, None)
        >>> noisy.shape, bool(noisy.min() >= 0)
        (torch.Size([1, 1, 4, 4]), True)
    """

    name = "noise"

    def __init__(self, sigma: float, seed: int = 0) -> None:
        self.sigma = sigma
        self.generator = torch.Generator().manual_seed(seed)

    def params(self) -> dict[str, float]:
        return {"sigma": self.sigma}

    def perturb(self, images_unit: torch.Tensor, targets: Any, normalize: Any) -> torch.Tensor:
        noise = torch.randn(images_unit.shape, generator=self.generator) * self.sigma
        return (images_unit + noise.to(images_unit.device)).clamp(0.0, 1.0)


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


def build_exporters(every_n_batches: int = 3, detector: torch.nn.Module | None = None,
                    num_masks: int = 1000) -> list[Exporter]:
    """The evaluation's exporters; with ``detector``, D-RISE maps of benign images with a miss.

    One exporter with a combined criterion: every n-th batch, or any image where a digit
    was missed (recall < 1 at the exporter's score threshold). The D-RISE exporter adds
    ``drise_gt_{k}`` / ``drise_pred_{k}`` heatmaps (one per box of ``ground_truth_objects``
    / ``predicted_objects``) and the ``drise_boxes`` list to the benign records with a miss.

    Example:
        >>> [str(e.criterion) for e in build_exporters(3)]
        ['every_n_batches(3) | recall < 1.0']
    """
    every_n = criteria.every_n_batches(every_n_batches)
    missed = criteria.when_metric_lt(Recall(score_threshold=SCORE_THRESHOLD), 1.0)
    exporters: list[Exporter] = [ObjectDetectionExporter(score_threshold=SCORE_THRESHOLD,
                                                         criterion=every_n | missed)]
    if detector is not None:
        exporters.append(DRiseSaliencyObjectDetectionExporter(
            model=detector, num_classes=len(CLASS_NAMES), num_masks=num_masks, seed=0,
            score_threshold=SCORE_THRESHOLD, criterion=missed & criteria.chains(["benign"])))
    return exporters


def main(export_dir: str | Path | None = None, quiet: bool = False, quick: bool = False,
         sigma: float = 0.2, seed: int = 0) -> EvaluationResult:
    """Train the detector, evaluate benign and noise chains, export, and (unless ``quiet``) print.

    ``quick``: a detector trained on 100 canvases, not 200 (it misses more digits),
    16 evaluated canvases instead of 48, and 300 D-RISE masks instead of 1000.

    Example:
        >>> main(export_dir="/tmp/digits-detection", quiet=True, quick=True).counts  # doctest: +SKIP
        {'benign': 16, 'noise': 16}
    """
    torch.set_num_threads(1)
    started = time.perf_counter()
    detector = train_detector(seed=seed, n_canvases=100 if quick else 200)
    if not quiet:
        print(f"Trained TinyDigitsDetector in {time.perf_counter() - started:.1f} s")

    evaluation = Evaluation(
        name="digits-detection",
        description="TinyDigitsDetector on 64x96 canvases of held-out digits, benign and noisy",
        author="armory_datasets examples",
    )
    evaluation.use_dataset(load_batches(n_canvases=16 if quick else 48), name="digits-canvases-test",
                           task="detection", scale="float", class_names=CLASS_NAMES)
    evaluation.use_model(detector, name="TinyDigitsDetector")
    evaluation.add_chain("noise", [GaussianNoise(sigma, seed=seed)])
    evaluation.use_exporters(build_exporters(every_n_batches=3, detector=detector,
                                             num_masks=300 if quick else 1000))

    engine = EvaluationEngine(evaluation, export_dir=export_dir or DEFAULT_EXPORT_DIR,
                              quiet=quiet, overwrite=True)
    result = engine.run()
    if not quiet:
        print_report(result, sigma)
        print(f"Done in {time.perf_counter() - started:.1f} s")
    return result


def print_report(result: EvaluationResult, sigma: float) -> None:
    """Print the run's detection metrics, per-image metrics, and the images with missed digits.

    Example:
        >>> print_report(main(quiet=True, quick=True), 0.2)  # doctest: +SKIP
    """
    for chain, label in (("benign", "benign"), ("noise", f"noise (sigma {sigma})")):
        m = result.metrics[chain]
        print(f"{label}: mean precision {_format(m['mean_precision'], '.1%')}, mean recall "
              f"{_format(m['mean_recall'], '.1%')}, mean IoU {_format(m['mean_iou'], '.2f')} "
              f"over {result.counts[chain]} canvases")
    export = armory_datasets.open_export(result.export_dir)
    print(f"Exported {export.count()} records to {result.export_dir} "
          f"(FiftyOne dataset {result.dataset_name!r})")

    per_image = ["chain", "sample_index", "num_targets", "num_predictions", "precision", "recall", "mean_iou"]
    metrics = export.to_pandas(columns=per_image).sort_values(["sample_index", "chain"])
    print("\nPer-image metrics, export.to_pandas(columns=[...]), first 6 by sample:")
    print(_indent(metrics.head(6).round(2).to_string(index=False)))

    missed = criteria.parse("recall < 1")
    where = missed.to_sql()
    print(f"\nDuckDB: images with a missed digit, WHERE {where}")
    print(_indent(export.sql(f"SELECT chain, count(*) AS images FROM samples WHERE {where} "
                             f"GROUP BY chain ORDER BY chain").to_pandas().to_string(index=False)))

    boxes = export.to_pandas(where=missed, columns=["chain", "sample_index", "recall",
                                                     "ground_truth_objects", "predicted_objects"])
    boxes["true_digits"] = boxes.pop("ground_truth_objects").map(_labels)
    boxes["detected_digits"] = boxes.pop("predicted_objects").map(_labels)
    print("\npandas: export.to_pandas(where='recall < 1') with the labels of its boxes, first 5:")
    print(_indent(boxes.head().round(2).to_string(index=False)))

    from armory_datasets.database import import_fiftyone

    dataset = import_fiftyone().load_dataset(result.dataset_name)
    print(f"\nFiftyOne: dataset.match(criterion.to_fiftyone()).count() = "
          f"{dataset.match(missed.to_fiftyone()).count()} (Parquet: {export.count(missed)}); "
          f"{dataset.count('ground_truth.detections')} ground-truth and "
          f"{dataset.count('predictions.detections')} predicted boxes in {len(dataset)} samples")
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


def _labels(objects: Any) -> list[int]:
    """The labels of a ``ground_truth_objects`` / ``predicted_objects`` value.

    Example:
        >>> _labels([{"label": 3, "x_min": 0.0}])
        [3]
    """
    return [int(o["label"]) for o in objects]


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
