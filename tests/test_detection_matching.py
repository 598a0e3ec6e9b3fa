"""COCO matching and AP against pycocotools' COCOeval, plus hand-checked edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from armory_datasets.detection import COCO_IOU_THRESHOLDS, AveragePrecision, match_image
from coco_reference import coco_ap, coco_eval, coco_matches


def _random_image(rng: np.random.Generator, num_classes: int, crowd: bool) -> dict:
    g = int(rng.integers(0, 12))
    xy = rng.uniform(0, 80, size=(g, 2))
    wh = rng.uniform(2, 30, size=(g, 2))
    gt_boxes = np.hstack([xy, xy + wh])
    gt_labels = rng.integers(0, num_classes, size=g)
    gt_crowd = (rng.random(g) < 0.1) if crowd else np.zeros(g, dtype=bool)
    # Predictions: jittered copies of ground truth (often several on one box) and clutter.
    copies = rng.integers(0, max(g, 1), size=int(rng.integers(0, 15))) if g else np.zeros(0, int)
    jitter = rng.normal(0, rng.uniform(0.5, 6), size=(len(copies), 4))
    near = gt_boxes[copies] + jitter if g else np.zeros((0, 4))
    near = np.hstack([np.minimum(near[:, :2], near[:, 2:] - 0.5), np.maximum(near[:, 2:], near[:, :2] + 0.5)])
    c = int(rng.integers(0, 6))
    cxy = rng.uniform(0, 80, size=(c, 2))
    clutter = np.hstack([cxy, cxy + rng.uniform(2, 30, size=(c, 2))])
    pred_boxes = np.vstack([near, clutter])
    flip = rng.random(len(copies)) < 0.2  # some copies take the wrong class
    near_labels = np.where(flip, rng.integers(0, num_classes, size=len(copies)),
                           gt_labels[copies] if g else 0)
    pred_labels = np.concatenate([near_labels, rng.integers(0, num_classes, size=c)]).astype(np.int64)
    # Scores on a coarse grid: ties within and across images.
    pred_scores = np.round(rng.uniform(0, 1, size=len(pred_boxes)), 1)
    permutation = rng.permutation(len(pred_boxes))
    return {"gt_boxes": gt_boxes, "gt_labels": gt_labels, "gt_crowd": gt_crowd,
            "pred_boxes": pred_boxes[permutation], "pred_labels": pred_labels[permutation],
            "pred_scores": pred_scores[permutation]}


def _ours(images: list[dict]) -> tuple[list, dict]:
    ap = AveragePrecision()
    matches = []
    for image in images:
        m = match_image(image["pred_boxes"], image["pred_labels"], image["pred_scores"],
                        image["gt_boxes"], image["gt_labels"], image.get("gt_crowd"),
                        COCO_IOU_THRESHOLDS)
        ap.add(m)
        matches.append(m)
    return matches, ap.result()


def _assert_same_as_coco(images: list[dict], num_classes: int) -> None:
    reference = coco_eval(images, num_classes)
    matches, ours = _ours(images)
    expected = coco_ap(reference)
    assert ours["ap50_per_class"].keys() == expected["ap50_per_class"].keys()
    for label, value in expected["ap50_per_class"].items():
        assert ours["ap50_per_class"][label] == pytest.approx(value, abs=1e-6), label
    assert ours["ap50"] == pytest.approx(expected["ap50"], abs=1e-6)
    assert ours["map"] == pytest.approx(expected["map"], abs=1e-6)
    assert ours["map"] == pytest.approx(reference.stats[0], abs=1e-6)
    assert ours["ap50"] == pytest.approx(reference.stats[1], abs=1e-6)
    compared = 0
    for i, m in enumerate(matches):
        recorded = coco_matches(reference, i)
        for k, (gt_index, ignored) in recorded.items():
            np.testing.assert_array_equal(m.pred_gt[:, k], gt_index, err_msg=f"image {i} box {k}")
            np.testing.assert_array_equal(m.pred_ignored[:, k], ignored)
            coco_tp = (gt_index[0] >= 0) and not ignored[0]
            assert (m.pred_match()[k] == "tp") == coco_tp
            compared += 1
    assert compared > 0


def test_equal_to_cocoeval_on_random_images():
    rng = np.random.default_rng(0)
    images = [_random_image(rng, num_classes=5, crowd=False) for _ in range(250)]
    assert sum(len(i["pred_boxes"]) for i in images) > 1000
    _assert_same_as_coco(images, 5)


def test_equal_to_cocoeval_with_crowd_boxes():
    rng = np.random.default_rng(1)
    images = [_random_image(rng, num_classes=3, crowd=True) for _ in range(200)]
    assert sum(int(i["gt_crowd"].sum()) for i in images) > 20
    _assert_same_as_coco(images, 3)


def test_equal_to_cocoeval_past_100_detections_per_class():
    rng = np.random.default_rng(2)
    image = _random_image(rng, num_classes=1, crowd=False)
    many = np.tile(image["gt_boxes"][:1], (130, 1)) + rng.normal(0, 2, size=(130, 4))
    many[:, 2:] = np.maximum(many[:, 2:], many[:, :2] + 1)
    image.update(pred_boxes=many, pred_labels=np.zeros(130, np.int64),
                 pred_scores=rng.uniform(0, 1, 130))
    _assert_same_as_coco([image, _random_image(rng, num_classes=1, crowd=False)], 1)


def test_score_ties_keep_box_order():
    box = [[0, 0, 10, 10]]
    m = match_image(box * 3, [0, 0, 0], [0.5, 0.5, 0.5], box, [0])
    assert m.pred_match().tolist() == ["tp", "fp", "fp"]
    assert m.gt_pred[0].tolist() == [0] and m.counts() == (1, 2, 0)


def test_several_predictions_on_one_ground_truth():
    gt = [[0, 0, 10, 10], [20, 0, 30, 10]]
    pred = [[0, 0, 10, 9], [0, 0, 10, 10], [20, 0, 30, 10]]  # IoU 0.9, 1.0, 1.0
    m = match_image(pred, [0, 0, 0], [0.9, 0.8, 0.7], gt, [0, 0])
    # The higher score takes the box even though a later prediction overlaps it better.
    assert m.pred_match().tolist() == ["tp", "fp", "tp"]
    assert m.pred_gt[0].tolist() == [0, -1, 1]
    np.testing.assert_allclose(m.pred_iou(), [0.9, np.nan, 1.0])
    np.testing.assert_allclose(m.gt_iou(), [0.9, 1.0])
    assert m.gt_match().tolist() == ["tp", "tp"]


def test_best_iou_wins_and_ties_go_to_the_later_box():
    pred = [[0, 0, 10, 10]]
    m = match_image(pred, [0], [0.9], [[0, 0, 10, 8], [0, 0, 10, 9], [0, 0, 10, 9]], [0, 0, 0])
    assert m.pred_gt[0].tolist() == [2]  # 0.9 twice: COCOeval keeps the later one
    assert m.gt_match().tolist() == ["fn", "fn", "tp"]


def test_classes_on_one_side_only():
    m = match_image([[0, 0, 10, 10]], [1], [0.9], [[0, 0, 10, 10]], [2])
    assert m.pred_match().tolist() == ["fp"] and m.gt_match().tolist() == ["fn"]
    ap = AveragePrecision()
    ap.add(match_image([[0, 0, 10, 10]], [1], [0.9], [[0, 0, 10, 10]], [2], None,
                       COCO_IOU_THRESHOLDS))
    result = ap.result()
    assert result["ap50_per_class"] == {2: 0.0}  # class 1 has no ground truth: no AP
    assert result["map"] == 0.0


def test_empty_images():
    none = match_image(np.zeros((0, 4)), [], [], np.zeros((0, 4)), [])
    assert none.counts() == (0, 0, 0) and none.pred_match().tolist() == []
    only_gt = match_image(np.zeros((0, 4)), [], [], [[0, 0, 1, 1]], [0])
    assert only_gt.counts() == (0, 0, 1) and only_gt.gt_match().tolist() == ["fn"]
    only_pred = match_image([[0, 0, 1, 1]], [0], [0.3], np.zeros((0, 4)), [])
    assert only_pred.counts() == (0, 1, 0) and np.isnan(only_pred.pred_iou()).all()
    assert AveragePrecision().result() == {"ap50_per_class": {}, "ap50": None, "map": None}


def test_crowd_boxes_take_many_predictions_and_are_never_missed():
    crowd = [[0, 0, 100, 100]]
    pred = [[10, 10, 20, 20], [30, 30, 40, 40], [200, 200, 210, 210]]
    m = match_image(pred, [0, 0, 0], [0.9, 0.8, 0.7], crowd, [0], gt_crowd=[True])
    assert m.pred_match().tolist() == ["ignored", "ignored", "fp"]
    assert m.gt_match().tolist() == ["ignored"]
    assert m.counts() == (0, 1, 0)
    np.testing.assert_allclose(m.pred_iou()[:2], [1.0, 1.0])  # intersection / prediction area
    # A regular box is preferred to a crowd box even with a lower IoU.
    m = match_image([[0, 0, 10, 10]], [0], [0.9], [[0, 0, 10, 10], [0, 0, 10, 6]], [0, 0],
                    gt_crowd=[True, False])
    assert m.pred_gt[0].tolist() == [1] and m.pred_match().tolist() == ["tp"]


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5, float("nan")])
def test_bad_iou_threshold(threshold):
    with pytest.raises(ValueError, match="iou_thresholds"):
        match_image([[0, 0, 1, 1]], [0], [0.5], [[0, 0, 1, 1]], [0], iou_thresholds=[threshold])


def test_iou_threshold_one_matches_equal_boxes():
    m = match_image([[0, 0, 3, 3]], [0], [0.5], [[0, 0, 3, 3]], [0], iou_thresholds=[1.0])
    assert m.counts() == (1, 0, 0)


def test_a_batch_matched_at_once_equals_each_image_matched_alone():
    """Padding images to the busiest one must not change any match."""
    from armory_datasets.detection import match_images

    rng = np.random.default_rng(11)
    images = [_random_image(rng, num_classes=3, crowd=True) for _ in range(120)]
    keys = ("pred_boxes", "pred_labels", "pred_scores", "gt_boxes", "gt_labels", "gt_crowd")
    together = match_images([tuple(i[k] for k in keys) for i in images], COCO_IOU_THRESHOLDS)
    for image, batched in zip(images, together):
        alone = match_image(*(image[k] for k in keys), iou_thresholds=COCO_IOU_THRESHOLDS)
        for field in ("pred_gt", "gt_pred", "pred_ignored", "iou", "order"):
            assert np.array_equal(getattr(batched, field), getattr(alone, field)), field
    reference = coco_eval(images, 3)
    for i, match in enumerate(together):
        for k, (gt_index, ignored) in coco_matches(reference, i).items():
            assert np.array_equal(match.pred_gt[:, k], gt_index) and np.array_equal(match.pred_ignored[:, k], ignored)
