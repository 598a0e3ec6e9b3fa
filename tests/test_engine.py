"""The engine with fake exporters and a fake writer (no store, no FiftyOne)."""

import numpy as np
import pytest
import torch

from armory_datasets import criteria as C
from armory_datasets.data import Images, ImageClassificationBatch, ObjectDetectionBatch, Objects
from armory_datasets.engine import EvaluationEngine
from armory_datasets.evaluation import Chain, DatasetAdapter, Evaluation
from armory_datasets.metrics import NumPredictions, named_metric

torch.set_num_threads(1)


class FakeWriter:
    def __init__(self, log):
        self.log = log

    def __enter__(self):
        self.log.append(("enter",))
        return self

    def __exit__(self, exc_type, exc, tb):
        self.log.append(("exit", exc_type))

    def end_batch(self):
        self.log.append(("end_batch",))

    def close(self):
        self.log.append(("close",))
        return "fiftyone-dataset"


class FakeExporter:
    def __init__(self, name, log, criterion=None):
        self.name, self.log, self.criterion = name, log, criterion
        self.batches = []

    def setup(self, writer=None):
        self.log.append(("setup", self.name, writer))

    def export(self, batch_idx, batch):
        batch.validate()
        self.log.append(("export", self.name, batch.chain, batch_idx))
        self.batches.append((batch_idx, batch))

    def close(self):
        self.log.append(("close", self.name))


class Shift:
    """A perturbation adding a constant to the unit images."""

    def __init__(self, amount, name="shift"):
        self.amount, self.name = amount, name
        self.seen_normalize = None

    def params(self):
        return {"amount": self.amount}

    def perturb(self, images_unit, targets, normalize):
        assert images_unit.dtype == torch.float32 and targets.dtype == torch.int64
        self.seen_normalize = normalize
        return (images_unit + self.amount).clamp(0, 1)


class Brightness(torch.nn.Module):
    """Logits [-b, b] where b is the mean model input: bright images are class 1."""

    def forward(self, x):
        b = x.mean(dim=(1, 2, 3))
        return torch.stack([-b, b], dim=1)


def digits_like(n=10, batch_size=4):
    """Uint8 images: sample i is filled with 20 * i; target 1 for bright ones (i >= 5)."""
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 20, 16).reshape(n, 1, 4, 4)
    targets = (np.arange(n) >= 5).astype(np.int64)
    return [(images[i:i + batch_size], targets[i:i + batch_size])
            for i in range(0, n, batch_size)]


def evaluation_with(exporters, chains=(("shift", [Shift(0.5)]),), **dataset_options):
    evaluation = Evaluation("toy", "a toy evaluation", "tests")
    evaluation.use_dataset(dataset_options.pop("data", None) or digits_like(),
                           name="toy", mean=dataset_options.pop("mean", None), **dataset_options)
    evaluation.use_model(Brightness())
    for name, perturbations in chains:
        evaluation.add_chain(name, perturbations)
    evaluation.use_exporters(exporters)
    return evaluation


def test_global_indices_count_a_short_last_batch_and_are_shared_by_chains():
    log = []
    exporter = FakeExporter("images", log)
    result = EvaluationEngine(evaluation_with(exporter), writer=FakeWriter(log), quiet=True).run()
    by_chain = {}
    for batch_idx, batch in exporter.batches:
        by_chain.setdefault(batch.chain, []).append((batch_idx, batch.global_indices.tolist()))
    assert list(by_chain) == ["benign", "shift"]
    for chain, records in by_chain.items():
        assert [i for i, _ in records] == [0, 1, 2]  # batch_idx restarts per chain
        assert [g for _, g in records] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert result.counts == {"benign": 10, "shift": 10}
    assert result.dataset_name == "fiftyone-dataset"


def test_dataset_provided_global_indices_are_kept():
    data = [{"images": np.zeros((2, 1, 2, 2), np.uint8), "targets": [0, 1],
             "global_indices": [100, 101], "site": ["a", "b"], "batch_metadata": {"camera": "c7"}}]
    exporter = FakeExporter("images", [])
    EvaluationEngine(evaluation_with(exporter, chains=(), data=data), writer=FakeWriter([]),
                     quiet=True).run()
    (_, batch), = exporter.batches
    assert batch.global_indices.tolist() == [100, 101]
    assert batch.column("site").tolist() == ["a", "b"] and batch.column("camera") == "c7"


def test_exporters_called_per_batch_per_chain_then_end_batch():
    log = []
    writer = FakeWriter(log)
    first, second = FakeExporter("a", log), FakeExporter("b", log)
    EvaluationEngine(evaluation_with([first, second]), writer=writer, quiet=True).run()
    assert log[:3] == [("enter",), ("setup", "a", writer), ("setup", "b", writer)]
    body = log[3:]
    expected = []
    for batch_idx in range(3):
        for chain in ("benign", "shift"):
            expected += [("export", "a", chain, batch_idx), ("export", "b", chain, batch_idx),
                         ("end_batch",)]
    assert body == expected + [("close", "b"), ("close", "a"), ("close",), ("exit", None)]


@pytest.mark.parametrize("form", ["single", "several", "iterable"])
def test_use_exporters_accepts_one_several_or_an_iterable(form):
    a, b = FakeExporter("a", []), FakeExporter("b", [])
    evaluation = Evaluation("e", "d", "a")
    if form == "single":
        evaluation.use_exporters(a)
        assert evaluation.exporters == [a]
    elif form == "several":
        evaluation.use_exporters(a, b)
        assert evaluation.exporters == [a, b]
    else:
        evaluation.use_exporters(iter([a, b]))
        assert evaluation.exporters == [a, b]


UNIT = torch.linspace(0, 1, 10).view(10, 1, 1, 1).repeat(1, 1, 2, 2)


def test_perturbations_metrics_and_aggregates():
    exporter = FakeExporter("images", [])
    shift = Shift(0.5)
    evaluation = evaluation_with(exporter, chains=(("shift", [shift]),), mean=0.5, std=0.25,
                                 data=[((UNIT - 0.5) / 0.25, torch.tensor([0] * 5 + [1] * 5))])
    evaluation.use_metrics(named_metric("pixel_sum", _pixel_sum))
    result = EvaluationEngine(evaluation, writer=FakeWriter([]), quiet=True).run()
    benign, shifted = (b for _, b in exporter.batches)
    # benign: mean normalised input > 0 exactly for unit values > 0.5 -> samples 5..9
    assert benign.column("prediction").tolist() == [0] * 5 + [1] * 5
    assert result.metrics["benign"]["accuracy"] == 1.0
    # shifted by +0.5 (clamped): every unit value >= 0.5; sample 4 (0.444 + 0.5) turns bright
    assert shifted.column("prediction").tolist() == [0] + [1] * 9
    assert result.metrics["shift"]["accuracy"] == pytest.approx(0.6)
    assert shifted.perturbations == {"shift": {"amount": 0.5}}
    assert shifted.column("shift_amount") == 0.5 and benign.perturbations == {}
    assert shift.seen_normalize.__self__ is benign.inputs  # the batch's own normalisation
    unit = shifted.inputs.to_unit_float_chw()
    assert torch.allclose(unit[:, 0, 0, 0], (torch.linspace(0, 1, 10) + 0.5).clamp(0, 1), atol=1e-6)
    np.testing.assert_allclose(shifted.metrics["pixel_sum"], unit.sum(dim=(1, 2, 3)).numpy(), rtol=1e-5)
    assert {"correct", "confidence", "pixel_sum"} <= set(shifted.metrics)
    assert result.metrics["shift"]["mean_pixel_sum"] == pytest.approx(float(unit.sum()) / 10, rel=1e-5)
    assert 0.5 < result.metrics["benign"]["mean_confidence"] < 1.0


def _pixel_sum(batch):
    return batch.inputs.to_unit_float_chw().sum(dim=(1, 2, 3))


def _darkness(batch):
    return 1.0 - batch.inputs.to_unit_float_chw().mean(dim=(1, 2, 3))


def test_metrics_read_by_criteria_are_recorded():
    criterion = C.when_metric_gt(named_metric("darkness", _darkness), 0.5) | C.batch_targets().isin([1])
    exporter = FakeExporter("images", [], criterion=criterion)
    EvaluationEngine(evaluation_with(exporter, chains=()), writer=FakeWriter([]), quiet=True).run()
    _, batch = exporter.batches[0]
    np.testing.assert_allclose(batch.metrics["darkness"], 1 - np.arange(4) * 20 / 255, rtol=1e-6)
    assert "target" not in batch.metrics  # a vocabulary column, read from the batch itself


def test_quiet_hides_the_progress_bar(capfd):
    EvaluationEngine(evaluation_with([]), quiet=True).run()
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    EvaluationEngine(evaluation_with([]), quiet=False).run()
    assert "3/3" in capfd.readouterr().err


def test_without_exporters_nothing_is_written():
    result = EvaluationEngine(evaluation_with([]), quiet=True).run()
    assert result.export_dir is None and result.dataset_name is None
    assert set(result.metrics) == {"benign", "shift"}


def test_failure_closes_exporters_and_tells_the_writer():
    log = []

    class Failing(FakeExporter):
        def export(self, batch_idx, batch):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        EvaluationEngine(evaluation_with(Failing("f", log)), writer=FakeWriter(log), quiet=True).run()
    assert log[-2:] == [("close", "f"), ("exit", RuntimeError)]
    assert ("close",) not in log


class BoxDetector(torch.nn.Module):
    """Predicts one box per image: the target box of image 0, nothing useful elsewhere."""

    def forward(self, x):
        return [{"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([i % 2]),
                 "scores": torch.tensor([0.9])} for i in range(len(x))]


def test_detection_batches_get_objects_and_detection_metrics():
    targets = [{"boxes": [[1, 1, 5, 5]], "labels": [0]}, Objects([[1, 1, 5, 5]], [0]),
               Objects(np.zeros((0, 4)), [])]
    evaluation = Evaluation("det", "boxes", "tests")
    evaluation.use_dataset([(np.zeros((3, 1, 8, 8), np.float32), targets)], task="detection",
                           class_names=["a", "b"])
    evaluation.use_model(BoxDetector())
    exporter = FakeExporter("objects", [])
    evaluation.use_exporters(exporter)
    result = EvaluationEngine(evaluation, writer=FakeWriter([]), quiet=True).run()
    (_, batch), = exporter.batches
    assert isinstance(batch, ObjectDetectionBatch) and isinstance(batch.predictions[0], Objects)
    np.testing.assert_allclose(batch.metrics["precision"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(batch.metrics["recall"], [1.0, 0.0, np.nan])
    assert batch.metrics["num_predictions"].tolist() == [1, 1, 1]
    assert result.metrics["benign"]["mean_recall"] == 0.5
    # a metric named like a built-in one replaces it
    evaluation.use_metrics(NumPredictions(score_threshold=0.95))
    EvaluationEngine(evaluation, writer=FakeWriter([]), quiet=True).run()
    assert exporter.batches[-1][1].metrics["num_predictions"].tolist() == [0, 0, 0]


def test_ready_batches_and_probability_models():
    ready = ImageClassificationBatch(Images(np.full((2, 1, 2, 2), 0.25, np.float32)), [0, 1])
    evaluation = Evaluation("p", "probabilities", "tests")
    evaluation.use_dataset([ready], class_names=["dark", "bright"])
    evaluation.use_model(torch.nn.Sequential(Brightness(), torch.nn.Softmax(dim=1)),
                         prediction_kind="probabilities")
    exporter = FakeExporter("x", [])
    evaluation.use_exporters([exporter])
    EvaluationEngine(evaluation, writer=FakeWriter([]), quiet=True).run()
    (_, batch), = exporter.batches
    assert batch.prediction_kind == "probabilities" and batch.class_names == ["dark", "bright"]
    np.testing.assert_allclose(batch.column("confidence"), [np.exp(0.25) / (np.exp(0.25) + np.exp(-0.25))] * 2,
                               rtol=1e-6)


def test_configuration_errors():
    evaluation = Evaluation("e", "d", "a")
    with pytest.raises(ValueError, match="no dataset"):
        EvaluationEngine(evaluation, quiet=True).run()
    evaluation.use_dataset([])
    with pytest.raises(ValueError, match="no model"):
        EvaluationEngine(evaluation, quiet=True).run()
    with pytest.raises(ValueError, match="chain 'benign' exists"):
        evaluation.add_chain("benign")
    with pytest.raises(ValueError, match="expected a perturbation"):
        evaluation.add_chain("bad", [object()])
    with pytest.raises(ValueError, match="used twice"):
        Chain("twice", [Shift(0.1), Shift(0.2)])
    with pytest.raises(ValueError, match="has no name"):
        evaluation.use_metrics(lambda batch: batch)
    with pytest.raises(ValueError, match="expected a batch, a tuple"):
        DatasetAdapter()(np.zeros((1, 1, 2, 2)))
    with evaluation.add_chain("attack") as chain:
        chain.add_perturbation(Shift(0.1))
    evaluation.use_perturbations("attack", [Shift(0.3, name="other")])
    assert [p.name for p in evaluation.chains["attack"].perturbations] == ["other"]


class TableExporter:
    """A minimal real exporter: every sample's target, prediction and image to the store."""

    name = "table"
    criterion = None

    def setup(self, writer=None):
        self.writer = writer
        self.registered = writer.register_exporter(self.name, "TableExporter", None, {})

    def export(self, batch_idx, batch):
        batch.validate()
        self.writer.add_records(
            self.registered, batch.chain, batch.global_indices,
            {"target": batch.column("target"), "prediction": batch.column("prediction")},
            batch=batch_idx, positions=np.arange(len(batch)), images=batch.inputs.to_uint8_hwc())

    def close(self):
        pass


def test_integration_with_the_export_writer(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    store = pytest.importorskip("armory_datasets.store")
    evaluation = evaluation_with(TableExporter())
    result = EvaluationEngine(evaluation, export_dir=tmp_path / "run", quiet=True, fiftyone=False).run()
    table = pq.read_table(tmp_path / "run" / "table").sort_by([("chain", "ascending"),
                                                              ("sample_index", "ascending")])
    assert table.column("chain").to_pylist() == ["benign"] * 10 + ["shift"] * 10
    assert table.column("sample_index").to_pylist() == list(range(10)) * 2
    assert table.column("batch").to_pylist() == [0] * 4 + [1] * 4 + [2] * 2 + [0] * 4 + [1] * 4 + [2] * 2
    assert store.read_manifest(tmp_path / "run")["evaluation"]["chains"] == {
        "benign": {}, "shift": {"shift": {"amount": 0.5}}}
    assert result.export_dir == tmp_path / "run"


def test_upstream_docs_example_with_the_real_exporter(tmp_path):
    """The "Exporting Data" page: one exporter, every_n_batches, passed to use_exporters."""
    pq = pytest.importorskip("pyarrow.parquet")
    from armory_datasets.export.image_classification import ImageClassificationExporter

    criterion = C.every_n_batches(2) | C.when_metric_gt(named_metric("darkness", _darkness), 0.9)
    evaluation = evaluation_with(ImageClassificationExporter(criterion=criterion))
    EvaluationEngine(evaluation, export_dir=tmp_path / "run", quiet=True, fiftyone=False).run()
    from armory_datasets.store import unified_schema  # parts differ once a chain adds columns

    table = pq.read_table(tmp_path / "run" / "table", schema=unified_schema(tmp_path / "run" / "table"))
    keys = sorted(table.column("record_key").to_pylist())
    # batch 1 (samples 4..7) in both chains; darkness > 0.9 only for benign samples 0, 1
    assert keys == sorted([f"benign/{i}" for i in (0, 1, 4, 5, 6, 7)] + [f"shift/{i}" for i in (4, 5, 6, 7)])
    assert "darkness" in table.column_names and "shift_amount" in table.column_names


def test_fgsm_chain_lowers_accuracy():
    perturbations = pytest.importorskip("armory_datasets.perturbations")
    model = Brightness()
    evaluation = evaluation_with(FakeExporter("x", []), chains=(("fgsm", [perturbations.FGSM(model, 0.3)]),),
                                 mean=0.5, std=0.25, data=[((UNIT - 0.5) / 0.25, torch.tensor([0] * 5 + [1] * 5))])
    result = EvaluationEngine(evaluation, writer=FakeWriter([]), quiet=True).run()
    assert result.metrics["benign"]["accuracy"] == 1.0
    # a 0.3 step against the label flips every sample within 0.3 of the 0.5 boundary
    assert result.metrics["fgsm"]["accuracy"] == pytest.approx(0.4)
    (_, fgsm_batch) = evaluation.exporters[0].batches[-1]
    assert fgsm_batch.column("fgsm_epsilon") == 0.3 and fgsm_batch.column("fgsm_targeted") is False


def test_criteria_on_another_chains_perturbation_field_select_nothing_here():
    exporter = FakeExporter("images", [], criterion=None)
    EvaluationEngine(evaluation_with(exporter), writer=FakeWriter([]), quiet=True).run()
    criterion = C.parse("isclose(shift_amount, 0.5)")
    chosen = {batch.chain: criterion(batch_idx, batch) for batch_idx, batch in exporter.batches}
    assert chosen == {"benign": False, "shift": True}  # a batch-level field: whole batches
    benign = exporter.batches[0][1]
    assert np.isnan(benign.column("shift_amount"))
    with pytest.raises(KeyError, match="shfit_amount"):
        benign.column("shfit_amount")  # a typo is still an error
