"""Object-level detection benchmark: ratios measured side by side in one run, on one thread.

1. Cost of matching and the objects table. A detection export of 64x64 images with 20
   ground-truth and 20 predicted boxes per image (``ObjectDetectionExporter`` +
   ``ExportWriter``, PNGs and Parquet, FiftyOne off so nothing else dilutes the ratio),
   against the same export with the per-box COCO matching, the run's AP and the
   objects table taken out (the boxes stored without match fields, as table v1 did).
   Marginal cost per sample, (T(2n) - T(n)) / n. Target: at most 1.2x.
2. ``open_export(d).objects(where=...)`` on 1,000,000 boxes (25,000 records of 20 + 20 boxes
   in a hand-built export), against pandas reading the objects table whole, then
   filtering. Target: at least 5x faster.

Each figure is the best of 3 rounds. Run: ``python benchmarks/objects_bench.py``
(``--quick`` shrinks the sizes for a smoke run; its figures are not the targets').
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.timing import best_of  # noqa: E402

BOXES = 20
WHERE = 'kind == "pred" & score > 0.8 & match == "fp"'


def detection_batches(n: int, batch_size: int = 64, seed: int = 0) -> list:
    """64x64 images with BOXES ground-truth boxes and as many jittered, scored predictions."""
    from armory_datasets.data import Images, ObjectDetectionBatch, Objects

    rng = np.random.default_rng(seed)
    batches = []
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        targets, predictions = [], []
        for _ in range(size):
            xy = rng.uniform(0, 48, size=(BOXES, 2))
            gt = np.hstack([xy, xy + rng.uniform(4, 16, size=(BOXES, 2))])
            pred = np.clip(gt + rng.normal(0, 2, size=gt.shape), 0, 64)
            pred = np.hstack([np.minimum(pred[:, :2], pred[:, 2:]), np.maximum(pred[:, :2], pred[:, 2:])])
            labels = rng.integers(0, 5, size=BOXES)
            targets.append(Objects(gt, labels))
            predictions.append(Objects(pred, np.where(rng.random(BOXES) < 0.2, (labels + 1) % 5, labels),
                                       rng.uniform(0.3, 1, size=BOXES)))
        images = Images(rng.integers(0, 255, size=(size, 3, 64, 64), dtype=np.uint8))
        batches.append(ObjectDetectionBatch(images, targets, predictions, global_indices=np.arange(start, start + size)))
    return batches


def unmatched_record_columns(exporter, batch):
    """The exporter's columns as before matching: boxes without match fields, no tp/fp/fn,
    metrics from the greedy matcher of ``armory_datasets.metrics``."""
    from armory_datasets import metrics
    from armory_datasets.detection.columns import objects_array

    t = exporter.score_threshold
    columns = {"ground_truth_objects": objects_array(batch.targets),
               "num_targets": metrics.NumTargets()(batch),
               "predicted_objects": objects_array([p.above(t) for p in batch.predictions])}
    for metric in (metrics.NumPredictions(score_threshold=t), metrics.MeanIoU(score_threshold=t),
                   metrics.Precision(score_threshold=t), metrics.Recall(score_threshold=t)):
        columns[metric.name] = metric(batch)
    return columns


def export_seconds(batches: list, root: Path, matched: bool) -> float:
    from armory_datasets.criteria import always
    from armory_datasets.export import ObjectDetectionExporter
    from armory_datasets.store import ExportWriter

    def run() -> None:
        directory = Path(tempfile.mkdtemp(dir=root))
        with ExportWriter(directory, {"name": "bench"}, fiftyone=False) as writer:
            exporter = ObjectDetectionExporter(criterion=always())
            exporter.setup(writer=writer)
            for batch_idx, batch in enumerate(batches):
                exporter.export(batch_idx, batch)
                writer.end_batch()
            exporter.close()

    if matched:
        return best_of(3, run)[0]
    from armory_datasets.export import object_detection

    with mock.patch.object(object_detection.ObjectDetectionExporter, "record_columns", unmatched_record_columns), \
            mock.patch.object(object_detection.ObjectDetectionExporter, "export",
                              lambda self, i, b: object_detection.Exporter.export(self, i, b)), \
            mock.patch("armory_datasets.store.objects_table.write_objects", lambda *a, **k: []):
        return best_of(3, run)[0]


def matching_cost(n: int, root: Path) -> tuple[float, float]:
    """Marginal ms per sample (T(2n) - T(n)) / n: (matched, unmatched)."""
    small, large = detection_batches(n), detection_batches(2 * n)
    out = []
    for matched in (True, False):
        t_small = export_seconds(small, root, matched)
        t_large = export_seconds(large, root, matched)
        out.append((t_large - t_small) / n * 1e3)
    return out[0], out[1]


def synthetic_export(records: int, root: Path) -> Path:
    """An export directory holding ``records`` records of BOXES + BOXES boxes (no media)."""
    import pyarrow as pa

    from armory_datasets.detection.columns import matched_columns
    from armory_datasets.schema import VOCABULARY
    from armory_datasets.store.manifest import new_manifest, write_manifest
    from armory_datasets.store.objects_table import write_objects
    from armory_datasets.store.parquet_writer import TABLE_METADATA

    export_dir = root / "synthetic"
    (export_dir / "table").mkdir(parents=True)
    manifest = new_manifest({"name": "synthetic"}, 1)
    rng = np.random.default_rng(1)
    chunk = 5000
    parts = []
    for k, start in enumerate(range(0, records, chunk)):
        batch = detection_batches(chunk, batch_size=chunk, seed=k)[0]
        matched = matched_columns(batch.targets, batch.predictions, 0.5)
        n = len(batch)
        index = np.arange(start, start + n)
        columns = {
            "export_id": pa.array([manifest["export_id"]] * n), "record_key": pa.array([f"benign/{i}" for i in index]),
            "chain": pa.array(["benign"] * n), "batch": pa.array(np.full(n, k)), "position": pa.array(np.arange(n)),
            "sample_index": pa.array(index), "image_path": pa.array([f"media/images/benign/{i:08d}.png" for i in index]),
            "width": pa.array(np.full(n, 64, np.int32)), "height": pa.array(np.full(n, 64, np.int32)),
            "ground_truth_objects": matched.ground_truth, "predicted_objects": matched.predicted,
            "tp": pa.array(matched.tp), "fp": pa.array(matched.fp), "fn": pa.array(matched.fn),
            "exporters": pa.array([["object_detection"]] * n),
            "score_noise": pa.array(rng.random(n)),
        }
        schema = pa.schema([VOCABULARY[c].field if c in VOCABULARY else pa.field(c, columns[c].type)
                            for c in columns]).with_metadata(TABLE_METADATA)
        table = pa.table(columns).cast(schema)
        path = export_dir / "table" / f"part-{k:05d}.parquet"
        import pyarrow.parquet as pq

        pq.write_table(table, path)
        parts.append(path)
    manifest["table"]["parts"] = [p.name for p in parts]
    manifest["dynamic_columns"] = [{"name": "score_noise", "arrow_type": "float64"}]
    manifest["objects"]["parts"] = write_objects(export_dir, parts, None)
    write_manifest(export_dir, manifest)
    return export_dir


def objects_query(records: int, root: Path) -> tuple[float, float, int]:
    import pandas as pd

    import armory_datasets

    export_dir = synthetic_export(records, root)
    export = armory_datasets.open_export(export_dir)

    def ours() -> int:
        return armory_datasets.open_export(export_dir).objects(WHERE).num_rows

    def pandas_all() -> int:
        frame = pd.read_parquet(export_dir / "objects")
        return int(((frame["kind"] == "pred") & (frame["score"] > 0.8) & (frame["match"] == "fp")).sum())

    t_ours, found = best_of(3, ours)
    t_pandas, expected = best_of(3, pandas_all)
    assert found == expected, (found, expected)
    return t_ours, t_pandas, export.objects_dataset.count_rows()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        n = 64 if args.quick else 512
        matched, unmatched = matching_cost(n, root)
        t_ours, t_pandas, boxes = objects_query(5_000 if args.quick else 25_000, root)
    ratio = matched / unmatched
    speedup = t_pandas / t_ours
    print(f"{'measurement':<62} {'figure':>12} {'target':>9}  met")
    print(f"{f'export cost per sample with matching, {BOXES}+{BOXES} boxes, 64x64 (ms)':<62} "
          f"{matched:>9.3f} ms {'':>9}")
    print(f"{'export cost per sample without matching (ms)':<62} {unmatched:>9.3f} ms {'':>9}")
    print(f"{'matching + objects table cost ratio':<62} {ratio:>11.2f}x {'<= 1.2x':>9}  {ratio <= 1.2}")
    print(f"{f'objects(where) on {boxes:,} boxes vs pandas read-all-then-filter':<62} "
          f"{speedup:>11.1f}x {'>= 5x':>9}  {speedup >= 5}  ({t_ours * 1e3:.0f} ms vs {t_pandas * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
