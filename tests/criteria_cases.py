"""Random sample tables and random criteria, shared by the property tests.

A table holds every column a criterion may read, with the record keys an export
writes; ``batches()`` splits it the way the engine does (per chain, random batch
sizes, a short last batch) into batches that answer ``column(name)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from hypothesis import strategies as st

from armory_datasets.criteria import nodes as N

CHAINS = ("benign", "fgsm")
INT_COLUMNS = {"target": (0, 9), "prediction": (0, 9), "sample_index": (0, 60),
               "batch": (0, 12), "position": (0, 9)}
FLOAT_COLUMNS = {"confidence": (0.0, 1.0), "score": (-1.0, 1.0)}
BOOL_COLUMNS = ("correct",)
STRING_COLUMNS = {"chain": CHAINS, "split": ("train", "$split", "it's \"x\"")}
HOSTILE_STRINGS = ("$chain", "$split", "$$ROOT", "$ground_truth.class_index", "chain",
                   "ground_truth.label", "it's \"x\"", "'", '"', "`split`", "a.b", "other")
"""String literals a backend could misread: field references, quotes, field paths."""


@dataclass
class TableBatch:
    """A batch as criteria see it at export time."""

    chain: str
    global_indices: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.global_indices)

    def column(self, name: str) -> np.ndarray:
        return self.columns[name]


@dataclass
class SampleTable:
    table: pa.Table  # one row per (chain, sample), as an export stores it
    batch_sizes: list[int]

    def batches(self):
        """Yield (chain, batch_idx, batch) exactly as the engine would."""
        data = self.table.to_pydict()
        for chain in CHAINS:
            rows = [i for i, c in enumerate(data["chain"]) if c == chain]
            start = 0
            for batch_idx, size in enumerate(self.batch_sizes):
                chosen = rows[start:start + size]
                start += size
                columns = {}
                for name in ("target", "prediction", "confidence", "score", "correct", "split"):
                    values = [data[name][i] for i in chosen]
                    if name in ("target", "score", "confidence"):
                        values = [np.nan if v is None else v for v in values]
                        columns[name] = np.asarray(values, dtype=np.float64)
                    else:
                        columns[name] = np.asarray(values)
                indices = np.asarray([data["sample_index"][i] for i in chosen], dtype=np.int64)
                yield chain, batch_idx, TableBatch(chain, indices, columns)


def make_table(seed: int, batch_sizes: list[int]) -> SampleTable:
    """A random table whose samples are split into ``batch_sizes`` in every chain."""
    rng = np.random.default_rng(seed)
    n = sum(batch_sizes)
    rows: dict[str, list] = {k: [] for k in (
        "record_key", "chain", "batch", "position", "sample_index", "target", "prediction",
        "confidence", "correct", "score", "split")}
    for chain in CHAINS:
        batch = np.repeat(np.arange(len(batch_sizes)), batch_sizes)
        position = np.concatenate([np.arange(s) for s in batch_sizes])
        target = rng.integers(0, 10, n)
        prediction = np.where(rng.random(n) < 0.7, target, rng.integers(0, 10, n))
        confidence = np.round(rng.random(n), 2)  # few distinct values: equality hits
        score = np.round(rng.uniform(-1, 1, n), 1)
        for i in range(n):
            missing_target = rng.random() < 0.1
            rows["record_key"].append(f"{chain}/{i}")
            rows["chain"].append(chain)
            rows["batch"].append(int(batch[i]))
            rows["position"].append(int(position[i]))
            rows["sample_index"].append(i)
            rows["target"].append(None if missing_target else int(target[i]))
            rows["prediction"].append(int(prediction[i]))
            rows["confidence"].append(float(confidence[i]))
            rows["correct"].append(bool(not missing_target and target[i] == prediction[i]))
            rows["score"].append(None if rng.random() < 0.15 else float(score[i]))
            rows["split"].append(str(rng.choice(STRING_COLUMNS["split"])))
    types = {"record_key": pa.string(), "chain": pa.string(), "batch": pa.int64(),
             "position": pa.int64(), "sample_index": pa.int64(), "target": pa.int64(),
             "prediction": pa.int64(), "confidence": pa.float64(), "correct": pa.bool_(),
             "score": pa.float64(), "split": pa.string()}
    table = pa.table({k: pa.array(v, type=types[k]) for k, v in rows.items()})
    return SampleTable(table, batch_sizes)


@st.composite
def batch_sizes(draw) -> list[int]:
    sizes = draw(st.lists(st.integers(1, 8), min_size=1, max_size=7))
    full = sizes[0]
    return [full] * (len(sizes) - 1) + [draw(st.integers(1, full))]  # short last batch


def _literal_for(column: str):
    if column in INT_COLUMNS:
        low, high = INT_COLUMNS[column]
        return st.integers(low - 1, high + 1)
    if column in FLOAT_COLUMNS:
        low, high = FLOAT_COLUMNS[column]
        return st.one_of(st.sampled_from([0.0, -0.0, 0.5, 0.25, -0.5, 0.3]),
                         st.floats(low, high, allow_nan=False).map(lambda x: round(x, 2)))
    if column in BOOL_COLUMNS:
        return st.booleans()
    return st.sampled_from(STRING_COLUMNS[column] + HOSTILE_STRINGS)


COLUMNS = tuple(INT_COLUMNS) + tuple(FLOAT_COLUMNS) + BOOL_COLUMNS + tuple(STRING_COLUMNS)


@st.composite
def comparisons(draw) -> N.Criterion:
    column = draw(st.sampled_from(COLUMNS))
    kind = draw(st.sampled_from(["compare", "isin", "isclose", "arith"]))
    field = N.Field(column)
    if kind == "isin":
        return field.isin(draw(st.lists(_literal_for(column), max_size=4)))
    if kind == "isclose" and column in FLOAT_COLUMNS:
        rtol = draw(st.sampled_from([1e-05, 0.1, 0.0]))
        atol = draw(st.sampled_from([1e-08, 0.05, 0.2]))
        return field.isclose(draw(_literal_for(column)), rtol=rtol, atol=atol)
    if kind == "arith" and column in INT_COLUMNS:
        value = field * draw(st.integers(1, 3)) + draw(st.integers(-2, 2))
        value = value % draw(st.integers(1, 5))
        return N.Compare(draw(st.sampled_from(N.COMPARE_OPS)), value,
                         N.Literal(draw(st.integers(0, 4))))
    op = draw(st.sampled_from(N.COMPARE_OPS if column not in BOOL_COLUMNS else ("==", "!=")))
    return N.Compare(op, field, N.Literal(draw(_literal_for(column))))


def upstream_leaves():
    count = st.builds(
        N.CountCriterion,
        st.sampled_from(["every_n_batches", "first_n_batches", "every_n_samples",
                         "first_n_samples", "every_n_samples_of_batch",
                         "first_n_samples_of_batch"]),
        st.integers(0, 7),
    )
    return st.one_of(
        count,
        st.builds(N.Samples, st.lists(st.integers(0, 60), max_size=8).map(tuple)),
        st.builds(N.Chains, st.lists(st.sampled_from(CHAINS + ("other",)), max_size=2).map(tuple)),
        st.just(N.Always()),
        st.builds(N.Const, st.booleans()),
    )


def criteria_strategy():
    leaves = st.one_of(upstream_leaves(), comparisons())
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: N.all_of(*cs)),
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: N.any_of(*cs)),
            inner.map(N.Not),
        ),
        max_leaves=6,
    )


def export_time_keys(table: SampleTable, criterion: N.Criterion) -> set[str]:
    """Record keys an exporter with this criterion would export, batch by batch."""
    keys = set()
    for chain, batch_idx, batch in table.batches():
        for position in np.flatnonzero(criterion.mask(chain, batch_idx, batch)):
            keys.add(f"{chain}/{int(batch.global_indices[position])}")
    return keys
