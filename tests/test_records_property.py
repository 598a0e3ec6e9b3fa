"""Export time equals query time on the real write path, the way users drive it.

For random criteria and random batch splits (a short last batch, no ``global_indices``,
two chains, batch_idx restarting per chain), the exporter in the user's own loop writes
exactly the records that

* an independent numpy evaluation of the criterion selects on the same samples (batches
  given their true global indices and the metrics at the exporter's threshold),
* pyarrow and DuckDB select from an export of every sample,
* FiftyOne's ``match`` selects from that export's dataset,

for the classification exporter and for the detection exporter at a non-default
``score_threshold`` (object criteria ``any``/``all``/``count`` of boxes included).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.dataset as ds
from criteria_cases import batch_sizes, criteria_strategy, upstream_leaves
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from armory_datasets import criteria as C
from armory_datasets import metrics
from armory_datasets.criteria import nodes as N
from armory_datasets.data import Images, ImageClassificationBatch, ObjectDetectionBatch, Objects
from armory_datasets.export import ImageClassificationExporter, ObjectDetectionExporter
from armory_datasets.detection.columns import matched_columns
from armory_datasets.store import ExportWriter

CHAINS = ("benign", "fgsm")
THRESHOLD = 0.3
IOU_THRESHOLD = 0.4  # not one of COCO's ten: matched apart from the run's AP
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def classification_batches(seed: int, sizes: list[int], chain: str) -> list[ImageClassificationBatch]:
    rng = np.random.default_rng([seed, len(chain)])
    batches = []
    for n in sizes:
        targets = rng.integers(0, 10, n)
        logits = rng.normal(size=(n, 10))
        logits[np.arange(n), targets] += np.where(rng.random(n) < 0.6, 4.0, 0.0)
        score = np.round(rng.uniform(-1, 1, n), 1)
        score[rng.random(n) < 0.15] = np.nan
        batches.append(ImageClassificationBatch(
            Images(rng.integers(0, 256, (n, 1, 3, 3), dtype=np.uint8)), targets, logits, chain=chain,
            metadata={"score": score, "split": list(rng.choice(["train", "test", "val"], n))}))
    return batches


def random_objects(rng, k: int, scores: bool) -> Objects:
    x = np.sort(rng.integers(0, 12, (k, 2)), axis=1) + [0, 2]
    y = np.sort(rng.integers(0, 12, (k, 2)), axis=1) + [0, 2]
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    return Objects(boxes, rng.integers(0, 2, k), np.round(rng.uniform(0, 1, k), 2) if scores else None)


def detection_batches(seed: int, sizes: list[int], chain: str) -> list[ObjectDetectionBatch]:
    rng = np.random.default_rng([seed, len(chain), 1])
    batches = []
    for n in sizes:
        truth = [random_objects(rng, int(rng.integers(0, 3)), False) for _ in range(n)]
        # predictions near the truth, so precision and recall take many values
        predictions = [Objects(np.concatenate([t.boxes, random_objects(rng, 1, False).boxes]),
                               np.concatenate([t.labels, [0]]), np.round(rng.uniform(0, 1, len(t) + 1), 2))
                       for t in truth]
        batches.append(ObjectDetectionBatch(Images(np.zeros((n, 1, 16, 16), np.uint8)), truth,
                                            predictions, chain=chain))
    return batches


def own_loop(export_dir: Path, exporter, per_chain: dict[str, list], fiftyone: bool = False) -> set[str]:
    """The user's loop: batch_idx from 0 in each chain, no global indices; record keys written."""
    with ExportWriter(export_dir, {"name": "prop"}, fiftyone=fiftyone) as writer:
        exporter.setup(writer=writer)
        for batch_idx in range(len(per_chain[CHAINS[0]])):
            for chain in CHAINS:
                exporter.export(batch_idx, per_chain[chain][batch_idx])
            writer.end_batch()
        exporter.close()
    return set(ds.dataset(export_dir / "table").to_table(columns=["record_key"]).column(0).to_pylist())


def numpy_keys(criterion, per_chain: dict[str, list], threshold: float | None,
               iou_threshold: float = 0.5) -> set[str]:
    """The numpy evaluator on each batch with its true global indices (and detection metrics
    at the exporter's threshold): an oracle independent of the record builder."""
    keys = set()
    for chain, batches in per_chain.items():
        offset = 0
        for batch_idx, batch in enumerate(batches):
            indices = np.arange(offset, offset + len(batch))
            offset += len(batch)
            known = {}
            if threshold is not None:
                t, i = threshold, iou_threshold
                for m in (metrics.NumPredictions(score_threshold=t), metrics.MeanIoU(i, t),
                          metrics.Precision(i, t), metrics.Recall(i, t)):
                    known[m.name] = m(batch)
                matched = matched_columns(batch.targets, [p.above(threshold) for p in batch.predictions],
                                          iou_threshold)
                for name, objects in (("ground_truth_objects", matched.ground_truth),
                                      ("predicted_objects", matched.predicted)):
                    known[name] = np.empty(len(batch), dtype=object)
                    known[name][:] = objects.to_pylist()
                known.update(tp=matched.tp, fp=matched.fp, fn=matched.fn)
            oracle = replace(batch, global_indices=indices, metrics=known)
            keys.update(f"{chain}/{indices[p]}" for p in np.flatnonzero(criterion.mask(chain, batch_idx, oracle)))
    return keys


def query_keys(export_dir: Path, criterion) -> tuple[set[str], set[str]]:
    table = ds.dataset(export_dir / "table").to_table()
    arrow = set(table.filter(criterion.arrow_mask(table)).column("record_key").to_pylist())
    sql = f"SELECT record_key FROM read_parquet('{export_dir / 'table'}/*.parquet') WHERE {criterion.to_sql()}"
    return arrow, {row[0] for row in duckdb.sql(sql).fetchall()}


DETECTION_COLUMNS = {"num_targets": st.integers(-1, 3), "num_predictions": st.integers(-1, 4),
                     "mean_iou": st.sampled_from([0.0, 0.5, 0.9, 1.0]),
                     "precision": st.sampled_from([0.0, 0.3, 0.5, 0.67, 1.0]),
                     "recall": st.sampled_from([0.0, 0.5, 1.0]),
                     "tp": st.integers(0, 2), "fp": st.integers(0, 2), "fn": st.integers(0, 2)}


@st.composite
def detection_comparisons(draw) -> N.Criterion:
    column = draw(st.sampled_from(sorted(DETECTION_COLUMNS)))
    return N.Compare(draw(st.sampled_from(N.COMPARE_OPS)), N.Field(column),
                     N.Literal(draw(DETECTION_COLUMNS[column])))


OBJECT_CRITERIA = st.sampled_from([C.parse(text) for text in (
    "any(predicted_objects, score > 0.6)", "all(predicted_objects, label == 0)",
    "count(ground_truth_objects, label == 1) >= 1", "count(predicted_objects) > 2",
    'any(predicted_objects, score > 0.6 & match == "fp")', 'all(ground_truth_objects, match == "tp")',
    'count(ground_truth_objects, label == 1 & match == "fn") >= 1',
    "any(predicted_objects, iou > 0.45 & matched_index == 0)")])


def detection_criteria():
    leaves = st.one_of(upstream_leaves(), detection_comparisons(), OBJECT_CRITERIA)
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda cs: N.all_of(*cs)),
        st.lists(inner, min_size=2, max_size=3).map(lambda cs: N.any_of(*cs)),
        inner.map(N.Not)), max_leaves=5)


@settings(max_examples=60, **SETTINGS)
@given(seed=st.integers(0, 2**16), sizes=batch_sizes(), criterion=criteria_strategy())
def test_classification_own_loop_equals_numpy_pyarrow_duckdb(seed, sizes, criterion):
    per_chain = {chain: classification_batches(seed, sizes, chain) for chain in CHAINS}
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        exported = own_loop(root / "chosen", ImageClassificationExporter(criterion=criterion), per_chain)
        own_loop(root / "all", ImageClassificationExporter(criterion=C.always()), per_chain)
        arrow, sql = query_keys(root / "all", criterion)
    assert exported == numpy_keys(criterion, per_chain, None), str(criterion)
    assert exported == arrow == sql, str(criterion)


@settings(max_examples=40, **SETTINGS)
@given(seed=st.integers(0, 2**16), sizes=batch_sizes(), criterion=detection_criteria())
def test_detection_at_a_non_default_threshold_equals_numpy_pyarrow_duckdb(seed, sizes, criterion):
    per_chain = {chain: detection_batches(seed, sizes, chain) for chain in CHAINS}
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        exported = own_loop(root / "chosen", ObjectDetectionExporter(score_threshold=THRESHOLD, iou_threshold=IOU_THRESHOLD,
                                                                     criterion=criterion), per_chain)
        own_loop(root / "all", ObjectDetectionExporter(score_threshold=THRESHOLD, iou_threshold=IOU_THRESHOLD, criterion=C.always()),
                 per_chain)
        arrow, sql = query_keys(root / "all", criterion)
    assert exported == numpy_keys(criterion, per_chain, THRESHOLD, IOU_THRESHOLD), str(criterion)
    assert exported == arrow == sql, str(criterion)


@settings(max_examples=8, **SETTINGS)
@given(seed=st.integers(0, 2**16), sizes=batch_sizes(), criterion=criteria_strategy(),
       detection=st.booleans(), data=st.data())
def test_own_loop_equals_fiftyone_match(seed, sizes, criterion, detection, data):
    from armory_datasets.database import import_fiftyone

    fo = import_fiftyone()
    if detection:
        criterion = data.draw(detection_criteria())
        per_chain = {chain: detection_batches(seed, sizes, chain) for chain in CHAINS}
        make = lambda c: ObjectDetectionExporter(score_threshold=THRESHOLD, iou_threshold=IOU_THRESHOLD, criterion=c)  # noqa: E731
    else:
        per_chain = {chain: classification_batches(seed, sizes, chain) for chain in CHAINS}
        make = lambda c: ImageClassificationExporter(criterion=c)  # noqa: E731
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        exported = own_loop(root / "chosen", make(criterion), per_chain)
        own_loop(root / "all", make(C.always()), per_chain, fiftyone=True)
        from armory_datasets.store import read_manifest

        dataset = fo.load_dataset(read_manifest(root / "all")["fiftyone"]["dataset"])
        matched = set(dataset.match(criterion.to_fiftyone()).values("record_key"))
        dataset.delete()
    assert exported == matched, str(criterion)
