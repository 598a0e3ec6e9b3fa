"""One test per defect measured in issue 8, on the user's own loop (no engine).

Each failed on the main before the record builder (the comment says how) and passes now.
"""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds
import pytest

import armory_datasets
from armory_datasets import criteria as C
from armory_datasets.data import Images, ImageClassificationBatch, ObjectDetectionBatch, Objects
from armory_datasets.export import ImageClassificationExporter, ObjectDetectionExporter
from armory_datasets.metrics import named_metric
from armory_datasets.store import ExportWriter


def clf_batch(n: int, seed: int = 0, **changes) -> ImageClassificationBatch:
    rng = np.random.default_rng(seed)
    fields = dict(inputs=Images(rng.integers(0, 256, (n, 3, 5, 5), dtype=np.uint8)),
                  targets=rng.integers(0, 3, n), predictions=rng.normal(size=(n, 3)))
    fields.update(changes)
    return ImageClassificationBatch(**fields)


def own_loop(export_dir, exporter, batches, fiftyone=False):
    """What upstream's users write: the exporter as a context manager, batch_idx from 0."""
    exporter.export_dir = export_dir
    with ExportWriter(export_dir, {"name": "loop"}, fiftyone=fiftyone) as writer:
        exporter.setup(writer=writer)
        for batch_idx, batch in enumerate(batches):
            exporter.export(batch_idx, batch)
            writer.end_batch()
        exporter.close()
    return ds.dataset(export_dir / "table").to_table()


def test_first_n_samples_over_a_short_last_batch_without_global_indices(tmp_path):
    # old main: export time used batch_idx * len(batch) (4, 5 for the short batch): 8 records
    criterion = C.first_n_samples(6)
    batches = [clf_batch(4, 0), clf_batch(4, 1), clf_batch(2, 2)]
    table = own_loop(tmp_path / "e", ImageClassificationExporter(criterion=criterion), batches)
    assert sorted(table.column("sample_index").to_pylist()) == [0, 1, 2, 3, 4, 5]
    export = armory_datasets.open_export(tmp_path / "e")
    assert sorted(export.to_pandas(where=criterion)["sample_index"]) == [0, 1, 2, 3, 4, 5]


def test_criteria_reject_a_batch_without_global_indices_instead_of_guessing():
    # old main: batch_idx * len(batch) + position, which repeats indices after a short batch
    with pytest.raises(ValueError, match="sample_index: the batch has no global_indices"):
        C.first_n_samples(6).mask(2, clf_batch(2))
    assert C.first_n_samples(6).mask(2, clf_batch(2, global_indices=[8, 9])).tolist() == [False, False]


def detection_batch(n: int, seed: int) -> ObjectDetectionBatch:
    rng = np.random.default_rng(seed)
    truth = [Objects([[1, 1, 6, 6], [8, 8, 14, 14]], [0, 1]) for _ in range(n)]
    predictions = [Objects([[1, 1, 6, 6], [8, 8, 14, 14], [2, 9, 5, 13]], [0, 1, 0],
                           rng.uniform(0.2, 0.7, 3)) for _ in range(n)]
    return ObjectDetectionBatch(Images(np.zeros((n, 1, 16, 16), np.uint8)), truth, predictions)


def test_detection_criterion_reads_the_exporters_threshold(tmp_path):
    # old main: the criterion read precision at the default 0.5, the table stored it at 0.3
    criterion = C.col("precision") < 0.8
    batches = [detection_batch(5, seed) for seed in range(3)]
    table = own_loop(tmp_path / "e", ObjectDetectionExporter(score_threshold=0.3, criterion=criterion), batches)
    everything = own_loop(tmp_path / "all", ObjectDetectionExporter(score_threshold=0.3, criterion=C.always()),
                          batches)
    expected = everything.filter(criterion.to_arrow()).column("record_key").to_pylist()
    assert expected and len(expected) < everything.num_rows  # the test separates the thresholds
    assert sorted(table.column("record_key").to_pylist()) == sorted(expected)


@pytest.mark.parametrize("chain, match", [
    ("..", "not only dots"), (".", "not only dots"), ("a\x00b", "NUL"), ("x" * 256, "at most 100"),
    ("a/b", "without '/'"), ("a\\b", "without '/'"), ("$set", "'\\$'"),
])
def test_chain_names_that_lose_data_or_fail_late_are_refused_up_front(tmp_path, chain, match):
    # old main: '..' wrote into media/, NUL failed after mkdir, 256 chars failed with OSError
    with pytest.raises(ValueError, match=f"chain: .*{match}"):
        clf_batch(2, chain=chain)
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("name", ["../../escape", "a\x00", "", "x" * 101])
def test_exporter_names_are_checked(name):
    # old main: '../../escape' reached the manifest
    with pytest.raises(ValueError, match="name: "):
        ImageClassificationExporter(name=name)


@pytest.mark.parametrize("metadata, match", [
    ({"a\x00b": [1, 2]}, "NUL"), ({"$x": [1, 2]}, "'\\$'"), ({"a.b": [1, 2]}, "without '.'"),
])
def test_metadata_keys_fiftyone_refuses_fail_per_batch(metadata, match):
    # old main: accepted per batch, then the FiftyOne build failed at close
    with pytest.raises(ValueError, match=match):
        clf_batch(2, metadata=metadata)


def test_a_batch_metadata_value_too_big_for_a_document_fails_before_writing(tmp_path):
    # old main: the 17 MB string went to Parquet, then FiftyOne's insert failed at close
    exporter = ImageClassificationExporter(criterion=C.always())
    with ExportWriter(tmp_path / "e", {"name": "big"}) as writer:
        exporter.setup(writer=writer)
        with pytest.raises(ValueError, match=r"record of chain 'benign' at position 0: about 17 MiB"):
            exporter.export(0, clf_batch(2, batch_metadata={"notes": "x" * (17 << 20)}))
        exporter.export(0, clf_batch(2))
    assert writer.manifest["status"] == "complete" and writer.manifest["counts"]["records"] == 2


def test_a_long_evaluation_name_fails_before_writing(tmp_path):
    # old main: about 1,550 characters passed, then the FiftyOne build failed at close
    with pytest.raises(ValueError, match=r"evaluation_info\['name'\]: got a name of 1600 bytes"):
        ExportWriter(tmp_path / "e", {"name": "n" * 1600})
    assert not (tmp_path / "e").exists()


def test_an_export_selecting_nothing_closes_with_fiftyone(tmp_path):
    # old main: ValueError: Dataset has no field 'record_key' at close
    perfect = clf_batch(4, targets=[0, 1, 2, 0], predictions=np.eye(3)[[0, 1, 2, 0]] * 9)
    table = own_loop(tmp_path / "e", ImageClassificationExporter(criterion=C.parse("~correct")),
                     [perfect], fiftyone=True)
    assert table.num_rows == 0
    export = armory_datasets.open_export(tmp_path / "e")
    assert export.manifest["status"] == "complete"
    assert export.fiftyone().count() == 0
    assert len(export.fiftyone(where="~correct")) == 0


def test_metadata_named_like_a_criterion_metric_is_refused(tmp_path):
    # old main: the metadata column silently replaced the metric's values
    metric = named_metric("brightness", lambda b: b.inputs.to_uint8_hwc().mean(axis=(1, 2, 3)))
    exporter = ImageClassificationExporter(criterion=C.when_metric_gt(metric, 10))
    batch = clf_batch(2, metadata={"brightness": [0.0, 1.0]})
    with pytest.raises(ValueError, match=r"metadata\['brightness'\]: 'brightness' is already a metric"):
        own_loop(tmp_path / "e", exporter, [batch])


def test_mixed_type_metadata_is_refused_naming_the_column_and_sample(tmp_path):
    # old main: [1, "one", 2.5] was stored as the strings "1", "one", "2.5"
    batch = clf_batch(3, metadata={"label": [1, "one", 2.5]})
    with pytest.raises(ValueError, match=r"column 'label': sample 1 is str, sample 0 int; expected "
                                         r"values of one type"):
        own_loop(tmp_path / "e", ImageClassificationExporter(criterion=C.always()), [batch])
    assert not (tmp_path / "e" / "media").exists()


def test_a_metadata_column_ending_in_path_is_not_turned_into_a_heatmap():
    # old main: metadata 'source_path' became an fo.Heatmap field
    with pytest.raises(ValueError, match=r"metadata\['source_path'\]: .*not ending in '_path'"):
        clf_batch(2, metadata={"source_path": ["a.png", "b.png"]})


def test_an_empty_batch_is_refused():
    # old main: an empty batch passed silently
    with pytest.raises(ValueError, match="inputs: an empty batch"):
        clf_batch(0)


@pytest.mark.parametrize("result", [None, "0", 1.5, [0.5], [True, False], {"a": 1}])
def test_a_criterion_function_returning_something_else_is_refused(tmp_path, result):
    # old main: None gave a bare TypeError
    exporter = ImageClassificationExporter(criterion=lambda batch_idx, batch: result)
    with pytest.raises(ValueError, match="criterion: returned .*expected True/False or a list of"):
        own_loop(tmp_path / "e", exporter, [clf_batch(2)])
