"""Named per-sample metrics on hand-checked cases."""

import pickle

import numpy as np
import pytest
import torch

from armory_datasets.data import Images, ImageClassificationBatch, ObjectDetectionBatch, Objects
from armory_datasets.metrics import (
    Confidence,
    Correct,
    MeanIoU,
    NumPredictions,
    NumTargets,
    Precision,
    Recall,
    default_metrics,
    match_objects,
    named_metric,
    summarize,
)

torch.set_num_threads(1)


def classification():
    logits = np.array([[0.0, np.log(3.0)], [np.log(4.0), 0.0], [0.0, 0.0]])
    return ImageClassificationBatch(Images(np.zeros((3, 1, 2, 2), np.uint8)), [1, 1, 0],
                                    predictions=logits)


def test_correct_and_confidence():
    batch = classification()
    assert Correct()(batch).tolist() == [True, False, True]  # argmax ties pick the first class
    np.testing.assert_allclose(Confidence()(batch), [0.75, 0.8, 0.5])
    assert Correct().aggregate(Correct()(batch)) == {"accuracy": pytest.approx(2 / 3)}
    assert Confidence().aggregate(Confidence()(batch)) == {"mean_confidence": pytest.approx((0.75 + 0.8 + 0.5) / 3)}


def detection_batch():
    # image 0: two targets (labels 0, 1); predictions: one exact hit, one duplicate of it with a
    # lower score, one wrong-label box on target 1, one low-score box below the threshold.
    t0 = Objects([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 1])
    p0 = Objects([[0, 0, 10, 10], [0, 0, 10, 8], [20, 0, 30, 10], [20, 0, 30, 10]],
                 [0, 0, 0, 1], [0.9, 0.8, 0.7, 0.4])
    # image 1: a target, no predictions. image 2: no target, one prediction. image 3: nothing.
    t1 = Objects([[1, 1, 5, 5]], [2])
    p1 = Objects(np.zeros((0, 4)), [], [])
    t2 = Objects(np.zeros((0, 4)), [])
    p2 = Objects([[1, 1, 5, 5]], [2], [0.99])
    # image 4: partial overlap: IoU 50/150 < 0.5 (miss) and 80/100 = 0.8 (hit)
    t4 = Objects([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 0])
    p4 = Objects([[5, 0, 15, 10], [20, 0, 30, 8]], [0, 0], [0.95, 0.6])
    return ObjectDetectionBatch(Images(np.zeros((5, 3, 16, 32), np.uint8)),
                                [t0, t1, t2, t2, t4], [p0, p1, p2, p1, p4])


def test_detection_metrics_hand_checked():
    batch = detection_batch()
    assert NumTargets()(batch).tolist() == [2, 1, 0, 0, 2]
    assert NumPredictions()(batch).tolist() == [3, 0, 1, 0, 2]
    assert NumPredictions(score_threshold=0.0)(batch).tolist() == [4, 0, 1, 0, 2]
    # image 0: 1 match (IoU 1) of 3 predictions and 2 targets
    np.testing.assert_allclose(Precision()(batch), [1 / 3, np.nan, 0.0, np.nan, 0.5])
    np.testing.assert_allclose(Recall()(batch), [0.5, 0.0, np.nan, np.nan, 0.5])
    np.testing.assert_allclose(MeanIoU()(batch), [1.0, np.nan, np.nan, np.nan, 0.8])
    # lowering the score threshold admits the right-label box on target 1
    np.testing.assert_allclose(Recall(score_threshold=0.3)(batch)[0], 1.0)
    np.testing.assert_allclose(Precision(iou_threshold=0.3)(batch)[4], 1.0)


def test_greedy_matching_takes_predictions_by_score():
    target = Objects([[0, 0, 10, 10]], [0])
    # the exact box scores lower, so the shifted box (IoU 80/120) claims the target first
    predictions = Objects([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0], [0.2, 0.9])
    np.testing.assert_allclose(match_objects(predictions, target), [80 / 120])
    # each prediction takes the best still-unmatched target
    two = Objects([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0])
    np.testing.assert_allclose(match_objects(predictions, two), [1.0, 1.0])
    # an IoU tie takes the earlier target; the other target (IoU 60/140) stays unmatched
    tie = Objects([[0, 0, 10, 10], [4, 0, 14, 10]], [0, 0])
    np.testing.assert_allclose(match_objects(predictions, tie), [80 / 120])
    crowded = Objects([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.5, 0.9])
    np.testing.assert_allclose(match_objects(crowded, Objects([[0, 0, 10, 10]], [0])), [1.0])
    assert match_objects(crowded, Objects(np.zeros((0, 4)), [])).shape == (0,)


def _half(batch):
    return np.full(len(batch), 0.5)


def test_named_metric_and_pickling():
    metric = named_metric("half", _half)
    assert metric(classification()).tolist() == [0.5, 0.5, 0.5]
    for m in [metric, Correct(), NumPredictions(0.3), Recall(0.4, 0.1)]:
        assert repr(pickle.loads(pickle.dumps(m))) == repr(m)
    assert repr(Recall(0.4, 0.1)) == "Recall(iou_threshold=0.4, score_threshold=0.1)"


def test_metric_shape_and_batch_kind_errors():
    with pytest.raises(ValueError, match=r"metric 'bad': got shape \(2,\); expected \(3,\)"):
        named_metric("bad", lambda b: [1, 2])(classification())
    with pytest.raises(ValueError, match="expected an ImageClassificationBatch with predictions"):
        Correct()(detection_batch())
    with pytest.raises(ValueError, match="expected an ObjectDetectionBatch"):
        Precision()(classification())
    with pytest.raises(ValueError, match="non-empty string"):
        named_metric("", _half)


def test_summarize_ignores_nan_and_non_numeric():
    batch = detection_batch()
    metrics = default_metrics(batch) + [named_metric("tag", lambda b: np.array(["x"] * len(b)))]
    values = {m.name: [m(batch)] for m in metrics}
    summary = summarize(metrics, values)
    assert summary["mean_precision"] == pytest.approx((1 / 3 + 0.0 + 0.5) / 3)
    assert summary["mean_recall"] == pytest.approx((0.5 + 0.0 + 0.5) / 3)
    assert summary["mean_iou"] == pytest.approx(0.9)
    assert summary["mean_num_targets"] == pytest.approx(1.0)
    assert "mean_tag" not in summary
    assert summarize([Precision()], {"precision": [np.array([np.nan])]}) == {"mean_precision": None}
    assert summarize([Correct()], {}) == {"accuracy": None}
