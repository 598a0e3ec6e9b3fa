"""open_exports / compare_exports / `query` on several exports: one table keyed by export_id."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from armory_datasets import cli, open_export
from armory_datasets.reading import UnknownColumnError
from armory_datasets.reading_many import compare_exports, open_exports
from armory_datasets.store import ExportWriter

N = 60
CHAINS = ("benign", "fgsm")


def run_export(path: Path, wrong_every: int, extra: dict | None = None, n: int = N) -> Path:
    """A classification export of ``n`` samples in two chains; in chain fgsm every
    ``wrong_every``-th sample is misclassified (prediction target + 1)."""
    with ExportWriter(path, {"name": path.name}, fiftyone=False) as writer:
        name = writer.register_exporter("clf", "Manual", None, {})
        for chain in CHAINS:
            for batch, first in enumerate(range(0, n, 16)):  # a short last batch
                indices = np.arange(first, min(first + 16, n))
                target = indices % 10
                wrong = (indices % wrong_every == 0) if chain == "fgsm" else np.zeros(len(indices), bool)
                prediction = np.where(wrong, (target + 1) % 10, target)
                fields = {"target": target, "prediction": prediction, "correct": ~wrong,
                          "confidence": np.where(wrong, 0.4, 0.9), **(extra or {})}
                fields = {k: v if isinstance(v, np.ndarray) else np.full(len(indices), v)
                          for k, v in fields.items()}
                writer.add_records(name, chain, indices, fields, batch=batch,
                                   positions=indices - first,
                                   images=np.zeros((len(indices), 2, 2, 1), np.uint8))
                writer.end_batch()
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, [run_export(root / "run-a", 3), run_export(root / "run-b", 4, {"site": "lab"})]


def keys(table) -> set[tuple[str, str]]:
    return set(zip(table.column("export_id").to_pylist(), table.column("record_key").to_pylist()))


@pytest.mark.parametrize("where", [None, "~correct", "chains(['fgsm']) & confidence < 0.5",
                                   "every_n_samples(7) | target in [1, 2]", "first_n_samples(0)"])
def test_several_exports_are_one_table_keyed_by_export_id(runs, where):
    _, paths = runs
    together = open_exports(paths)
    expected = set().union(*(keys(open_export(p).table(where)) for p in paths))
    table = together.table(where)
    assert keys(table) == expected and table.num_rows == len(expected)
    assert together.count(where) == len(expected)
    assert set(table.column("export_id").to_pylist()) <= set(together.exports)


def test_a_glob_names_the_exports_and_sql_groups_by_export_id(runs):
    root, paths = runs
    together = open_exports(str(root / "run-*"))
    assert [e.path for e in together.exports.values()] == [p.resolve() for p in paths]
    rows = together.sql("SELECT export_id, count(*) AS n, sum(CASE WHEN correct THEN 0 ELSE 1 END) "
                        "AS wrong FROM samples GROUP BY export_id ORDER BY n").to_pylist()
    ids = {p.name: open_export(p).export_id for p in paths}
    assert sorted((r["export_id"], r["n"], r["wrong"]) for r in rows) == sorted(
        [(ids["run-a"], 2 * N, 20), (ids["run-b"], 2 * N, 15)])


def test_a_column_of_one_export_is_null_in_the_other(runs):
    _, paths = runs
    together = open_exports(paths)
    assert "site" in together.columns
    assert together.count("site == 'lab'") == 2 * N
    with pytest.raises(UnknownColumnError, match="unknown column 'sight'"):
        together.count("sight == 'lab'")


def test_a_copy_of_an_export_is_refused_and_no_match_is_an_error(runs, tmp_path):
    _, paths = runs
    shutil.copytree(paths[0], tmp_path / "copy")
    with pytest.raises(ValueError, match="holds export .* as does .*a copy"):
        open_exports([paths[0], tmp_path / "copy"])
    with pytest.raises(FileNotFoundError, match="matches no directory"):
        open_exports(str(tmp_path / "nothing-*"))


def test_compare_exports_joins_on_sample_index(runs):
    _, paths = runs
    same_chain = compare_exports(paths[0], paths[1], chain="fgsm")
    differ = sorted(i for i in range(N) if (i % 3 == 0) != (i % 4 == 0))
    assert same_chain.column("sample_index").to_pylist() == differ
    assert same_chain.column("correct_a").to_pylist() == [i % 3 != 0 for i in differ]
    assert {"record_key_a", "record_key_b", "prediction_a", "prediction_b", "confidence_a",
            "image_path_b"} <= set(same_chain.column_names)
    benign_vs_attack = compare_exports(paths[0], paths[1], chain="benign", chain_b="fgsm")
    assert benign_vs_attack.column("sample_index").to_pylist() == [i for i in range(N) if i % 4 == 0]
    with pytest.raises(ValueError, match="chain 'pgd': not in export"):
        compare_exports(paths[0], paths[1], chain="pgd")


def test_cli_query_accepts_several_exports_and_globs(runs):
    root, paths = runs
    for args in ([str(p) for p in paths], [str(root / "run-*")]):
        out = io.StringIO()
        with redirect_stdout(out):
            assert cli.main(["query", *args, "--where", "~correct", "--columns",
                             "export_id,record_key", "--format", "json"]) == 0
        rows = json.loads(out.getvalue())
        assert len(rows) == 35 and len({(r["export_id"], r["record_key"]) for r in rows}) == 35
