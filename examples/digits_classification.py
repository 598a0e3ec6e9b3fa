"""Digits classification under FGSM: export every 5th batch and every misclassified sample.

Trains the tiny CNN of ``armory_datasets.demo.digits`` on scikit-learn's bundled digits
(seconds, one thread), evaluates the 450 held-out digits in two chains, ``benign`` and
``fgsm`` (epsilon 8/255), and exports the selected samples of both chains into one
directory (Parquet table, PNGs, manifest) and a FiftyOne dataset; the sampled digits 6
and 3 also get saliency maps (Captum gradients, Integrated Gradients and GradCAM, xaitk
sliding windows) as 16-bit PNG heatmaps the FiftyOne App draws. Then it queries the export with pandas,
DuckDB and FiftyOne.

Run it (``./dev example`` does this)::

    python examples/digits_classification.py                  # -> ./exports/digits-classification
    python examples/digits_classification.py --export-dir DIR --quick

Re-running replaces the previous export in the same directory (``overwrite=True``),
including its FiftyOne dataset; pass another ``--export-dir`` to keep both.

Example:
    >>> result = main(export_dir="/tmp/digits-classification", quiet=True, quick=True)  # doctest: +SKIP
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
from armory_datasets.demo.digits import (
    CLASS_NAMES,
    DIGITS_MEAN,
    DIGITS_STD,
    normalize_digits,
    train_classifier,
    train_test_split_digits,
)
from armory_datasets.engine import EvaluationEngine, EvaluationResult
from armory_datasets.evaluation import Evaluation
from armory_datasets.export import Exporter, ImageClassificationExporter, criteria
from armory_datasets.export.captum import CaptumImageClassificationExporter
from armory_datasets.export.xaitksaliency import XaitkSaliencyBlackboxImageClassificationExporter
from armory_datasets.metrics import Correct
from armory_datasets.perturbations import FGSM

DEFAULT_EXPORT_DIR = Path("exports/digits-classification")
SALIENCY_CLASSES = [6, 3]


def load_batches(batch_size: int = 16, max_batches: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The held-out digits as dataset items: normalised images, targets, their index in the 1,797.

    Example:
        >>> batches = load_batches(batch_size=16, max_batches=2)
        >>> len(batches), batches[0]["images"].shape, len(batches[0]["digits_index"])
        (2, (16, 1, 32, 32), 16)
    """
    split = train_test_split_digits(seed=seed)
    images = normalize_digits(torch.from_numpy(split.test_images)).numpy()
    starts = range(0, len(images), batch_size)[:max_batches]
    return [{"images": images[i:i + batch_size], "targets": split.test_labels[i:i + batch_size],
             "digits_index": split.test_indices[i:i + batch_size]} for i in starts]


def build_exporters(every_n_batches: int = 5, model: torch.nn.Module | None = None) -> list[Exporter]:
    """The evaluation's exporters; with ``model``, saliency exporters for its sampled 6s and 3s.

    Two exporters, one record per (chain, sample): the ``exporters`` column of a record
    lists every exporter that chose it. One exporter with ``criterion=every_n | ~correct``
    would export the same records. The saliency exporters add heatmap fields
    (``captum_saliency``, ``captum_ig``, ``captum_gradcam``, ``xaitk_slidingwindow_6``,
    ``xaitk_slidingwindow_3``) to the sampled records whose target is 6 or 3.

    Example:
        >>> [str(e.criterion) for e in build_exporters(5)]
        ['every_n_batches(5)', '~(correct == true)']
    """
    every_n = criteria.every_n_batches(every_n_batches)
    correct = criteria.when_metric_eq(Correct(), True)
    exporters: list[Exporter] = [
        ImageClassificationExporter(name="every_n_batches", criterion=every_n),
        ImageClassificationExporter(name="misclassified", criterion=~correct),
    ]
    if model is not None:
        explained = every_n & criteria.when_metric_in(criteria.batch_targets(), SALIENCY_CLASSES)
        exporters += [
            CaptumImageClassificationExporter(model=model, do_integrated_grads=True, layer=model.conv2,
                                              n_steps=50, criterion=explained),
            XaitkSaliencyBlackboxImageClassificationExporter(name="slidingwindow", model=model,
                                                             classes=SALIENCY_CLASSES, criterion=explained),
        ]
    return exporters


def main(export_dir: str | Path | None = None, quiet: bool = False, quick: bool = False,
         epsilon: float = 8 / 255, seed: int = 0) -> EvaluationResult:
    """Train, evaluate benign and FGSM chains, export, and (unless ``quiet``) print queries.

    ``quick``: 2 training epochs and the first 10 batches (160 digits) instead of 5 and all 29.

    Example:
        >>> main(export_dir="/tmp/digits", quiet=True, quick=True).counts  # doctest: +SKIP
        {'benign': 160, 'fgsm': 160}
    """
    torch.set_num_threads(1)
    started = time.perf_counter()
    model = train_classifier(seed=seed, epochs=2 if quick else 5)
    if not quiet:
        print(f"Trained TinyDigitsCNN in {time.perf_counter() - started:.1f} s")

    evaluation = Evaluation(
        name="digits-classification",
        description="TinyDigitsCNN on held-out sklearn digits, benign and under FGSM",
        author="armory_datasets examples",
    )
    evaluation.use_dataset(load_batches(max_batches=10 if quick else None, seed=seed),
                           name="sklearn-digits-test", scale="float", mean=DIGITS_MEAN,
                           std=DIGITS_STD, class_names=CLASS_NAMES)
    evaluation.use_model(model, name="TinyDigitsCNN")
    evaluation.add_chain("fgsm", [FGSM(model, epsilon=epsilon)])
    evaluation.use_exporters(build_exporters(every_n_batches=5, model=model))

    engine = EvaluationEngine(evaluation, export_dir=export_dir or DEFAULT_EXPORT_DIR,
                              quiet=quiet, overwrite=True)
    result = engine.run()
    if not quiet:
        print_report(result, epsilon)
        print(f"Done in {time.perf_counter() - started:.1f} s")
    return result


def print_report(result: EvaluationResult, epsilon: float) -> None:
    """Print the accuracies, where the export is, and pandas / DuckDB / FiftyOne queries on it.

    Example:
        >>> print_report(main(quiet=True, quick=True), 8 / 255)  # doctest: +SKIP
    """
    export = armory_datasets.open_export(result.export_dir)
    benign, fgsm = (result.metrics[c]["accuracy"] for c in ("benign", "fgsm"))
    print(f"Accuracy on {result.counts['benign']} held-out digits: benign {benign:.1%}, "
          f"fgsm (epsilon {epsilon:.3f}) {fgsm:.1%}")
    print(f"Exported {export.count()} records to {result.export_dir} "
          f"(FiftyOne dataset {result.dataset_name!r})")

    shown = ["chain", "sample_index", "target", "prediction", "confidence", "exporters"]
    misclassified = export.to_pandas(where="~correct", columns=shown)
    print(f"\npandas: export.to_pandas(where='~correct') -> {len(misclassified)} records; first 5:")
    print(_indent(misclassified.head().round(3).to_string(index=False)))

    confidently_wrong = criteria.parse("~correct & confidence > 0.9")
    where = confidently_wrong.to_sql()
    print(f"\nDuckDB: confidently wrong, WHERE {where}")
    print(_indent(export.sql(f"SELECT chain, count(*) AS records FROM samples WHERE {where} "
                             f"GROUP BY chain ORDER BY chain").to_pandas().to_string(index=False)))

    from armory_datasets.database import import_fiftyone

    dataset = import_fiftyone().load_dataset(result.dataset_name)
    matched = dataset.match(confidently_wrong.to_fiftyone()).count()
    print(f"\nFiftyOne: dataset.match(criterion.to_fiftyone()).count() = {matched} "
          f"(Parquet: {export.count(confidently_wrong)}; dataset: {len(dataset)} samples)")

    changed = export.compare_chains("benign", "fgsm").to_pandas()
    chains_per_sample = export.to_pandas(columns=["sample_index", "chain"]).groupby("sample_index").size()
    print(f"\nChanged by FGSM among the {(chains_per_sample == 2).sum()} digits exported in both chains "
          f"(export.compare_chains('benign', 'fgsm')): {len(changed)}; first 5:")
    columns = ["sample_index", "target", "prediction_benign", "prediction_fgsm", "confidence_fgsm"]
    print(_indent(changed[columns].head().round(3).to_string(index=False)))

    explained = export.to_pandas(where="captum_ig_path != ''", columns=[
        "chain", "sample_index", "target", "prediction", "captum_ig_path", "captum_ig_delta"])
    print(f"\nSaliency maps (16-bit PNGs) of {len(explained)} records, e.g. "
          f"export.to_pandas(where=\"captum_ig_path != ''\"); first 5:")
    print(_indent(explained.head().round(4).to_string(index=False)))
    heatmaps = dataset.exists("captum_ig")
    print(f"FiftyOne: dataset.exists('captum_ig').count() = {heatmaps.count()}; "
          f"armory_datasets.store.media.read_heatmap(path) gives the float32 map")

    print(f"\nOpen it in the FiftyOne App: armory-datasets app {result.export_dir}")


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
                        help="train 2 epochs and evaluate 10 batches (160 digits) instead of all 450")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    main(export_dir=args.export_dir, quick=args.quick)
