"""D-RISE on the trained tiny digits detector and on hand-made detectors: meaning, xaitk agreement,
non-square images, seeding, bounded chunks, validation, and box statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.preprocessing import maxabs_scale
from xaitk_saliency.impls.gen_detector_prop_sal.drise_scoring import DRISEScoring

from armory_datasets.demo.digits import make_detection_canvases, train_detector
from armory_datasets.saliency.drise import DRise, box_saliency_stats


@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    torch.set_num_threads(1)
    return train_detector(seed=0, n_canvases=300, epochs=6)  # recall ~1, precision ~0.85 in a few seconds


@pytest.fixture(scope="module")
def canvases() -> tuple[torch.Tensor, list[dict[str, np.ndarray]]]:
    images, targets = make_detection_canvases(4, height=48, width=72, digits_per_canvas=(1, 2), seed=3, split="test")
    return torch.from_numpy(images), targets


def region_detector(box: list[float], label: int, num_classes: int):
    """Detects `box` with objectness = (mean of the masked image inside it) ** 4 (all-ones image => visibility)."""
    x0, y0, x1, y1 = (int(v) for v in box)

    def detect(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        probs = torch.zeros(1, num_classes)
        probs[0, label] = 1.0
        return [
            {"boxes": torch.tensor([box]), "probs": probs, "scores": torch.ones(1), "objectness": im[:, y0:y1, x0:x1].mean().reshape(1) ** 4}
            for im in images
        ]

    return detect


def inside_mask(shape: tuple[int, int], box) -> np.ndarray:
    x0, y0, x1, y1 = np.round(np.asarray(box, dtype=float)).astype(int)
    inside = np.zeros(shape, dtype=bool)
    inside[y0:y1, x0:x1] = True
    return inside


def test_maps_are_higher_inside_the_detection_than_outside(detector, canvases):
    images, _ = canvases
    drise = DRise(num_masks=200, grid_size=8, seed=0)
    higher = total = 0
    for image, prediction in zip(images, detector(images)):
        boxes, labels = prediction["boxes"].numpy(), prediction["labels"].numpy()
        maps = drise.attribute(detector, image, boxes, labels, num_classes=10)
        assert maps.shape == (len(labels), 48, 72) and maps.dtype == np.float32
        for saliency, box in zip(maps, boxes):
            inside = inside_mask(saliency.shape, box)
            higher += saliency[inside].mean() > saliency[~inside].mean()
            total += 1
    assert total >= 4 and higher >= 0.8 * total, (higher, total)


def test_weighting_equals_xaitk_drise_scoring_up_to_its_coverage_normalisation(detector, canvases):
    images, targets = canvases
    image, boxes, labels = images[0], targets[0]["boxes"], targets[0]["labels"]
    drise = DRise(num_masks=48, grid_size=8, seed=5, batch_size=16)
    maps = drise.attribute(detector, image, boxes, labels, num_classes=10)

    masks = torch.cat(list(drise.masks(48, 72)))
    detections = detector(image[None] * masks[:, None])
    width = max(len(d["boxes"]) for d in detections)
    # xaitk rows: x0, y0, x1, y1, objectness, class probs; padded proposals have objectness 0.
    # Its IoU counts integer pixels inclusively (+1), so x_max and y_max are passed minus 1.
    perturbed = np.zeros((len(masks), width, 4 + 1 + 10))
    perturbed[:, :, 5:] = 1.0
    for i, d in enumerate(detections):
        k = len(d["boxes"])
        perturbed[i, :k, :4] = d["boxes"].numpy() - np.array([0, 0, 1, 1])
        perturbed[i, :k, 4] = 1.0
        perturbed[i, :k, 5:] = d["probs"].numpy()
    reference = np.zeros((len(labels), 4 + 1 + 10))
    reference[:, :4] = boxes - np.array([0, 0, 1, 1])
    reference[np.arange(len(labels)), 5 + labels] = 1.0
    expected = DRISEScoring().generate(reference, perturbed, masks.numpy())

    undone = maps * (drise.num_masks * drise.p) / masks.numpy().sum(0)
    ours = maxabs_scale(undone.reshape(len(labels), -1), axis=1).reshape(maps.shape)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_non_square_images_keep_height_and_width_apart():
    box = [70, 28, 100, 40]  # lower right of a 40 x 100 image
    maps = DRise(num_masks=300, grid_size=(4, 10), score_threshold=0.0).attribute(
        region_detector(box, 2, 3), torch.ones(1, 40, 100), [box], [2], num_classes=3
    )
    assert maps.shape == (1, 40, 100)
    inside = inside_mask((40, 100), box)
    assert maps[0][inside].mean() > 1.2 * maps[0][~inside].mean()
    y, x = np.unravel_index(maps[0].argmax(), (40, 100))
    assert inside[y, x]


def test_masks_are_seeded_and_independent_of_batch_size():
    state, np_state = torch.get_rng_state(), np.random.get_state()
    box = [4, 4, 20, 20]
    detect = region_detector(box, 0, 1)

    def run(seed: int, batch_size: int) -> np.ndarray:
        return DRise(num_masks=50, grid_size=4, seed=seed, batch_size=batch_size, score_threshold=0.0).attribute(
            detect, torch.ones(3, 24, 30), [box], [0], 1
        )

    first = run(0, 64)
    np.testing.assert_array_equal(first, run(0, 64))
    np.testing.assert_allclose(first, run(0, 7), rtol=1e-6, atol=1e-7)
    assert not np.allclose(first, run(1, 64))
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(np_state[1], np.random.get_state()[1])


def test_detector_sees_chunks_of_at_most_batch_size():
    seen: list[tuple[int, ...]] = []

    def spy(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        seen.append(tuple(images.shape))
        return [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)} for _ in images]

    DRise(num_masks=45, batch_size=16).attribute(spy, torch.rand(3, 20, 30), [[0, 0, 5, 5]], [0], 2)
    assert seen == [(16, 3, 20, 30), (16, 3, 20, 30), (13, 3, 20, 30)]
    chunks = list(DRise(num_masks=45, batch_size=16).masks(20, 30))
    assert [len(c) for c in chunks] == [16, 16, 13]
    capped = DRise(num_masks=45, batch_size=16, max_batch_pixels=5 * 20 * 30 + 1)
    assert [len(c) for c in capped.masks(20, 30)] == [5] * 9
    np.testing.assert_array_equal(torch.cat(list(capped.masks(20, 30))), torch.cat(chunks))
    assert all(c.dtype == torch.float32 and 0 <= c.min() and c.max() <= 1 for c in chunks)


def test_constant_and_empty_maps_stay_finite():
    def always(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "probs": torch.tensor([[1.0, 0.0]])} for _ in images]

    def never(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": torch.zeros(0, 4), "probs": torch.zeros(0, 2)} for _ in images]

    image = torch.rand(1, 16, 16)
    constant = DRise(num_masks=200, grid_size=4).attribute(always, image, [[0, 0, 10, 10]], [0], 2)
    assert np.isfinite(constant).all() and abs(constant.mean() - 1.0) < 0.1  # mean of mask / p
    empty = DRise(num_masks=20).attribute(never, image, [[0, 0, 10, 10]], [1], 2)
    assert np.isfinite(empty).all() and not empty.any()
    stats = box_saliency_stats(empty[0], [0, 0, 10, 10])
    assert (stats["min"], stats["max"], stats["mean"]) == (0.0, 0.0, 0.0)
    assert np.isnan(stats["in_box_positive_share"])  # undefined: no positive mass anywhere
    assert DRise(num_masks=4).attribute(never, image, np.zeros((0, 4)), [], 2).shape == (0, 16, 16)


def test_detectors_with_labels_and_scores_only_use_the_score_as_objectness():
    def labelled(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [
            {"boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 4.0]]), "labels": torch.tensor([1, 0]),
             "scores": torch.tensor([0.6, 0.9])}
            for _ in images
        ]

    drise = DRise(num_masks=30, grid_size=2)
    maps = drise.attribute(labelled, torch.rand(1, 8, 8), [[0, 0, 8, 8], [0, 0, 8, 8]], [1, 0], 2)
    coverage = torch.cat(list(drise.masks(8, 8))).sum(0).numpy() / (30 * 0.5)
    np.testing.assert_allclose(maps[0], 0.6 * coverage, rtol=1e-5)  # IoU 1, same label, score 0.6
    np.testing.assert_allclose(maps[1], 0.5 * 0.9 * coverage, rtol=1e-5)  # IoU 0.5, score 0.9


def test_box_saliency_stats_by_hand():
    saliency = np.array([[2.0, 0.0, -1.0], [1.0, 1.0, 0.0]], dtype=np.float32)
    stats = box_saliency_stats(saliency, [0, 0, 2, 1])  # the two top-left pixels
    assert stats == {"min": -1.0, "max": 2.0, "mean": 0.5, "in_box_positive_share": 0.5}
    assert box_saliency_stats(saliency, [0.6, 0, 0.9, 2])["in_box_positive_share"] == 0.0  # no pixel centre inside


@pytest.mark.parametrize(
    ("image", "boxes", "labels", "num_classes", "field"),
    [
        (torch.zeros(1, 8, 8), [[0, 0, 4, 4]], [3], 3, "labels"),
        (torch.zeros(1, 8, 8), [[0, 0, 4, 4]], [-1], 3, "labels"),
        (torch.zeros(1, 8, 8), [[0, 0, 4, 4]], [0, 1], 3, "labels"),
        (torch.zeros(1, 8, 8), [[0, 0, 4, 4]], [0.0], 3, "labels"),
        (torch.zeros(1, 8, 8), [[0, 0, 4]], [0], 3, "boxes"),
        (torch.zeros(1, 8, 8), [[0, 0, 4, float("nan")]], [0], 3, "boxes"),
        (torch.full((1, 8, 8), float("nan")), [[0, 0, 4, 4]], [0], 3, "image_unit"),
        (torch.full((1, 8, 8), 255.0), [[0, 0, 4, 4]], [0], 3, "image_unit"),
        (torch.zeros(2, 1, 8, 8), [[0, 0, 4, 4]], [0], 3, "image_unit"),
        (torch.zeros(1, 8, 8), [[0, 0, 4, 4]], [0], 0, "num_classes"),
    ],
)
def test_bad_inputs_raise_naming_the_field(image, boxes, labels, num_classes, field):
    calls: list[int] = []

    def detect(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        calls.append(len(images))
        return [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)} for _ in images]

    with pytest.raises(ValueError, match=field):
        DRise(num_masks=4).attribute(detect, image, boxes, labels, num_classes)
    assert not calls


def test_bad_detector_output_raises_naming_the_detector():
    def wrong_width(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": torch.zeros(1, 4), "probs": torch.ones(1, 5)} for _ in images]

    with pytest.raises(ValueError, match="detector"):
        DRise(num_masks=4).attribute(wrong_width, torch.zeros(1, 8, 8), [[0, 0, 4, 4]], [0], 3)
    with pytest.raises(ValueError, match="detector"):
        DRise(num_masks=4).attribute(lambda images: [], torch.zeros(1, 8, 8), [[0, 0, 4, 4]], [0], 3)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_masks": 0}, "num_masks"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_batch_pixels": 0}, "max_batch_pixels"),
        ({"seed": -1}, "seed"),
        ({"grid_size": 0}, "grid_size"),
        ({"grid_size": (4, 0)}, "grid_size"),
        ({"p": 0.0}, "p"),
        ({"fill": 2.0}, "fill"),
        ({"score_threshold": float("nan")}, "score_threshold"),
    ],
)
def test_bad_settings_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DRise(**kwargs)
