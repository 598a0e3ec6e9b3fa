"""The demo digits data, classifier and detector: real, deterministic, accurate enough."""

import numpy as np
import pytest
import torch

from armory_datasets.boxes import box_iou
from armory_datasets.demo import digits as D

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def split():
    return D.train_test_split_digits(seed=0)


@pytest.fixture(scope="session")
def classifier():
    return D.train_classifier(seed=0)


@pytest.fixture(scope="session")
def detector():
    return D.train_detector(seed=0)


@pytest.fixture(scope="session")
def held_out_canvases():
    return D.make_detection_canvases(100, seed=12345, split="test")


def test_normalisation_constants_match_data():
    images, _ = D.load_digits_images(8)
    assert D.DIGITS_MEAN == pytest.approx(images.mean(), abs=1e-3)
    assert D.DIGITS_STD == pytest.approx(images.std(), abs=1e-3)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_load_digits_images(size):
    images, labels = D.load_digits_images(size)
    assert images.shape == (1797, 1, size, size) and images.dtype == np.float32
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.9
    assert sorted(np.unique(labels)) == list(range(10))


def test_split_is_deterministic_disjoint_and_stratified(split):
    again = D.train_test_split_digits(seed=0)
    np.testing.assert_array_equal(split.test_indices, again.test_indices)
    assert len(np.intersect1d(split.train_indices, split.test_indices)) == 0
    assert len(split.train_indices) + len(split.test_indices) == 1797
    assert np.bincount(split.test_labels).min() >= 40
    assert not np.array_equal(D.train_test_split_digits(seed=1).test_indices, split.test_indices)


def test_classifier_accuracy(classifier, split):
    assert not classifier.training
    assert D.classifier_accuracy(classifier, split.test_images, split.test_labels) > 0.95


def test_classifier_training_is_deterministic_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a = D.train_classifier(seed=3, epochs=1)
    b = D.train_classifier(seed=3, epochs=1)
    c = D.train_classifier(seed=4, epochs=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_classifier_other_sizes_and_gradcam_layer(classifier):
    with torch.no_grad():
        assert classifier(torch.zeros(3, 1, 16, 24)).shape == (3, 10)
        assert classifier(torch.zeros(1, 1, 64, 64)).shape == (1, 10)
    assert isinstance(classifier.conv2, torch.nn.Conv2d)
    captum_attr = pytest.importorskip("captum.attr")
    x = D.normalize_digits(torch.from_numpy(D.load_digits_images(32)[0][:4]))
    cam = captum_attr.LayerGradCam(classifier, classifier.conv2).attribute(x, target=torch.tensor([0, 1, 2, 3]))
    assert cam.shape == (4, 1, 16, 16)


def test_canvases_shapes_boxes_and_determinism():
    images, targets = D.make_detection_canvases(40, seed=3)
    assert images.shape == (40, 1, 64, 96) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    again, _ = D.make_detection_canvases(40, seed=3)
    np.testing.assert_array_equal(images, again)
    counts = [len(t["labels"]) for t in targets]
    assert min(counts) >= 1 and max(counts) <= 3
    for target in targets:
        boxes = target["boxes"]
        assert boxes.dtype == np.float32 and boxes.shape[1] == 4 and target["labels"].dtype == np.int64
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= 64).all()
        np.testing.assert_array_equal(boxes[:, 2] - boxes[:, 0], 24)
        iou = box_iou(boxes, boxes)
        assert (iou[~np.eye(len(boxes), dtype=bool)] == 0).all()


def test_canvas_pixels_are_the_labelled_test_digits():
    images, targets = D.make_detection_canvases(10, height=48, width=80, digit_size=20, seed=9, split="test")
    digits, labels = D.load_digits_images(20)
    test_indices = set(D.train_test_split_digits(seed=0).test_indices.tolist())
    covered = np.zeros(images.shape, dtype=bool)
    for image, target, cover in zip(images, targets, covered):
        for (x0, y0, x1, y1), label in zip(target["boxes"].astype(int), target["labels"]):
            crop = image[:, y0:y1, x0:x1]
            matches = np.flatnonzero((digits == crop).all(axis=(1, 2, 3)))
            assert len(matches) >= 1 and (labels[matches] == label).all()
            assert set(matches.tolist()) & test_indices
            cover[:, y0:y1, x0:x1] = True
    assert (images[~covered] == 0).all()


def test_detector_recall_precision(detector, held_out_canvases):
    scores = D.evaluate_detector(detector, *held_out_canvases)
    assert scores["recall"] > 0.8 and scores["precision"] > 0.7, scores


def test_detector_output_format(detector, held_out_canvases):
    images = torch.from_numpy(held_out_canvases[0][:5])
    outputs = detector(images)
    assert len(outputs) == 5
    for out in outputs:
        assert sorted(out) == ["boxes", "labels", "probs", "scores"]
        k = len(out["labels"])
        assert out["boxes"].shape == (k, 4) and out["boxes"].dtype == torch.float32
        assert out["labels"].dtype == torch.int64 and out["scores"].shape == (k,)
        assert out["probs"].shape == (k, D.TinyDigitsDetector.num_classes) == (k, 10)
        torch.testing.assert_close(out["probs"].max(1).values, out["scores"])
        torch.testing.assert_close(out["probs"].argmax(1), out["labels"])
        assert (out["probs"].sum(1) <= 1 + 1e-5).all()
    empty = detector(torch.zeros(1, 1, 40, 52))[0]
    assert empty["boxes"].shape == (0, 4) and empty["probs"].shape == (0, 10)


def test_detector_on_64_masked_copies_under_no_grad(detector, held_out_canvases):
    image = torch.from_numpy(held_out_canvases[0][:1])
    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand(64, 1, 8, 12, generator=generator) > 0.5).float()
    masks = torch.nn.functional.interpolate(masks, size=image.shape[-2:], mode="bilinear", align_corners=False)
    with torch.no_grad():
        outputs = detector(image * masks)
    assert len(outputs) == 64
    unmasked = detector(image.expand(64, -1, -1, -1))
    assert all(torch.equal(o["boxes"], unmasked[0]["boxes"]) for o in unmasked)
    assert any(len(o["labels"]) != len(unmasked[0]["labels"]) for o in outputs)


def test_evaluate_detector_counts():
    images, targets = D.make_detection_canvases(6, seed=2)

    def oracle(batch):
        return [
            {"boxes": torch.from_numpy(t["boxes"]), "labels": torch.from_numpy(t["labels"]), "scores": torch.ones(len(t["labels"]))}
            for t in targets
        ]

    assert D.evaluate_detector(oracle, images, targets) == {"recall": 1.0, "precision": 1.0}

    def shifted(batch):
        return [{**o, "boxes": o["boxes"] + 20, "labels": o["labels"]} for o in oracle(batch)]

    assert D.evaluate_detector(shifted, images, targets) == {"recall": 0.0, "precision": 0.0}


def test_detector_training_is_deterministic():
    a = D.train_detector(seed=5, n_canvases=32, epochs=1)
    b = D.train_detector(seed=5, n_canvases=32, epochs=1)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert all(p.grad is None for p in a.parameters())
