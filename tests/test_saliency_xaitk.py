"""XaitkSaliency on the trained tiny digits classifier: probabilities, equality with xaitk, validation."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from reference_blackbox import SoftmaxOneAtATime
from xaitk_saliency.impls.gen_image_classifier_blackbox_sal.rise import RISEStack
from xaitk_saliency.impls.gen_image_classifier_blackbox_sal.slidingwindow import SlidingWindowStack

from armory_datasets.demo.digits import load_digits_images, normalize_digits
from armory_datasets.saliency.xaitk_maps import ProbabilityBlackbox, XaitkSaliency


@pytest.fixture(scope="module")
def model(trained_digits_classifier) -> torch.nn.Module:
    return trained_digits_classifier


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, np.ndarray]:
    images, labels = load_digits_images(32)
    # Quantised to k/255 so the uint8 and float forms of an image are the same pixels.
    return torch.from_numpy(np.round(images[:8] * 255) / 255), labels[:8]


def test_default_sliding_window_equals_xaitk_called_directly(model, digits):
    images, _ = digits
    classes = [3, 0, 7]
    maps = XaitkSaliency(model, classes, normalize=normalize_digits).attribute(images)
    assert maps.shape == (8, 3, 32, 32) and maps.dtype == np.float32
    direct = SlidingWindowStack(window_size=(8, 8), stride=(4, 4))
    for i in range(len(images)):
        reference = direct.generate(images[i].permute(1, 2, 0).numpy(), SoftmaxOneAtATime(model, classes))
        np.testing.assert_allclose(maps[i], reference, rtol=1e-4, atol=1e-5)


def test_maps_mean_something(model, digits):
    images, labels = digits
    maps = XaitkSaliency(model, list(range(10)), normalize=normalize_digits).attribute(images)
    true_class = maps[np.arange(len(labels)), labels]
    on_digit = images[:, 0].numpy() > 0.2
    positive = np.clip(true_class, 0, None)
    share = (positive * on_digit).sum((1, 2)) / positive.sum((1, 2))
    assert (share > on_digit.mean((1, 2))).all(), share
    assert true_class[on_digit].mean() > 3 * true_class[~on_digit].mean()


def test_black_box_returns_probabilities_not_logits(model, digits):
    images, _ = digits
    box = ProbabilityBlackbox(model, list(range(10)), normalize_digits, batch_size=3)
    rows = list(box.classify_images(list(images.permute(0, 2, 3, 1).numpy())))
    probs = np.array([[row[c] for c in range(10)] for row in rows])
    assert len(rows) == 8 and (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    with torch.no_grad():
        expected = torch.softmax(model(normalize_digits(images)), 1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_uint8_hwc_and_unit_float_chw_give_the_same_maps(model, digits):
    images, _ = digits
    as_uint8 = np.round(images.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    saliency = XaitkSaliency(model, [1, 2], normalize=normalize_digits)
    np.testing.assert_allclose(saliency.attribute(as_uint8), saliency.attribute(images), rtol=1e-5, atol=1e-6)


def test_model_sees_batches_of_at_most_batch_size(model, digits):
    images, _ = digits
    sizes: list[int] = []
    handle = model.conv1.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    try:
        XaitkSaliency(model, [0], normalize=normalize_digits, batch_size=10).attribute(images[:1])
    finally:
        handle.remove()
    # one probe, the reference image, then 64 occlusions in chunks of 10
    assert max(sizes) == 10 and sum(sizes) == 1 + 1 + 64


def test_any_xaitk_algorithm_is_accepted_and_seeded(model, digits):
    images, _ = digits

    def rise(seed: int) -> np.ndarray:
        algorithm = RISEStack(n=60, s=4, p1=0.5, seed=seed)
        return XaitkSaliency(model, [0, 5], algorithm=algorithm, normalize=normalize_digits).attribute(images[:2])

    first, again, other = rise(0), rise(0), rise(1)
    assert first.shape == (2, 2, 32, 32)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"classes": []}, "classes"),
        ({"classes": [1, 1]}, "classes"),
        ({"classes": [0.5]}, "classes"),
        ({"classes": [0], "algorithm": "sliding"}, "algorithm"),
        ({"classes": [0], "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_settings_raise_naming_the_field(model, kwargs, field):
    with pytest.raises(ValueError, match=field):
        XaitkSaliency(model, **kwargs)


@pytest.mark.parametrize(
    ("images", "classes", "field"),
    [
        (torch.zeros(1, 1, 32, 32), [10], "classes"),
        (torch.full((1, 1, 32, 32), float("nan")), [0], "images"),
        (torch.full((1, 1, 32, 32), 1.5), [0], "images"),
        (np.zeros((1, 32, 32, 1), np.float32), [0], "images"),
        (np.zeros((32, 32, 1), np.uint8), [0], "images"),
    ],
)
def test_bad_inputs_raise_naming_the_field(model, images, classes, field):
    with pytest.raises(ValueError, match=field):
        XaitkSaliency(model, classes, normalize=normalize_digits).attribute(images)
