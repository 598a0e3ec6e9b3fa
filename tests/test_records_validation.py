"""Malformed inputs fail up front with a clear ValueError and leave nothing on disk; whatever
passes per batch finishes ``close()`` with FiftyOne on.

Each case is a user's own loop on a fresh directory: the error must name the field
(and the expected form), and the export directory must not exist afterwards (no
part, no manifest, no media).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from armory_datasets import criteria as C
from armory_datasets.data import Images, ImageClassificationBatch
from armory_datasets.export import ImageClassificationExporter
from armory_datasets.metrics import named_metric
from armory_datasets.store import ExportWriter, read_manifest


def batch(n: int = 2, **changes) -> ImageClassificationBatch:
    rng = np.random.default_rng(n)
    fields = dict(inputs=Images(rng.integers(0, 256, (n, 3, 4, 4), dtype=np.uint8)),
                  targets=rng.integers(0, 3, n), predictions=rng.normal(size=(n, 3)))
    fields.update(changes)
    return ImageClassificationBatch(**fields)


def loop(export_dir: Path, make_batches, criterion=None, name=None, evaluation="v", fiftyone=False):
    """Build the batches, then export them in the user's own loop."""
    exporter = ImageClassificationExporter(name=name, criterion=C.always() if criterion is None else criterion)
    with ExportWriter(export_dir, {"name": evaluation}, fiftyone=fiftyone) as writer:
        exporter.setup(writer=writer)
        for batch_idx, b in enumerate(make_batches()):
            exporter.export(batch_idx, b)
            writer.end_batch()
    return writer


brightness = named_metric("brightness", lambda b: b.inputs.to_uint8_hwc().mean(axis=(1, 2, 3)))

CASES = {
    "chain ..": (dict(make_batches=lambda: [batch(chain="..")]), r"chain: got '\.\.'; expected a name that is not only dots"),
    "chain NUL": (dict(make_batches=lambda: [batch(chain="a\x00b")]), r"chain: .*without NUL"),
    "chain 256 chars": (dict(make_batches=lambda: [batch(chain="c" * 256)]), r"chain: got a name of 256 bytes"),
    "chain slash": (dict(make_batches=lambda: [batch(chain="a/b")]), r"chain: got 'a/b'; expected a name without '/'"),
    "chain empty": (dict(make_batches=lambda: [batch(chain="")]), r"chain: got ''; expected a non-empty string"),
    "exporter ../": (dict(make_batches=lambda: [batch()], name="../../escape"), r"name: got '\.\./\.\./escape'"),
    "exporter $": (dict(make_batches=lambda: [batch()], name="$set"), r"name: got '\$set'"),
    "evaluation ..": (dict(make_batches=lambda: [batch()], evaluation=".."), r"evaluation_info\['name'\]: got '\.\.'"),
    "evaluation 1600 chars": (dict(make_batches=lambda: [batch()], evaluation="e" * 1600),
                              r"evaluation_info\['name'\]: got a name of 1600 bytes"),
    "metadata key NUL": (dict(make_batches=lambda: [batch(metadata={"a\x00": [1, 2]})]), r"metadata\['a\\x00'\]: .*NUL"),
    "metadata key $": (dict(make_batches=lambda: [batch(metadata={"$where": [1, 2]})]), r"metadata\['\$where'\]"),
    "metadata key dot": (dict(make_batches=lambda: [batch(metadata={"a.b": [1, 2]})]), r"metadata\['a\.b'\]: .*without '\.'"),
    "metadata key _": (dict(make_batches=lambda: [batch(metadata={"_id": [1, 2]})]), r"metadata\['_id'\]: .*starting with '_'"),
    "metadata key vocabulary": (dict(make_batches=lambda: [batch(metadata={"target": [1, 2]})]), r"metadata\['target'\]"),
    "metadata key FiftyOne field": (dict(make_batches=lambda: [batch(metadata={"filepath": [1, 2]})]),
                                    r"metadata\['filepath'\]: .*FiftyOne's own fields"),
    "metadata key _path": (dict(make_batches=lambda: [batch(metadata={"source_path": ["a", "b"]})]),
                           r"metadata\['source_path'\]: .*not ending in '_path'"),
    "metadata key too long": (dict(make_batches=lambda: [batch(metadata={"k" * 101: [1, 2]})]), r"name of 101 bytes"),
    "metadata mixed types": (dict(make_batches=lambda: [batch(metadata={"m": [1, "one"]})]),
                             r"column 'm': sample 1 is str, sample 0 int"),
    "metadata unstorable": (dict(make_batches=lambda: [batch(metadata={"m": [object(), object()]})]),
                            r"column 'm': .*expected values of type one kind"),
    "metadata wrong length": (dict(make_batches=lambda: [batch(metadata={"m": [1, 2, 3]})]),
                              r"metadata\['m'\]: got 3 values; expected 2"),
    "metadata dict key $": (dict(make_batches=lambda: [batch(metadata={"m": [{"$x": 1}, {"$x": 2}]})]),
                            r"column 'm' key '\$x'"),
    "metadata type changes": (dict(make_batches=lambda: [batch(metadata={"m": [1, 2]}), batch(metadata={"m": ["a", "b"]})]),
                              r"column 'm': .*expected values of type int64"),
    "batch metadata 17 MB": (dict(make_batches=lambda: [batch(batch_metadata={"notes": "x" * (17 << 20)})]),
                             r"record of chain 'benign' at position 0: about 17 MiB \(column 'notes'"),
    "batch metadata key $": (dict(make_batches=lambda: [batch(batch_metadata={"a$": 1})]), r"batch_metadata\['a\$'\]"),
    "batch metadata unstorable": (dict(make_batches=lambda: [batch(batch_metadata={"s": object()})]), r"column 's': "),
    "metadata twice": (dict(make_batches=lambda: [batch(metadata={"m": [1, 2]}, batch_metadata={"m": 3})]),
                       r"batch_metadata\['m'\]: name already used"),
    "perturbation field dot": (dict(make_batches=lambda: [batch(perturbations={"fg.sm": {"eps": 0.1}})]),
                               r"perturbations\['fg\.sm'\]\['eps'\]: got 'fg\.sm_eps'; expected a column name without '\.'"),
    "class name NUL": (dict(make_batches=lambda: [batch(class_names=["a", "b\x00", "c"])]), r"class_names\[1\]: .*NUL"),
    "metric name $": (dict(make_batches=lambda: [batch(metrics={"m$": np.zeros(2)})]), r"metrics\['m\$'\]: got 'm\$'; expected a name without"),
    "metadata named like a criterion metric": (
        dict(make_batches=lambda: [batch(metadata={"brightness": [1.0, 2.0]})],
             criterion=C.when_metric_gt(brightness, 3)),
        r"metadata\['brightness'\]: 'brightness' is already a metric the criterion reads"),
    "empty batch": (dict(make_batches=lambda: [batch(0)]), r"inputs: an empty batch"),
    "criterion returns None": (dict(make_batches=lambda: [batch()], criterion=lambda i, b: None),
                               r"criterion: returned NoneType None; expected True/False"),
    "criterion returns floats": (dict(make_batches=lambda: [batch()], criterion=lambda i, b: [0.5]),
                                 r"criterion: returned a sequence holding 0\.5"),
    "criterion position out of range": (dict(make_batches=lambda: [batch()], criterion=lambda i, b: [5]),
                                        r"criterion: positions \[5\] outside a batch of 2"),
    "criterion unknown column": (dict(make_batches=lambda: [batch()], criterion=C.col("nope") > 1),
                                 r"criterion nope > 1: reads \['nope'\], which these records do not have"),
    "criterion of the wrong type": (dict(make_batches=lambda: [batch()], criterion=C.parse("target == 'cat'")),
                                    r'criterion target == "cat": cannot be applied to these records '
                                    r"\(target int64\)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_input_is_refused_before_anything_is_written(tmp_path, case):
    options, match = CASES[case]
    export_dir = tmp_path / "e"
    with pytest.raises(ValueError, match=match):
        loop(export_dir, **options)
    if case == "metadata type changes":  # the first batch is complete; the second left nothing
        assert not list((export_dir / "table").glob("*.tmp")) and len(list((export_dir / "media").rglob("*.png"))) == 2
        return
    assert not export_dir.exists(), sorted(p.name for p in export_dir.rglob("*"))


def test_at_least_25_malformed_inputs():
    assert len(CASES) >= 25


VALID = {"chain": ["benign", "a b", "é-名", "c" * 100], "exporter": ["clf", "Ünï", "e" * 100],
         "evaluation": ["eval", "an evaluation", "v" * 100], "key": ["site", "ключ", "k" * 100],
         "batch_key": ["camera", "カメラ", "b" * 100], "class_name": ["cat", "t-shirt/top", "$", "名"]}
weird = st.text(st.characters(codec="utf-8"), min_size=0, max_size=12) | st.sampled_from(
    ["..", ".", "a.b", "$x", "x$", "_x", "a/b", "id", "tags", "target", "x_path", "n" * 120])
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
           | st.text(max_size=8) | st.sampled_from(["\x00", "x" * (9 << 20)]))
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(weird | st.sampled_from(["a", "b"]), scalars,
                                                                    max_size=2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_whatever_passes_per_batch_finishes_close_with_fiftyone(data):
    names = {field: data.draw(st.sampled_from(options), label=field) for field, options in VALID.items()}
    odd = data.draw(st.sampled_from([None, None, *VALID]), label="odd name")
    if odd is not None:
        names[odd] = data.draw(weird, label=odd)
    per_sample = data.draw(st.lists(values, min_size=2, max_size=2), label="metadata values")
    constant = data.draw(values, label="batch metadata value")
    with tempfile.TemporaryDirectory() as directory:
        export_dir = Path(directory) / "e"
        writer = None
        try:
            exporter = ImageClassificationExporter(name=names["exporter"], criterion=C.always())
            writer = ExportWriter(export_dir, {"name": names["evaluation"]})
            exporter.setup(writer=writer)
            b = batch(chain=names["chain"], metadata={names["key"]: per_sample},
                      batch_metadata={names["batch_key"]: constant},
                      class_names=[names["class_name"], "b", "c"])
            exporter.export(0, b)
            writer.end_batch()
        except ValueError as error:
            if writer is not None:
                writer.abort()
            event(f"refused per batch: {str(error)[:40]}")
            return  # refused per batch, with a ValueError: fine
        event("accepted: closed with FiftyOne")
        writer.close()  # accepted per batch: close must finish, FiftyOne included
        manifest = read_manifest(export_dir)
        assert manifest["status"] == "complete" and manifest["counts"]["records"] == 2
        from armory_datasets.database import import_fiftyone

        dataset = import_fiftyone().load_dataset(manifest["fiftyone"]["dataset"])
        assert dataset.count() == 2
        dataset.delete()
