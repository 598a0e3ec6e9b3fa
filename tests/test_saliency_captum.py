"""CaptumSaliency on the trained tiny digits classifier: meaning, equality with Captum, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import DeepLift, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

from armory_datasets.demo.digits import load_digits_images, normalize_digits
from armory_datasets.saliency.captum_maps import CaptumSaliency, NormalizedModel


@pytest.fixture(scope="module")
def model(trained_digits_classifier) -> torch.nn.Module:
    return trained_digits_classifier


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_digits_images(32)
    return torch.from_numpy(images[:12].copy()), torch.from_numpy(labels[:12].copy())


def test_integrated_gradients_mass_lies_on_the_digit(model, digits):
    images, labels = digits
    correct = (model(normalize_digits(images)).argmax(1) == labels).numpy()
    assert correct.sum() >= 10
    out = CaptumSaliency(model, n_steps=32).attribute(images, labels, normalize=normalize_digits)
    on_digit = images[:, 0].numpy() > 0.2
    mass = np.abs(out.maps)
    share = (mass * on_digit).sum((1, 2)) / mass.sum((1, 2))
    assert on_digit.mean() < 0.55
    assert (share[correct] > 0.8).all(), share


def test_integrated_gradients_equals_captum_on_the_normalised_model(model, digits):
    images, labels = digits
    out = CaptumSaliency(model, n_steps=17).attribute(images, labels, normalize=normalize_digits)
    reference, delta = IntegratedGradients(NormalizedModel(model, normalize_digits)).attribute(
        images, baselines=torch.zeros_like(images), target=labels, n_steps=17, return_convergence_delta=True
    )
    np.testing.assert_allclose(out.maps, reference.sum(1).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.delta, delta.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert out.maps.dtype == np.float32 and out.maps.shape == (12, 32, 32)


def test_integrated_gradients_honours_n_steps_and_completeness(model, digits):
    images, labels = digits
    few = CaptumSaliency(model, n_steps=2).attribute(images, labels, normalize=normalize_digits)
    many = CaptumSaliency(model, n_steps=64).attribute(images, labels, normalize=normalize_digits)
    assert not np.allclose(few.maps, many.maps)
    assert np.abs(many.delta).mean() < np.abs(few.delta).mean()
    with torch.no_grad():
        logits = model(normalize_digits(images)) - model(normalize_digits(torch.zeros_like(images)))
    gap = logits.gather(1, labels[:, None])[:, 0].numpy()
    np.testing.assert_allclose(many.maps.sum((1, 2)), gap + many.delta, rtol=1e-3, atol=1e-3)


def test_batched_attribution_equals_one_sample_at_a_time(model, digits):
    images, labels = digits
    ig = CaptumSaliency(model, n_steps=8)
    batched = ig.attribute(images[:4], labels[:4], normalize=normalize_digits).maps
    single = np.concatenate([ig.attribute(images[i : i + 1], labels[i : i + 1], normalize_digits).maps for i in range(4)])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)


def test_saliency_deeplift_gradcam_equal_captum(model, digits):
    images, labels = digits
    wrapped = NormalizedModel(model, normalize_digits)
    grads = Saliency(wrapped).attribute(images.clone().requires_grad_(), target=labels, abs=True)
    out = CaptumSaliency(model, method="saliency").attribute(images, labels, normalize_digits)
    np.testing.assert_allclose(out.maps, grads.sum(1).numpy(), rtol=1e-5, atol=1e-7)
    assert out.delta is None and (out.maps >= 0).all()

    lift, delta = DeepLift(wrapped).attribute(
        images.clone().requires_grad_(), baselines=torch.zeros_like(images), target=labels, return_convergence_delta=True
    )
    out = CaptumSaliency(model, method="deeplift").attribute(images, labels, normalize_digits)
    np.testing.assert_allclose(out.maps, lift.sum(1).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.delta, delta.detach().numpy(), rtol=1e-5, atol=1e-6)

    cam = LayerGradCam(wrapped, model.conv2).attribute(images, target=labels)
    cam = LayerAttribution.interpolate(cam, (32, 32), interpolate_mode="bilinear")
    for layer in (model.conv2, "conv2"):
        out = CaptumSaliency(model, method="gradcam", layer=layer).attribute(images, labels, normalize_digits)
        np.testing.assert_allclose(out.maps, cam[:, 0].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_maps_are_aligned_with_non_square_images(model):
    images = torch.zeros(2, 1, 32, 48)
    digit, _ = load_digits_images(32)
    images[0, :, :, 16:] = torch.from_numpy(digit[0])  # digit on the right
    images[1, :, :, :32] = torch.from_numpy(digit[0])  # digit on the left
    for method, layer in (("integrated_gradients", None), ("gradcam", "conv2")):
        maps = CaptumSaliency(model, method=method, layer=layer, n_steps=16).attribute(images, [0, 0], normalize_digits).maps
        assert maps.shape == (2, 32, 48)
        positive = np.clip(maps, 0, None)  # evidence for the class (GradCAM's usual ReLU)
        right, left = positive[:, :, 32:].sum((1, 2)), positive[:, :, :16].sum((1, 2))
        assert right[0] > left[0] and left[1] > right[1], (method, left, right)


def test_smoothgrad_is_seeded_and_leaves_the_global_rng_alone(model, digits):
    images, labels = digits
    images, labels = images[:2], labels[:2]
    state = torch.get_rng_state()

    def sg(seed: int) -> np.ndarray:
        return CaptumSaliency(model, method="smoothgrad_squared", n_steps=4, nt_samples=3, seed=seed).attribute(
            images, labels, normalize_digits
        ).maps

    first, again, other = sg(0), sg(0), sg(1)
    assert torch.equal(state, torch.get_rng_state())
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert (first >= 0).all()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "gradcam"}, "layer"),
        ({"method": "gradcam", "layer": "conv9"}, "layer"),
        ({"method": "gradcam", "layer": torch.nn.Conv2d(1, 1, 1)}, "layer"),
        ({"method": "saliency", "layer": "conv2"}, "layer"),
        ({"method": "lime"}, "method"),
        ({"n_steps": 0}, "n_steps"),
        ({"internal_batch_size": 0}, "internal_batch_size"),
    ],
)
def test_bad_settings_raise_naming_the_field(model, kwargs, field):
    with pytest.raises(ValueError, match=field):
        CaptumSaliency(model, **kwargs)


@pytest.mark.parametrize(
    ("images", "classes", "field"),
    [
        (torch.full((2, 1, 32, 32), float("nan")), [0, 1], "images_unit"),
        (torch.full((2, 1, 32, 32), 2.0), [0, 1], "images_unit"),
        (torch.zeros(1, 32, 32), [0], "images_unit"),
        (np.zeros((2, 1, 32, 32), np.float32), [0, 1], "images_unit"),
        (torch.zeros(2, 1, 32, 32), [0, 10], "classes"),
        (torch.zeros(2, 1, 32, 32), [-1, 0], "classes"),
        (torch.zeros(2, 1, 32, 32), [0], "classes"),
        (torch.zeros(2, 1, 32, 32), [0.0, 1.0], "classes"),
    ],
)
def test_bad_inputs_raise_naming_the_field_before_any_work(model, images, classes, field):
    calls = []
    handle = model.conv1.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(ValueError, match=field):
            CaptumSaliency(model, n_steps=4).attribute(images, classes, normalize_digits)
    finally:
        handle.remove()
    assert len(calls) <= 1  # at most the one-sample probe that learns the number of classes
