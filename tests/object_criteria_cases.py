"""Random records with random boxes, and random object criteria, for the property tests.

Boxes carry every field of the vocabulary's box struct with nulls where an export has
them (score of ground truth, iou/matched_index of unmatched boxes) and a few more
(a null match) so the null semantics are exercised; lists are sometimes empty or null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from hypothesis import strategies as st

from armory_datasets.criteria import nodes as N
from armory_datasets.schema import VOCABULARY

CHAINS = ("benign", "fgsm")
OBJECT_COLUMNS = ("ground_truth_objects", "predicted_objects")
MATCHES = ("tp", "fp", "fn", "ignored")
NUMBER_FIELDS = {"label": (0, 4), "x_min": (0.0, 20.0), "y_min": (0.0, 20.0),
                 "x_max": (5.0, 30.0), "y_max": (5.0, 30.0), "score": (0.0, 1.0),
                 "iou": (0.0, 1.0), "matched_index": (0, 5)}


def _box(rng: np.random.Generator, kind: str) -> dict:
    match = str(rng.choice(MATCHES)) if rng.random() > 0.05 else None
    matched = match == "tp"
    x, y = np.round(rng.uniform(0, 20, 2), 1)
    return {"label": int(rng.integers(0, 5)), "x_min": float(x), "y_min": float(y),
            "x_max": float(x + np.round(rng.uniform(1, 10), 1)),
            "y_max": float(y + np.round(rng.uniform(1, 10), 1)),
            "score": None if kind == "gt" else float(np.round(rng.random(), 1)),
            "match": match, "iou": float(np.round(rng.uniform(0.5, 1), 1)) if matched else None,
            "matched_index": int(rng.integers(0, 5)) if matched else None}


def _boxes(rng: np.random.Generator, kind: str):
    r = rng.random()
    if r < 0.08:
        return None
    if r < 0.2:
        return []
    return [_box(rng, kind) for _ in range(int(rng.integers(1, 6)))]


@dataclass
class ObjectBatch:
    chain: str
    global_indices: np.ndarray
    columns: dict

    def __len__(self) -> int:
        return len(self.global_indices)

    def column(self, name: str):
        return self.columns[name]


@dataclass
class ObjectTable:
    table: pa.Table
    batch_sizes: list[int]

    def batches(self, as_arrow: bool):
        """(chain, batch_idx, batch) per chain; object columns as Python lists or Arrow."""
        for chain in CHAINS:
            rows = self.table.filter(pa.compute.equal(self.table["chain"], chain))
            start = 0
            for batch_idx, size in enumerate(self.batch_sizes):
                part = rows.slice(start, size)
                start += size
                columns = {"quality": part["quality"].to_numpy()}
                for name in OBJECT_COLUMNS:
                    columns[name] = part[name] if as_arrow else part[name].to_pylist()
                indices = part["sample_index"].to_numpy().astype(np.int64)
                yield chain, batch_idx, ObjectBatch(chain, indices, columns)


def make_object_table(seed: int, batch_sizes: list[int]) -> ObjectTable:
    rng = np.random.default_rng(seed)
    n = sum(batch_sizes)
    rows: dict[str, list] = {k: [] for k in ("record_key", "chain", "batch", "sample_index",
                                             "quality", *OBJECT_COLUMNS)}
    for chain in CHAINS:
        batch = np.repeat(np.arange(len(batch_sizes)), batch_sizes)
        for i in range(n):
            rows["record_key"].append(f"{chain}/{i}")
            rows["chain"].append(chain)
            rows["batch"].append(int(batch[i]))
            rows["sample_index"].append(i)
            rows["quality"].append(float(np.round(rng.random(), 1)))
            rows["ground_truth_objects"].append(_boxes(rng, "gt"))
            rows["predicted_objects"].append(_boxes(rng, "pred"))
    types = {"record_key": pa.string(), "chain": pa.string(), "batch": pa.int64(),
             "sample_index": pa.int64(), "quality": pa.float64(),
             **{c: VOCABULARY[c].arrow_type for c in OBJECT_COLUMNS}}
    return ObjectTable(pa.table({k: pa.array(v, type=types[k]) for k, v in rows.items()}),
                       batch_sizes)


@st.composite
def box_tests(draw) -> N.Criterion:
    name = draw(st.sampled_from(tuple(NUMBER_FIELDS) + ("match",)))
    field = N.Field(name)
    if name == "match":
        if draw(st.booleans()):
            return field.isin(draw(st.lists(st.sampled_from(MATCHES + ("other",)), max_size=3)))
        return N.Compare(draw(st.sampled_from(["==", "!="])), field,
                         N.Literal(draw(st.sampled_from(MATCHES))))
    low, high = NUMBER_FIELDS[name]
    if isinstance(low, int):
        literal = st.integers(low - 1, high + 1)
    else:
        literal = st.floats(low, high, allow_nan=False).map(lambda x: round(x, 1))
    kind = draw(st.sampled_from(["compare", "isin", "isclose"]))
    if kind == "isin":
        return field.isin(draw(st.lists(literal, max_size=3)))
    if kind == "isclose" and not isinstance(low, int):
        return field.isclose(draw(literal), rtol=0.0, atol=draw(st.sampled_from([0.05, 0.2])))
    return N.Compare(draw(st.sampled_from(N.COMPARE_OPS)), field, N.Literal(draw(literal)))


def box_predicates():
    return st.recursive(
        st.one_of(box_tests(), st.builds(N.Const, st.booleans())),
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: N.all_of(*cs)),
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: N.any_of(*cs)),
            inner.map(N.Not)),
        max_leaves=4)


@st.composite
def object_leaves(draw) -> N.Criterion:
    column = draw(st.sampled_from(OBJECT_COLUMNS))
    predicate = draw(box_predicates())
    kind = draw(st.sampled_from(["any", "all", "count"]))
    if kind == "count":
        value: N.Value = N.CountObjects(column, predicate)
        if draw(st.booleans()):
            value = value - N.CountObjects(draw(st.sampled_from(OBJECT_COLUMNS)))
        return N.Compare(draw(st.sampled_from(N.COMPARE_OPS)), value,
                         N.Literal(draw(st.integers(-1, 3))))
    return N.ObjectsTest(kind, column, predicate)


def object_criteria():
    scalar = st.one_of(
        st.builds(lambda op, v: N.Compare(op, N.Field("quality"), N.Literal(v)),
                  st.sampled_from(N.COMPARE_OPS), st.sampled_from([0.2, 0.5, 0.8])),
        st.builds(N.CountCriterion, st.just("first_n_batches"), st.integers(0, 3)))
    return st.recursive(
        st.one_of(object_leaves(), scalar),
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: N.all_of(*cs)),
            st.lists(inner, min_size=2, max_size=3).map(lambda cs: N.any_of(*cs)),
            inner.map(N.Not)),
        max_leaves=4)


def export_time_keys(table: ObjectTable, criterion: N.Criterion, as_arrow: bool) -> set[str]:
    keys = set()
    for chain, batch_idx, batch in table.batches(as_arrow):
        for position in np.flatnonzero(criterion.mask(chain, batch_idx, batch)):
            keys.add(f"{chain}/{int(batch.global_indices[position])}")
    return keys
