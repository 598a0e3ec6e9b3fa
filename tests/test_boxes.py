"""Hand-checked cases for armory_datasets.boxes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armory_datasets.boxes import box_area, box_iou, nms


def test_box_iou_hand_checked():
    a = np.array([[0, 0, 10, 10], [0, 0, 4, 4]], dtype=np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [2, 2, 6, 6]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 4) and iou.dtype == np.float64
    # overlap 5x10=50, union 100+100-50=150
    np.testing.assert_allclose(iou[0], [50 / 150, 1.0, 0.0, 16 / 100])
    # [0,0,4,4] vs [2,2,6,6]: inter 2x2=4, union 16+16-4=28
    np.testing.assert_allclose(iou[1], [0.0, 16 / 100, 0.0, 4 / 28])


def test_box_iou_edges():
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    # touching boxes and zero-area boxes have IoU 0 (no division warnings)
    assert box_iou([[0, 0, 1, 1]], [[1, 0, 2, 1]])[0, 0] == 0.0
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0
    np.testing.assert_allclose(box_area([[0, 0, 2, 3], [3, 3, 1, 1]]), [6.0, 0.0])


def test_nms_hand_checked():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: score 0.6
            [1, 0, 11, 10],  # 1: score 0.9, IoU with 0 = 90/110 = 0.818
            [20, 20, 30, 30],  # 2: score 0.5, disjoint
            [5, 0, 15, 10],  # 3: score 0.8, IoU with 1 = 60/140 = 0.43
        ]
    )
    scores = np.array([0.6, 0.9, 0.5, 0.8])
    keep = nms(boxes, scores, 0.5)
    assert keep.dtype == np.int64
    assert keep.tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 3, 0, 2]


def test_nms_empty_and_ties():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    same = np.array([[0, 0, 1, 1]] * 3)
    assert nms(same, np.array([0.5, 0.5, 0.5]), 0.5).tolist() == [0]
    with pytest.raises(ValueError):
        nms(same, np.array([0.5]), 0.5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, 50)] * 4, st.floats(0, 1)), min_size=1, max_size=15))
def test_nms_properties(rows):
    boxes = np.array([[min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)] for x0, y0, x1, y1, _ in rows])
    scores = np.array([r[4] for r in rows])
    keep = nms(boxes, scores, 0.5)
    iou = box_iou(boxes, boxes)
    # kept boxes are pairwise below the threshold and sorted by score
    pairs = iou[np.ix_(keep, keep)]
    np.fill_diagonal(pairs, 0.0)
    assert (pairs <= 0.5).all()
    assert (np.diff(scores[keep]) <= 0).all()
    # every dropped box overlaps a kept box with a score at least as high
    for i in set(range(len(boxes))) - set(keep.tolist()):
        assert any(iou[i, k] > 0.5 and scores[k] >= scores[i] for k in keep)
