"""Upstream armory-library's criteria test cases, run against ours with the same inputs.

The tables are those of ``library/tests/unit/test_export_criteria.py`` in
twosixlabs/armory-library. Leaf criteria are compared exactly (``True``/``False`` or a
list). Upstream's combinators return sets and upstream's tests compare them with
``set(expected)``; ours return lists (never one-shot generators), so those cases are
compared as the selected positions.
"""

from unittest.mock import MagicMock

import numpy as np
import pytest
import torch

import armory_datasets.export.criteria as criteria


def sized_batch(size: int, batch_idx: int = 0) -> MagicMock:
    """Upstream's mock batch, with the global indices its tables imply (full batches):
    ours never guesses them from ``batch_idx * len(batch)``, wrong after a short batch."""
    batch = MagicMock()
    batch.__len__ = MagicMock(return_value=size)
    batch.global_indices = np.arange(batch_idx * size, (batch_idx + 1) * size)
    return batch


def selected(result, size: int) -> set[int]:
    if result is True:
        return set(range(size))
    if result is False:
        return set()
    assert isinstance(result, list)
    return set(result)


def test_always():
    assert criteria.always()("", 0, sized_batch(2)) is True
    assert criteria.always()(0, sized_batch(2)) is True


@pytest.mark.parametrize(
    "n,batch_idx,expected",
    [(0, 0, False), (0, 1, False), (0, 2, False), (1, 0, True), (1, 1, True),
     (1, 2, True), (2, 0, False), (2, 1, True), (2, 2, False), (2, 3, True)],
)
def test_every_n_batches(n, batch_idx, expected):
    assert criteria.every_n_batches(n)("", batch_idx, sized_batch(2)) is expected
    assert criteria.every_n_batches(n)(batch_idx, sized_batch(2)) is expected


@pytest.mark.parametrize(
    "n,batch_idx,expected",
    [(0, 0, False), (0, 1, False), (0, 2, False), (1, 0, True), (1, 1, False),
     (1, 2, False), (2, 0, True), (2, 1, True), (2, 2, False), (2, 3, False)],
)
def test_first_n_batches(n, batch_idx, expected):
    assert criteria.first_n_batches(n)("", batch_idx, sized_batch(2)) is expected


@pytest.mark.parametrize(
    "n,batch_idx,batch_size,expected",
    [(0, 0, 2, False), (0, 1, 2, False), (0, 2, 2, False), (1, 0, 2, [0, 1]),
     (1, 1, 2, [0, 1]), (2, 0, 2, [1]), (2, 1, 2, [1]), (2, 0, 4, [1, 3]), (2, 1, 4, [1, 3])],
)
def test_every_n_samples(n, batch_idx, batch_size, expected):
    assert criteria.every_n_samples(n)("", batch_idx, sized_batch(batch_size, batch_idx)) == expected


@pytest.mark.parametrize(
    "n,batch_idx,batch_size,expected",
    [(0, 0, 2, False), (0, 1, 2, False), (0, 2, 2, False), (1, 0, 2, [0, 1]),
     (1, 1, 2, [0, 1]), (2, 0, 2, [1]), (2, 1, 2, [1]), (3, 0, 4, [2]), (3, 1, 4, [2])],
)
def test_every_n_samples_of_batch(n, batch_idx, batch_size, expected):
    result = criteria.every_n_samples_of_batch(n)("", batch_idx, sized_batch(batch_size, batch_idx))
    assert result == expected


@pytest.mark.parametrize(
    "n,batch_idx,batch_size,expected",
    [(0, 0, 2, False), (0, 1, 2, False), (0, 2, 2, False), (1, 0, 2, [0]), (1, 1, 2, False),
     (2, 0, 2, [0, 1]), (2, 1, 2, False), (2, 0, 4, [0, 1]), (2, 1, 4, False)],
)
def test_first_n_samples(n, batch_idx, batch_size, expected):
    assert criteria.first_n_samples(n)("", batch_idx, sized_batch(batch_size, batch_idx)) == expected


@pytest.mark.parametrize(
    "n,batch_idx,batch_size,expected",
    [(0, 0, 2, False), (0, 1, 2, False), (0, 2, 2, False), (1, 0, 2, [0]), (1, 1, 2, [0]),
     (2, 0, 2, [0, 1]), (2, 1, 2, [0, 1]), (2, 0, 4, [0, 1]), (2, 1, 4, [0, 1])],
)
def test_first_n_samples_of_batch(n, batch_idx, batch_size, expected):
    result = criteria.first_n_samples_of_batch(n)("", batch_idx, sized_batch(batch_size, batch_idx))
    assert result == expected


@pytest.mark.parametrize(
    "names,chain_name,expected",
    [([], "benign", False), ([], "attack", False), (["benign"], "benign", True),
     (["benign"], "attack", False), (["benign", "attack"], "benign", True),
     (["benign", "attack"], "attack", True)],
)
def test_chains(names, chain_name, expected):
    assert criteria.chains(names)(chain_name, 0, sized_batch(2)) is expected


@pytest.mark.parametrize(
    "indices,batch_idx,batch_size,expected",
    [([], 0, 2, False), ([], 1, 2, False), ([1, 2], 0, 2, [1]), ([1, 2], 1, 2, [0]),
     ([3], 0, 2, []), ([3], 1, 2, [1])],
)
def test_samples(indices, batch_idx, batch_size, expected):
    assert criteria.samples(indices)("", batch_idx, sized_batch(batch_size, batch_idx)) == expected


@pytest.mark.parametrize(
    "n_batch,n_sample,batch_idx,batch_size,expected",
    [(0, 1, 0, 4, []), (1, 0, 0, 4, []), (1, 1, 0, 4, [0, 1, 2, 3]), (1, 1, 1, 4, [0, 1, 2, 3]),
     (2, 1, 0, 4, []), (2, 1, 1, 4, [0, 1, 2, 3]), (1, 2, 0, 4, [1, 3]), (1, 2, 1, 4, [1, 3]),
     (2, 2, 0, 4, []), (2, 2, 1, 4, [1, 3]), (2, 2, 2, 4, []), (2, 2, 3, 4, [1, 3])],
)
def test_all_satisfied(n_batch, n_sample, batch_idx, batch_size, expected):
    criterion = criteria.all_satisfied(
        criteria.every_n_batches(n_batch), criteria.every_n_samples_of_batch(n_sample)
    )
    result = criterion("", batch_idx, sized_batch(batch_size, batch_idx))
    assert selected(result, batch_size) == set(expected)


@pytest.mark.parametrize(
    "n_batch,n_sample,batch_idx,batch_size,expected",
    [(0, 1, 0, 4, [0, 1, 2, 3]), (1, 0, 0, 4, [0, 1, 2, 3]), (1, 1, 0, 4, [0, 1, 2, 3]),
     (1, 1, 1, 4, [0, 1, 2, 3]), (2, 1, 0, 4, [0, 1, 2, 3]), (2, 1, 1, 4, [0, 1, 2, 3]),
     (1, 2, 0, 4, [0, 1, 2, 3]), (1, 2, 1, 4, [0, 1, 2, 3]), (2, 2, 0, 4, [1, 3]),
     (2, 2, 1, 4, [0, 1, 2, 3]), (2, 2, 2, 4, [1, 3]), (2, 2, 3, 4, [0, 1, 2, 3]),
     (2, 3, 0, 4, [2]), (2, 3, 1, 4, [0, 1, 2, 3]), (2, 3, 2, 4, [0, 3]),
     (2, 3, 3, 4, [0, 1, 2, 3])],
)
def test_any_satisfied(n_batch, n_sample, batch_idx, batch_size, expected):
    criterion = criteria.any_satisfied(
        criteria.every_n_batches(n_batch), criteria.every_n_samples(n_sample)
    )
    result = criterion("", batch_idx, sized_batch(batch_size, batch_idx))
    assert selected(result, batch_size) == set(expected)


@pytest.mark.parametrize(
    "criteria_value,batch_size,expected",
    [(False, 2, True), (True, 2, False), ([0, 1], 2, set()), ([], 2, True), ([0], 2, {1}),
     ([1], 2, {0})],
)
def test_not_satisfied(criteria_value, batch_size, expected):
    inner = MagicMock(return_value=criteria_value)
    result = criteria.not_satisfied(inner)("", 0, sized_batch(batch_size))
    want = selected(expected, batch_size) if isinstance(expected, bool) else expected
    assert selected(result, batch_size) == want
    inner.assert_called_once()


# Upstream's metric tests give a mock batch of length 0 with metrics of length 4; ours
# checks that a metric has one value per sample, so the batch has the metric's length.
def metric_batch(metric_value) -> MagicMock:
    size = len(metric_value) if isinstance(metric_value, torch.Tensor) and metric_value.dim() else 4
    return sized_batch(size)


@pytest.mark.parametrize(
    "metric_value,threshold,expected",
    [(1, 5, False), (5, 5, True), (7, 5, False), (True, True, True), (True, False, False),
     (False, True, False), (False, False, True), (torch.tensor(3), 5, False),
     (torch.tensor(5), 5, True), (torch.tensor(7), 5, False),
     (torch.tensor(True), True, True), (torch.tensor(True), False, False),
     (torch.tensor(False), True, False), (torch.tensor(False), False, True),
     (torch.tensor([1, 2, 3, 4]), 5, []), (torch.tensor([1, 5, 3, 4]), 5, [1]),
     (torch.tensor([5, 5, 5, 5]), 5, [0, 1, 2, 3]),
     (torch.tensor([True, False, False, True]), True, [0, 3]),
     (torch.tensor([True, False, False, True]), False, [1, 2]),
     (torch.tensor([3]), 5, []), (torch.tensor([5]), 5, [0]), (torch.tensor([7]), 5, []),
     (torch.tensor([True]), True, [0]), (torch.tensor([True]), False, []),
     (torch.tensor([False]), True, []), (torch.tensor([False]), False, [0])],
)
def test_when_metric_eq(metric_value, threshold, expected):
    metric = MagicMock(return_value=metric_value)
    result = criteria.when_metric_eq(metric, threshold)("", 0, metric_batch(metric_value))
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    "metric_value,threshold,expected",
    [(0.1, 0.5, True), (0.5, 0.5, False), (0.7, 0.5, False), (torch.tensor(0.3), 0.5, True),
     (torch.tensor(0.7), 0.5, False), (torch.tensor([0.1, 0.2, 0.3, 0.4]), 0.5, [0, 1, 2, 3]),
     (torch.tensor([0.1, 0.5, 0.3, 0.4]), 0.5, [0, 2, 3]),
     (torch.tensor([0.6, 0.5, 0.8, 0.7]), 0.5, []), (torch.tensor([0.3]), 0.5, [0]),
     (torch.tensor([0.7]), 0.5, [])],
)
def test_when_metric_lt(metric_value, threshold, expected):
    metric = MagicMock(return_value=metric_value)
    result = criteria.when_metric_lt(metric, threshold)("", 0, metric_batch(metric_value))
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    "metric_value,threshold,expected",
    [(0.1, 0.5, False), (0.5, 0.5, False), (0.7, 0.5, True), (torch.tensor(0.3), 0.5, False),
     (torch.tensor(0.7), 0.5, True), (torch.tensor([0.1, 0.2, 0.3, 0.4]), 0.5, []),
     (torch.tensor([0.1, 0.6, 0.7, 0.4]), 0.5, [1, 2]),
     (torch.tensor([0.6, 0.9, 0.8, 0.7]), 0.5, [0, 1, 2, 3]), (torch.tensor([0.3]), 0.5, []),
     (torch.tensor([0.7]), 0.5, [0])],
)
def test_when_metric_gt(metric_value, threshold, expected):
    metric = MagicMock(return_value=metric_value)
    result = criteria.when_metric_gt(metric, threshold)("", 0, metric_batch(metric_value))
    assert result == expected and type(result) is type(expected)
