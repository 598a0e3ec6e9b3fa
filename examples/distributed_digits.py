"""Digits under FGSM on several ranks: ``torchrun`` writes one export, rank 0 commits it.

Every rank trains the same tiny CNN (same seed, one thread: identical weights),
evaluates its shard of the held-out digits (batches ``batch_idx % world_size ==
rank``, with the ``sample_index`` values of a one-process run) in a benign and an FGSM
chain, and writes its own table parts as writer ``rank{rank}``; after a barrier rank 0
commits the export (manifest, FiftyOne dataset). Run it::

    torchrun --nproc-per-node 2 examples/distributed_digits.py --export-dir exports/digits-2ranks
    python examples/distributed_digits.py --export-dir exports/digits-1rank   # one process

Without torchrun (Slurm, Ray), start one process per shard with ``--shard RANK,WORLD``
and then run ``armory-datasets commit DIR`` once.

Example:
    >>> main("/tmp/digits-ranks", quick=True).counts  # doctest: +SKIP
    {'benign': 160, 'fgsm': 160}
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

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
from armory_datasets.export import ImageClassificationExporter, criteria
from armory_datasets.perturbations import FGSM



def load_batches(batch_size: int = 16, max_batches: int | None = None) -> list[tuple]:
    """The held-out digits as (normalised images, targets) batches, the same on every rank.

    Example:
        >>> batches = load_batches(max_batches=2)
        >>> len(batches), batches[0][0].shape
        (2, (16, 1, 32, 32))
    """
    split = train_test_split_digits(seed=0)
    images = normalize_digits(torch.from_numpy(split.test_images)).numpy()
    starts = range(0, len(images), batch_size)[:max_batches]
    return [(images[i:i + batch_size], split.test_labels[i:i + batch_size]) for i in starts]


def main(export_dir: str | Path, quick: bool = False, shard: tuple[int, int] | None = None,
         fiftyone: bool = True) -> EvaluationResult:
    """Evaluate (this rank's shard of) the digits and export every 5th batch and every miss.

    Example:
        >>> main("/tmp/digits-ranks", quick=True, fiftyone=False).export_dir  # doctest: +SKIP
        PosixPath('/tmp/digits-ranks')
    """
    torch.set_num_threads(1)
    distributed = shard is None and "WORLD_SIZE" in os.environ
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("gloo")
    try:
        model = train_classifier(seed=0, epochs=2 if quick else 5)
        evaluation = Evaluation("digits-distributed", "TinyDigitsCNN, benign and FGSM, sharded",
                                "armory_datasets examples")
        evaluation.use_dataset(load_batches(max_batches=10 if quick else None), scale="float",
                               mean=DIGITS_MEAN, std=DIGITS_STD, class_names=CLASS_NAMES)
        evaluation.use_model(model, name="TinyDigitsCNN")
        evaluation.add_chain("fgsm", [FGSM(model, epsilon=8 / 255)])
        chosen = criteria.parse("every_n_batches(5) | ~correct")
        evaluation.use_exporters(ImageClassificationExporter(criterion=chosen))
        return EvaluationEngine(evaluation, export_dir=export_dir, quiet=True,
                                fiftyone=fiftyone, shard=shard).run()
    finally:
        if distributed:
            dist.destroy_process_group()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options.

    Example:
        >>> parse_args(["--export-dir", "d", "--shard", "1,2"]).shard
        (1, 2)
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", required=True, help="the one directory all ranks write")
    parser.add_argument("--quick", action="store_true", help="2 epochs and 160 digits")
    parser.add_argument("--shard", type=lambda text: tuple(int(x) for x in text.split(",")),
                        help="RANK,WORLD_SIZE without torchrun (then: armory-datasets commit DIR)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    result = main(args.export_dir, quick=args.quick, shard=args.shard)
    rank = args.shard[0] if args.shard else int(os.environ.get("RANK", 0))
    print(f"rank {rank}: evaluated {result.counts['benign']} digits per chain; export "
          f"{result.export_dir} (FiftyOne dataset {result.dataset_name!r})")
