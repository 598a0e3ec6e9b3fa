"""Fine-tune the digits model on samples selected from an export, through ``torch_dataset``.

Reads the export of ``examples/digits_classification.py`` (made first when the
directory holds none), selects the misclassified FGSM samples with one criterion,
``chains(['fgsm']) & ~correct``, and fine-tunes the same TinyDigitsCNN (retrained
deterministically with the export's seed) on half of them, mixed with clean training
digits so it does not forget. It reports accuracy before and after on the samples it
trained on, on the held-out half, and on the clean held-out digits.

Run it::

    python examples/retrain_from_export.py                     # uses/creates ./exports/digits-classification
    python examples/retrain_from_export.py --export-dir DIR --quick

Example:
    >>> report = main(export_dir="/tmp/digits-classification", quick=True, quiet=True)  # doctest: +SKIP
    >>> report["trained"]["after"] > report["trained"]["before"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import armory_datasets
from armory_datasets.demo.digits import classifier_accuracy, normalize_digits, train_classifier, \
    train_test_split_digits

DEFAULT_EXPORT_DIR = Path("exports/digits-classification")
SELECTION = "chains(['fgsm']) & ~correct"


def ensure_export(export_dir: Path, quick: bool) -> Any:
    """Open the export in ``export_dir``, running the classification example first if it has none.

    Example:
        >>> ensure_export(Path("/tmp/digits-classification"), quick=True).chains  # doctest: +SKIP
        ['benign', 'fgsm']
    """
    if not (export_dir / "manifest.json").is_file():
        script = Path(__file__).resolve().parent / "digits_classification.py"
        spec = importlib.util.spec_from_file_location("digits_classification", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(export_dir=export_dir, quiet=True, quick=quick)
    return armory_datasets.open_export(export_dir)


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: torch.utils.data.Dataset) -> float:
    """Top-1 accuracy of ``model`` on a dataset of (normalised image, target) items.

    Example:
        >>> accuracy(model, export.torch_dataset("~correct", transform=normalize_digits))  # doctest: +SKIP
        0.0
    """
    model.eval()
    hits = total = 0
    for images, targets in torch.utils.data.DataLoader(data, batch_size=256):
        hits += int((model(images).argmax(1) == targets).sum())
        total += len(targets)
    return hits / total if total else float("nan")


def fine_tune(model: torch.nn.Module, selected: torch.utils.data.Dataset, clean: torch.utils.data.Dataset,
              epochs: int, seed: int) -> torch.nn.Module:
    """Fine-tune ``model`` (in place) on ``selected`` plus as many ``clean`` samples, with Adam.

    Example:
        >>> fine_tune(model, trained, clean, epochs=3, seed=0).training  # doctest: +SKIP
        False
    """
    generator = torch.Generator().manual_seed(seed)
    replay = torch.utils.data.Subset(clean, torch.randperm(len(clean), generator=generator)[:len(selected)].tolist())
    loader = torch.utils.data.DataLoader(torch.utils.data.ConcatDataset([selected, replay]), batch_size=32,
                                         shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for images, targets in loader:
            loss = F.cross_entropy(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def main(export_dir: str | Path | None = None, quick: bool = False, epochs: int = 8, seed: int = 0,
         quiet: bool = False) -> dict[str, dict[str, float]]:
    """Select, fine-tune, and report accuracies before/after (see the module docstring).

    ``quick`` matches the example's quick export (a model trained 2 epochs instead of 5).

    Example:
        >>> main(quick=True, quiet=True)["held_out"]  # doctest: +SKIP
        {'samples': 15, 'before': 0.0, 'after': 0.53}
    """
    torch.set_num_threads(1)
    export = ensure_export(Path(export_dir or DEFAULT_EXPORT_DIR), quick)
    selected = export.torch_dataset(where=SELECTION, transform=normalize_digits)
    if len(selected) < 2:
        raise ValueError(f"{export.path}: {len(selected)} records match {SELECTION!r}; expected at "
                         f"least 2 to fine-tune on one half and test on the other")
    odd = np.asarray(selected.records.column("sample_index")) % 2 == 1
    trained = torch.utils.data.Subset(selected, np.flatnonzero(~odd).tolist())
    held_out = torch.utils.data.Subset(selected, np.flatnonzero(odd).tolist())
    split = train_test_split_digits(seed=seed)
    clean_train = torch.utils.data.TensorDataset(normalize_digits(torch.from_numpy(split.train_images)),
                                                 torch.from_numpy(split.train_labels))

    model = train_classifier(seed=seed, epochs=2 if quick else 5)  # the model the export evaluated
    sets = {"trained": trained, "held_out": held_out}
    report = {name: {"samples": len(data), "before": accuracy(model, data)} for name, data in sets.items()}
    report["clean_test"] = {"samples": len(split.test_labels),
                            "before": classifier_accuracy(model, split.test_images, split.test_labels)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fine_tune(model, trained, clean_train, epochs, seed)
    for name, data in sets.items():
        report[name]["after"] = accuracy(model, data)
    report["clean_test"]["after"] = classifier_accuracy(model, split.test_images, split.test_labels)
    if not quiet:
        print(f"{len(selected)} records of {export.path} match {SELECTION!r}; fine-tuning on "
              f"{len(trained)} (even sample_index) with as many clean training digits, {epochs} epochs")
        for name, row in report.items():
            print(f"  accuracy on {name:10} ({row['samples']:3} samples): "
                  f"before {row['before']:6.1%}  after {row['after']:6.1%}")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the example.

    Example:
        >>> parse_args(["--quick"]).quick
        True
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", type=Path, default=DEFAULT_EXPORT_DIR,
                        help=f"export to read; created by digits_classification.py if missing "
                             f"(default: {DEFAULT_EXPORT_DIR})")
    parser.add_argument("--quick", action="store_true",
                        help="match the example's --quick export (model trained 2 epochs)")
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs (default: 8)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    main(export_dir=args.export_dir, quick=args.quick, epochs=args.epochs)
