"""Export-time semantics of the criteria beyond upstream's cases, and their defects fixed."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from criteria_cases import TableBatch

from armory_datasets import criteria as C
from armory_datasets.criteria import nodes as N


def batch_of(indices, chain="benign", **columns) -> TableBatch:
    n = len(indices)
    columns = {k: np.asarray(v) for k, v in columns.items()}
    return TableBatch(chain, np.asarray(indices, dtype=np.int64), columns or {"x": np.zeros(n)})


def exported(criterion, batches) -> list[int]:
    chosen = []
    for batch_idx, batch in enumerate(batches):
        chosen += [int(batch.global_indices[p]) for p in criterion.mask(batch_idx, batch).nonzero()[0]]
    return chosen


SHORT_LAST = [batch_of([0, 1, 2, 3]), batch_of([4, 5, 6, 7]), batch_of([8, 9])]


def test_global_index_criteria_count_a_short_last_batch_right():
    # upstream computes batch_idx * len(batch) and re-exports the last batch here
    assert exported(C.first_n_samples(6), SHORT_LAST) == [0, 1, 2, 3, 4, 5]
    assert exported(C.every_n_samples(3), SHORT_LAST) == [2, 5, 8]
    assert exported(C.samples([9, 8, 1]), SHORT_LAST) == [1, 8, 9]


def test_results_are_lists_not_generators():
    result = C.every_n_samples_of_batch(2)(0, batch_of([0, 1, 2, 3]))
    assert result == [1, 3] and type(result) is list
    assert C.every_n_samples_of_batch(2)(0, batch_of([0, 1, 2, 3])) == result  # reusable


def test_mask_is_a_numpy_bool_array_of_the_batch_length():
    batch = batch_of([0, 1, 2, 3])
    assert C.first_n_batches(1).mask(0, batch).tolist() == [True] * 4
    mask = C.every_n_samples_of_batch(2).mask(0, batch)
    assert mask.dtype == bool and mask.tolist() == [False, True, False, True]


@pytest.mark.parametrize(
    "values",
    [np.array([0.1, 0.9, 0.3]), torch.tensor([0.1, 0.9, 0.3]), [0.1, 0.9, 0.3],
     torch.tensor([0.1, 0.9, 0.3], dtype=torch.float64).requires_grad_()],
)
def test_metric_results_of_numpy_torch_and_lists(values):
    criterion = C.when_metric_lt(lambda batch: values, 0.5)
    assert criterion(0, batch_of([0, 1, 2])) == [0, 2]


def test_numpy_and_torch_booleans_work_in_when_metric_in():
    flags = lambda batch: np.array([True, False, True])  # noqa: E731
    assert C.when_metric_in(flags, [True])(0, batch_of([0, 1, 2])) == [0, 2]
    assert C.when_metric_in(lambda b: torch.tensor([3, 6, 23]), [6, 23])(0, batch_of([0, 1, 2])) == [1, 2]
    assert C.when_metric_in(lambda b: np.bool_(True), [True])(0, batch_of([0])) is True


def test_a_two_dimensional_metric_is_an_error_naming_the_metric():
    metric = N.Field("logits", lambda batch: np.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"logits: metric gave shape \(2, 10\)"):
        C.when_metric_gt(metric, 0.5)(0, batch_of([0, 1]))
    with pytest.raises(ValueError, match="3 values for a batch of 2"):
        C.when_metric_gt(lambda b: [1, 2, 3], 0)(0, batch_of([0, 1]))


def test_isclose_keeps_a_float_threshold_against_an_integer_metric():
    ints = lambda batch: torch.tensor([1, 2, 3])  # noqa: E731
    # upstream casts 1.5 to the metric's int dtype (1) and selects only the first
    assert C.when_metric_isclose(ints, 1.5, rtol=0, atol=0.5)(0, batch_of([0, 1, 2])) == [0, 1]
    assert C.when_metric_isclose(ints, 1.5)(0, batch_of([0, 1, 2])) == []


def test_missing_values_compare_false_and_their_negation_true():
    batch = batch_of([0, 1], score=np.array([np.nan, 0.2]))
    assert C.parse("score < 0.5")(0, batch) == [1]
    assert C.parse("score != 0.5")(0, batch) == [1]
    assert C.parse("~(score < 0.5)")(0, batch) == [0]


def test_vocabulary_columns_and_keys_at_export_time():
    batch = batch_of([10, 11, 12], chain="fgsm", target=np.array([6, 1, 23]))
    assert C.parse("target in [6, 23] & chain == 'fgsm'")(3, batch) == [0, 2]
    assert C.parse("batch == 3 & position >= 1")(3, batch) == [1, 2]
    assert C.parse("sample_index % 2 == 0")(3, batch) == [0, 2]
    assert C.chains(["benign"])(3, batch) is False


def test_batch_targets_and_predictions_are_named_metrics():
    batch = batch_of([0, 1], target=np.array([6, 2]), prediction=np.array([6, 3]))
    assert C.when_metric_in(C.batch_targets(), [6, 23])(0, batch) == [0]
    assert (C.batch_predictions() == C.batch_targets())(0, batch) == [0]
    assert [m.name for m in (C.batch_targets().isin([6]) & (C.batch_predictions() < 3)).metrics()] == [
        "target", "prediction"]


class Named:
    name = "max_pred"

    def __call__(self, batch):
        return np.array([0.2, 0.8])


def test_named_metrics_compile_and_anonymous_ones_say_to_name_them():
    named = C.when_metric_gt(Named(), 0.5)
    assert str(named) == "max_pred > 0.5"
    assert named(0, batch_of([0, 1])) == [1]
    assert "max_pred" in named.to_sql()
    anonymous = C.when_metric_gt(lambda batch: np.array([0.2, 0.8]), 0.5)
    assert anonymous(0, batch_of([0, 1])) == [1]  # works at export time
    for compile_ in (anonymous.to_sql, anonymous.to_arrow):
        with pytest.raises(C.UnnamedMetricError, match="give the metric a name"):
            compile_()


def test_criteria_are_values_comparable_hashable_picklable_printable():
    criterion = C.every_n_batches(5) | (C.col("target").isin([6, 23]) & (C.col("confidence") < 0.5))
    same = C.parse("every_n_batches(5) | (target in [6, 23] & confidence < 0.5)")
    assert criterion == same and hash(criterion) == hash(same)
    assert criterion != C.every_n_batches(4)
    assert pickle.loads(pickle.dumps(criterion)) == criterion
    assert C.parse(str(criterion)) == criterion
    assert repr(C.always()) == "criterion('always()')"
    assert len({C.first_n_batches(2), C.parse("first_n_batches(2)")}) == 1


def test_criteria_refuse_python_truth_tests():
    with pytest.raises(TypeError, match="use & | ~|combine criteria"):
        bool(C.col("x") < 1)
    with pytest.raises(TypeError):
        0.2 < C.col("x") < 0.5  # noqa: B015  (a chained comparison needs a truth value)


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="every_n_batches: n=-1"):
        C.every_n_batches(-1)
    with pytest.raises(TypeError, match="indices"):
        C.samples("12")
    with pytest.raises(ValueError, match="not finite"):
        C.when_metric_lt("confidence", float("nan"))


def test_negative_zero_equals_zero_in_isin_as_in_comparisons():
    import pyarrow as pa

    table = pa.table({"score": [-0.0, 0.0, 0.5]})
    criterion = C.col("score").isin([0.0])
    assert table.filter(criterion.to_arrow()).num_rows == 2
    assert criterion(0, batch_of([0, 1, 2], score=np.array([-0.0, 0.0, 0.5]))) == [0, 1]
