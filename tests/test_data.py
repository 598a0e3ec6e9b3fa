"""Batches: conversions, validation messages and column lookup."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from armory_datasets.data import Images, ImageClassificationBatch, ObjectDetectionBatch, Objects

torch.set_num_threads(1)


def uint8_images(n=2, c=1, h=4, w=4):
    return Images(np.zeros((n, c, h, w), dtype=np.uint8))


def classification(n=2, **kwargs):
    kwargs.setdefault("targets", list(range(n)))
    return ImageClassificationBatch(uint8_images(n), **kwargs)


def detection(targets, predictions=None, **kwargs):
    return ObjectDetectionBatch(uint8_images(len(targets), h=10, w=20), targets, predictions, **kwargs)


# ------------------------------------------------------------------ Images conversions


@settings(max_examples=40, deadline=None)
@given(pixels=hnp.arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 5),
                                              st.integers(1, 5), st.sampled_from([1, 3]))),
       data=st.data())
def test_uint8_hwc_round_trips_through_normalised_float_chw(pixels, data):
    c = pixels.shape[3]
    mean = data.draw(st.lists(st.floats(0.0, 1.0), min_size=c, max_size=c))
    std = data.draw(st.lists(st.floats(0.05, 2.0), min_size=c, max_size=c))
    unit = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
    source = Images(pixels, layout="HWC")
    float_images = Images((unit - torch.tensor(mean).view(1, -1, 1, 1))
                          / torch.tensor(std).view(1, -1, 1, 1), mean=mean, std=std)
    np.testing.assert_array_equal(float_images.to_uint8_hwc(), pixels)
    np.testing.assert_array_equal(source.to_uint8_hwc(), pixels)
    back = float_images.to_unit_float_chw()
    assert back.dtype == torch.float32
    assert torch.allclose(back, unit, atol=1 / 255 / 4)
    assert torch.allclose(float_images.normalize(back), float_images.to_model_input(), atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(layout=st.sampled_from(["CHW", "HWC"]), normalised=st.booleans(), data=st.data())
def test_float_pixels_are_rounded_half_to_even_after_clipping(layout, normalised, data):
    """The PNG pixels are np.round(np.clip(denormalised, 0, 1) * 255), exactly, at .5 ties too."""
    n, h, w, c = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
                                     st.sampled_from([1, 3, 4])))
    ties = (np.arange(n * h * w * c) % 256 + 0.5) / 255.0  # x * 255 lands on k + 0.5 (as a float)
    noise = data.draw(hnp.arrays(np.float32, n * h * w * c, elements=st.floats(-2.0 ** -10, 1 + 2.0 ** -10, width=32)))
    values = np.where(np.arange(n * h * w * c) % 2 == 0, ties, noise).astype(np.float32)
    shape = (n, c, h, w) if layout == "CHW" else (n, h, w, c)
    stats = (1, c, 1, 1) if layout == "CHW" else (1, 1, 1, c)
    mean = np.linspace(0.2, 0.5, c) if normalised else None
    std = np.linspace(0.9, 1.1, c) if normalised else None
    unit = values.reshape(shape).astype(np.float64)
    stored = ((unit - mean.reshape(stats)) / std.reshape(stats)).astype(np.float32) if normalised \
        else unit.astype(np.float32)
    denormalised = stored.astype(np.float64)
    if normalised:
        denormalised = denormalised * std.reshape(stats) + mean.reshape(stats)
    expected = np.round(np.clip(denormalised, 0.0, 1.0) * 255.0).astype(np.uint8)
    if layout == "CHW":
        expected = expected.transpose(0, 2, 3, 1)
    images = Images(stored, layout=layout, mean=None if mean is None else list(mean),
                    std=None if std is None else list(std))
    np.testing.assert_array_equal(images.to_uint8_hwc(), expected)


def test_images_shape_properties_and_model_input():
    x = Images(torch.zeros(2, 5, 7, 3), layout="HWC", scale="float")
    assert (len(x), x.height, x.width, x.channels) == (2, 5, 7, 3)
    assert x.to_model_input().shape == (2, 3, 5, 7)
    assert x.to_uint8_hwc().shape == (2, 5, 7, 3)
    u = Images(np.full((1, 1, 2, 2), 255, np.uint8))
    assert u.scale == "uint8"
    assert u.to_model_input().max().item() == 255.0  # as the model got it
    assert u.to_unit_float_chw().max().item() == 1.0


def test_with_unit_float_keeps_the_model_form():
    f = Images(np.zeros((1, 3, 2, 2), np.float32), mean=[0.5, 0.4, 0.3], std=0.5)
    moved = f.with_unit_float(torch.full((1, 3, 2, 2), 0.5))
    assert moved.mean == f.mean and moved.std == (0.5, 0.5, 0.5)
    assert torch.allclose(moved.to_model_input()[0, :, 0, 0], torch.tensor([0.0, 0.2, 0.4]))
    u = Images(np.zeros((1, 1, 1, 1), np.uint8)).with_unit_float(torch.full((1, 1, 1, 1), 0.5))
    assert u.scale == "uint8" and u.to_uint8_hwc().item() == 128


def test_normalize_keeps_autograd():
    x = torch.rand(1, 1, 2, 2, requires_grad=True)
    Images(np.zeros((1, 1, 2, 2), np.float32), mean=0.5, std=0.25).normalize(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 4.0))


@pytest.mark.parametrize("kwargs, message", [
    (dict(data=np.zeros((2, 4, 4), np.uint8)), "inputs: got shape (2, 4, 4); expected 4 dimensions (N,C,H,W)"),
    (dict(data=np.zeros((1, 8, 8, 1), np.uint8)), "expected (N,C,H,W) with C in 1, 3, 4"),
    (dict(data=np.zeros((1, 1, 2, 2), np.float32), scale="uint8"), "expected integer pixels 0..255"),
    (dict(data=np.full((2, 1, 2, 2), 300, np.int32)), "inputs[0]: pixel 300 outside 0..255"),
    (dict(data=np.array([0.0, np.nan]).reshape(2, 1, 1, 1)), "inputs[1]: contains NaN or inf; expected finite"),
    (dict(data=np.array([0.5, np.inf]).reshape(2, 1, 1, 1)), "inputs[1]: contains NaN or inf"),
    (dict(data=np.array([0.5, 200.0]).reshape(2, 1, 1, 1)), "inputs[1]: value 200 outside 0..1; expected float images in 0..1"),
    (dict(data=np.zeros((1, 3, 1, 1), np.float32), mean=[0.1, 0.2]), "inputs.mean: got 2 values; expected 1 or 3"),
    (dict(data=np.zeros((1, 1, 1, 1), np.uint8), mean=0.5), "normalisation given for uint8 images"),
    (dict(data=np.zeros((1, 1, 1, 1), np.uint8), layout="NCHW"), "expected 'CHW' or 'HWC'"),
])
def test_images_validation_messages(kwargs, message):
    with pytest.raises(ValueError) as error:
        Images(**kwargs)
    assert message in str(error.value)


# ------------------------------------------------------------ classification validation


@pytest.mark.parametrize("kwargs, message", [
    (dict(targets=[0, 12], predictions=np.zeros((2, 10))), "targets[1]: label 12 out of range; expected 0 <= label < 10"),
    (dict(targets=[0, -1]), "targets[1]: label -1 out of range; expected 0 <= label"),
    (dict(targets=[0, 3], class_names=["a", "b", "c"]), "targets[1]: label 3 out of range; expected 0 <= label < 3"),
    (dict(targets=[0, 1, 1]), "targets: got shape (3,) dtype int64; expected (2,) integer class indices"),
    (dict(targets=[0.0, 1.0]), "expected (2,) integer class indices"),
    (dict(predictions=np.zeros((3, 4))), "predictions: got shape (3, 4); expected (2,C) logits"),
    (dict(predictions=np.zeros((2, 4), dtype=np.int64)), "predictions: dtype int64; expected floating"),
    (dict(predictions=np.array([[0.0, 1.0], [np.nan, 0.0]])), "predictions[1]: contains NaN or inf; expected finite logits"),
    (dict(predictions=np.array([[0.0, 1.0], [2.0, 0.0]]), prediction_kind="probabilities"), "predictions[1]: value 2 outside 0..1; expected probabilities"),
    (dict(predictions=np.zeros((2, 4)), class_names=["a", "b"]), "class_names: got 2 names; expected 4"),
    (dict(prediction_kind="scores"), "prediction_kind: got 'scores'; expected 'logits' or 'probabilities'"),
    (dict(metadata={"site": ["a"]}), "metadata['site']: got 1 values; expected 2 (one per sample)"),
    (dict(metadata={"site": "ab"}), "metadata['site']: got a str; expected a sequence with one value per sample (put batch-level values in batch_metadata)"),
    (dict(metadata={"target": [1, 2]}), "metadata['target']: name is a table column"),
    (dict(batch_metadata={"confidence": 1}), "batch_metadata['confidence']: name already used"),
    (dict(metrics={"loss": np.zeros(3)}), "metrics['loss']: got shape (3,); expected (2,) one value per sample"),
    (dict(global_indices=[0, 1, 2]), "global_indices: got shape (3,); expected (2,) one index per sample"),
    (dict(global_indices=[0, -4]), "global_indices[1]: got -4; expected >= 0"),
    (dict(global_indices=[0.5, 1.0]), "expected (N,) integer sample indices"),
    (dict(perturbations={"fgsm": {"epsilon": [0.1, 0.2]}}), "perturbations['fgsm']['epsilon']: got list; expected a bool, int, float or str"),
    (dict(chain="a/b"), "chain: got 'a/b'; expected a name without '/'"),
    (dict(inputs=np.zeros((2, 1, 2, 2))), "inputs: got ndarray; expected armory_datasets.data.Images"),
])
def test_classification_validation_messages(kwargs, message):
    kwargs.setdefault("targets", [0, 1])
    inputs = kwargs.pop("inputs", uint8_images(2))
    with pytest.raises(ValueError) as error:
        ImageClassificationBatch(inputs, **kwargs)
    assert message in str(error.value)


def test_validate_catches_mutation_after_construction():
    batch = classification(2, predictions=np.zeros((2, 3)))
    batch.metrics["loss"] = np.zeros(5)
    with pytest.raises(ValueError, match=r"metrics\['loss'\]"):
        batch.validate()


def test_torch_targets_and_predictions_are_stored_as_numpy():
    batch = ImageClassificationBatch(uint8_images(2), torch.tensor([1, 0]),
                                     predictions=torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True))
    assert isinstance(batch.targets, np.ndarray) and batch.targets.dtype == np.int64
    assert isinstance(batch.predictions, np.ndarray)
    assert batch.column("correct").tolist() == [True, True]


# ------------------------------------------------------------------- column lookup


def test_classification_columns():
    logits = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]], dtype=np.float32)
    batch = classification(2, targets=[1, 1], predictions=logits, global_indices=[7, 8])
    assert batch.column("target").tolist() == [1, 1]
    assert batch.column("prediction").tolist() == [1, 0]
    assert batch.column("correct").tolist() == [True, False]
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(batch.column("confidence"), softmax.max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(batch.probabilities(), softmax, rtol=1e-6)
    assert batch.column("sample_index").tolist() == [7, 8]
    assert batch.column("position").tolist() == [0, 1]
    assert batch.column("chain") == "benign"
    assert (batch.column("width"), batch.column("height")) == (4, 4)


def test_probabilities_kind_is_used_directly():
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    batch = classification(2, predictions=probs, prediction_kind="probabilities")
    np.testing.assert_allclose(batch.column("confidence"), [0.8, 0.6])
    np.testing.assert_allclose(batch.probabilities(), probs)


def test_metadata_batch_metadata_perturbations_metrics():
    batch = classification(
        3, targets=[0, 1, 2],
        metadata={"site": ["north", "south", "east"], "weight": torch.tensor([0.5, 1.0, 2.0])},
        batch_metadata={"source": "camera-7", "thresholds": [1, 2, 3], "scale": torch.tensor(2.0)},
        perturbations={"fgsm": {"epsilon": torch.tensor(0.03), "targeted": False}},
        metrics={"loss": torch.tensor([0.1, 0.2, 0.3])},
    )
    assert batch.column("site").tolist() == ["north", "south", "east"]
    np.testing.assert_allclose(batch.column("weight"), [0.5, 1.0, 2.0])
    # batch-level values are kept whole: never sliced, strings never indexed by character
    assert batch.column("source") == "camera-7"
    assert batch.column("thresholds") == [1, 2, 3]  # length equals N but stays batch-level
    assert batch.column("scale") == 2.0
    assert batch.column("fgsm_epsilon") == pytest.approx(0.03)
    assert batch.column("fgsm_targeted") is False
    np.testing.assert_allclose(batch.column("loss"), [0.1, 0.2, 0.3])


def test_ragged_metadata_becomes_object_column():
    batch = classification(2, metadata={"labels": [["a"], ["b", "c"]], "maybe": [None, 3]})
    assert batch.column("labels")[1] == ["b", "c"]
    assert batch.column("maybe").tolist() == [None, 3]


def test_metrics_override_builtin_columns():
    batch = classification(2, predictions=np.zeros((2, 2)), metrics={"correct": np.array([False, False])})
    assert batch.column("correct").tolist() == [False, False]


def test_unknown_column_lists_available_names():
    batch = classification(2, batch_metadata={"source": "x"})
    with pytest.raises(KeyError) as error:
        batch.column("nope")
    assert "'nope'" in str(error.value) and "'source'" in str(error.value) and "'target'" in str(error.value)
    assert "prediction" not in batch.columns()  # no predictions yet


# ------------------------------------------------------------------------- detection


def test_detection_accepts_dicts_and_torch():
    batch = detection(
        targets=[{"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([2])},
                 {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}],
        predictions=[Objects([[1, 1, 5, 5], [10, 2, 20, 10]], [2, 1], [0.9, 0.3]),
                     {"boxes": [], "labels": [], "scores": []}],
    )
    assert batch.targets[0].boxes.dtype == np.float64 and batch.targets[1].boxes.shape == (0, 4)
    assert batch.column("num_targets").tolist() == [1, 0]
    assert batch.column("num_predictions").tolist() == [1, 0]  # default score threshold 0.5
    np.testing.assert_allclose(batch.column("precision"), [1.0, np.nan])
    np.testing.assert_allclose(batch.column("recall"), [1.0, np.nan])
    assert "confidence" not in batch.columns()


@pytest.mark.parametrize("targets, predictions, kwargs, message", [
    ([Objects([[0, 0, 21, 5]], [0])], None, {}, "targets[0].boxes[0]: box [0.0, 0.0, 21.0, 5.0] outside the 20x10 image; expected 0 <= x_min <= x_max <= 20 and 0 <= y_min <= y_max <= 10"),
    ([Objects([[0, -1, 2, 5]], [0])], None, {}, "outside the 20x10 image"),
    ([{"boxes": [[5, 0, 2, 5]], "labels": [0]}], None, {}, "targets[0]: objects.boxes[0]: box [5.0, 0.0, 2.0, 5.0] has x_max < x_min or y_max < y_min"),
    ([Objects([[0, 0, 2, 2]], [3])], None, {"class_names": ["a", "b"]}, "targets[0].labels[0]: label 3 out of range; expected 0 <= label < 2"),
    ([Objects([[0, 0, 2, 2]], [0])], [Objects([[0, 0, 2, 2]], [0])], {}, "predictions[0].scores: missing; expected (1,) scores for predictions"),
    ([Objects([[0, 0, 2, 2]], [0])], [Objects([[0, 0, 2, 2]], [0], [0.5]), Objects([], [], [])], {}, "predictions: got 2 entries; expected 1 (one Objects per image)"),
    ([{"boxes": [[0, 0, np.nan, 2]], "labels": [0]}], None, {}, "targets[0]: objects.boxes[0]: contains NaN or inf"),
    ([{"boxes": [[0, 0, 2, 2]], "labels": [0.0]}], None, {}, "targets[0]: objects.labels: dtype float64; expected integer class indices"),
    ([{"boxes": [[0, 0, 2]], "labels": [0]}], None, {}, "targets[0]: objects.boxes: got shape (1, 3); expected (K,4) xyxy pixels"),
    ([{"boxes": [[0, 0, 2, 2]], "labels": [0, 1]}], None, {}, "targets[0]: objects.labels: got shape (2,); expected (1,) one label per box"),
    ([{"boxes": [[0, 0, 2, 2]]}], None, {}, "targets[0]: keys ['boxes']; expected 'boxes', 'labels'"),
    ({"boxes": [[0, 0, 2, 2]], "labels": [0]}, None, {}, "targets: got dict; expected a list with one Objects"),
])
def test_detection_validation_messages(targets, predictions, kwargs, message):
    with pytest.raises(ValueError) as error:
        ObjectDetectionBatch(uint8_images(1, h=10, w=20), targets, predictions, **kwargs)
    assert message in str(error.value)


def test_objects_above_threshold():
    objects = Objects([[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]], [0, 1, 2], [0.2, 0.5, 0.9])
    assert objects.above(0.5).labels.tolist() == [1, 2]
    assert len(Objects([[0, 0, 1, 1]], [0]).above(0.9)) == 1  # no scores: ground truth kept


def test_data_does_not_import_metrics():
    """Batches only carry values: metrics are the record builder's, computed once at its settings."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from armory_datasets.data import Images, ImageClassificationBatch, ObjectDetectionBatch, Objects\n"
        "b = ImageClassificationBatch(Images(np.zeros((2, 1, 2, 2), np.uint8)), [0, 1],"
        " predictions=[[0.9, 0.1], [0.2, 0.8]], global_indices=[4, 5])\n"
        "[b.column(c) for c in ('target', 'prediction', 'sample_index', 'width')]\n"
        "d = ObjectDetectionBatch(Images(np.zeros((1, 1, 4, 4), np.uint8)), [Objects([[0, 0, 2, 2]], [0])],"
        " [Objects([[0, 0, 2, 2]], [0], [0.9])])\n"
        "print(sorted(m for m in sys.modules if m.startswith('armory_datasets.metrics')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
