"""Throughput of ``torchrun --nproc-per-node 2`` against one process, on a compute-bound model.

Both runs evaluate the same random 64x64 images with a small CNN in a benign and an
FGSM chain (forward and backward passes dominate) and export every record into one
export (FiftyOne off, so no database is needed); each process uses one torch thread.
Measured side by side in one run: the time of ``EvaluationEngine.run()`` (for 2 ranks,
the slowest rank, commit included), without interpreter start-up. The 2-rank table
must equal the 1-process table (checked). Target on a 2-core machine: >= 1.6x.

Run: ``python benchmarks/distributed_bench.py`` (``./dev bench`` runs every benchmark).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCHES, BATCH_SIZE, SIZE = 24, 16, 64


def evaluation():  # noqa: ANN201 (torch is imported lazily)
    import numpy as np
    import torch

    from armory_datasets import criteria as C
    from armory_datasets.evaluation import Evaluation
    from armory_datasets.export import ImageClassificationExporter
    from armory_datasets.perturbations import FGSM

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    rng = np.random.default_rng(0)
    batches = [(rng.random((BATCH_SIZE, 3, SIZE, SIZE), dtype=np.float32),
                rng.integers(0, 10, BATCH_SIZE)) for _ in range(BATCHES)]
    result = Evaluation("distributed-bench", "compute-bound CNN", "benchmarks")
    result.use_dataset(batches, scale="float")
    result.use_model(model)
    result.add_chain("fgsm", [FGSM(model, epsilon=2 / 255)])
    result.use_exporters(ImageClassificationExporter(criterion=C.always()))
    return result


def run_rank(export_dir: str) -> None:
    """One torchrun rank: time run(), report it in {export_dir}.rank{rank}.json."""
    import torch
    import torch.distributed as dist

    from armory_datasets.engine import EvaluationEngine

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    engine = EvaluationEngine(evaluation(), export_dir=export_dir, quiet=True, fiftyone=False)
    dist.barrier()
    started = time.perf_counter()
    engine.run()
    seconds = time.perf_counter() - started
    Path(f"{export_dir}.rank{dist.get_rank()}.json").write_text(json.dumps({"seconds": seconds}))
    dist.destroy_process_group()


def one_process(export_dir: Path) -> float:
    import torch

    from armory_datasets.engine import EvaluationEngine

    torch.set_num_threads(1)
    engine = EvaluationEngine(evaluation(), export_dir=export_dir, quiet=True, fiftyone=False)
    started = time.perf_counter()
    engine.run()
    return time.perf_counter() - started


def two_ranks(export_dir: Path) -> float:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                    "--master-port", str(port), __file__, "--rank-run", str(export_dir)],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                    "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    return max(json.loads(Path(f"{export_dir}.rank{r}.json").read_text())["seconds"] for r in (0, 1))


def main() -> None:
    import pyarrow.dataset as ds

    with tempfile.TemporaryDirectory() as tmp:
        single = one_process(Path(tmp) / "one")
        double = two_ranks(Path(tmp) / "two")
        tables = [ds.dataset(Path(tmp) / name / "table", format="parquet").to_table()
                  .drop_columns(["export_id"]).sort_by("record_key") for name in ("one", "two")]
        assert tables[0].equals(tables[1]), "2 ranks wrote another table than 1 process"
        samples = 2 * BATCHES * BATCH_SIZE
    print(f"distributed_bench: {samples} records (2 chains), CNN {SIZE}x{SIZE} + FGSM; "
          f"1 process {single:.1f} s ({samples / single:.0f} records/s), 2 ranks {double:.1f} s "
          f"({samples / double:.0f} records/s): {single / double:.2f}x (target >= 1.6x); "
          f"tables equal; machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rank-run":
        run_rank(sys.argv[2])
    else:
        main()
