"""`armory-datasets` through subprocesses: every command, its --help, and its exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from armory_datasets import cli, open_export
from armory_datasets.store import ExportWriter
from test_reading_support import digits_export

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, check_code: int | None = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "armory_datasets.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if check_code is not None:
        assert done.returncode == check_code, (done.stdout, done.stderr)
    return done


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return open_export(digits_export(tmp_path_factory.mktemp("cli") / "run1", n=32,
                                     fiftyone=False, name="digits-cli"))


@pytest.mark.parametrize("command", ["", "info", "query", "app", "demo", "pack", "unpack", "commit"])
def test_every_command_has_help(command):
    done = run(*([command] if command else []), "--help")
    assert done.stdout.startswith("usage: armory-datasets") and "--debug" in done.stdout


def test_usage_errors_exit_2():
    assert "the following arguments are required: COMMAND" in run(check_code=2).stderr
    assert "invalid choice: 'frobnicate'" in run("frobnicate", check_code=2).stderr
    assert "required: path" in run("info", check_code=2).stderr


def test_info(export):
    out = run("info", export.path).stdout
    assert f"id          {export.export_id} (status complete" in out
    assert "records     64 (benign 32, fgsm 32)" in out
    assert "exporter    image_classification (HeatmapExporter): always() -> 64 records" in out
    assert "heatmaps 64" in out
    doc = json.loads(run("info", export.path, "--json").stdout)
    assert doc["manifest"] == export.manifest and doc["counts"]["records"] == 64


def test_query_formats(export, tmp_path):
    where, columns = "~correct | confidence < 0.9", "record_key,chain,prediction,confidence"
    expected = export.to_pandas(where, columns.split(","))
    csv = run("query", export.path, "--where", where, "--columns", columns, "--format", "csv").stdout
    assert pd.read_csv(io.StringIO(csv)).record_key.tolist() == expected.record_key.tolist()
    rows = json.loads(run("query", export.path, "--where", where, "--format", "json", "--limit", "3").stdout)
    assert [r["record_key"] for r in rows] == expected.record_key.tolist()[:3] and "logits" in rows[0]
    text = run("query", export.path, "--where", where, "--columns", columns).stdout
    assert text.split("\n")[0].split() == columns.split(",") and len(text.splitlines()) == len(expected) + 1
    done = run("query", export.path, "--where", where, "--format", "parquet", "--output", tmp_path / "q.parquet")
    assert pq.read_table(tmp_path / "q.parquet").num_rows == len(expected)
    assert f"wrote {len(expected)} records to" in done.stderr
    sql = "SELECT chain, count(*) AS n FROM samples GROUP BY chain ORDER BY chain"
    assert json.loads(run("query", export.path, "--sql", sql, "--format", "json").stdout) == [
        {"chain": "benign", "n": 32}, {"chain": "fgsm", "n": 32}]


def test_json_output_is_strict_json(export):
    """NaN and infinities (a metadata column may hold them) are null: JSON has no such numbers."""
    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))

    sql = "SELECT 'inf'::DOUBLE AS x, 'nan'::DOUBLE AS y, [1.5, '-inf'::DOUBLE] AS z, 2.5::DOUBLE AS w"
    assert strict(run("query", export.path, "--sql", sql, "--format", "json").stdout) == [
        {"x": None, "y": None, "z": [1.5, None], "w": 2.5}]
    csv = pd.read_csv(io.StringIO(run("query", export.path, "--sql", sql, "--format", "csv").stdout))
    assert strict(csv.z[0]) == [1.5, None]  # a list cell is JSON text


def caret_column(stderr: str) -> tuple[str, int]:
    """The echoed criteria line and the column the caret points at (both after the indent)."""
    lines = stderr.rstrip("\n").split("\n")
    assert lines[-1].strip() == "^", stderr
    return lines[-2][2:], lines[-1].index("^") - 2


def test_bad_criteria_exit_2_with_a_caret(export):
    done = run("query", export.path, "--where", "confidence < 0.5 && correct", check_code=2)
    assert "armory-datasets query: error: bad criteria:" in done.stderr
    assert caret_column(done.stderr) == ("confidence < 0.5 && correct", len("confidence < 0.5 &"))
    done = run("query", export.path, "--where", "correct & confidnce < 0.5", check_code=2)
    assert "unknown column 'confidnce' (did you mean 'confidence'?)" in done.stderr
    assert caret_column(done.stderr)[1] == len("correct & ")
    done = run("app", export.path, "--where", "target in [1, 2", check_code=2)
    assert "bad criteria" in done.stderr and caret_column(done.stderr)[1] == len("target in [1, 2")
    done = run("query", export.path, "--where", "chain < 3", check_code=2)
    assert "cannot be applied to this table" in done.stderr and "Traceback" not in done.stderr


def test_option_errors_exit_2(export):
    assert "--format parquet needs --output FILE" in run(
        "query", export.path, "--format", "parquet", check_code=2).stderr
    assert "--sql cannot be combined" in run(
        "query", export.path, "--sql", "SELECT 1", "--where", "correct", check_code=2).stderr
    assert "columns: unknown column 'nope'" in run(
        "query", export.path, "--columns", "record_key,nope", check_code=2).stderr
    for sql, says in (("SELECT * FROM records", "Table with name records does not exist"),
                      ("SELEC 1", "syntax error"), ("SELECT nope FROM samples", '"nope" not found')):
        error = run("query", export.path, "--sql", sql, check_code=2).stderr
        assert says in error and "expected DuckDB SQL over the views 'samples'" in error, error
        assert error.count("\n") == 1  # one line, as every error


def test_other_errors_exit_1_in_one_line_unless_debug(tmp_path):
    done = run("info", tmp_path / "missing", check_code=1)
    assert done.stderr.count("\n") == 1 and "FileNotFoundError" in done.stderr and "no such directory" in done.stderr
    assert "Traceback" in run("--debug", "info", tmp_path / "missing", check_code=1).stderr
    assert "Traceback" in run("info", tmp_path / "missing", "--debug", check_code=1).stderr
    done = run("query", ROOT, "--sql", "SELECT * FROM nowhere", check_code=1)  # not an export
    assert "no manifest.json" in done.stderr


def test_pack_and_unpack(export, tmp_path):
    done = run("pack", export.path, tmp_path / "run1.tar.gz")
    assert done.stdout.startswith(f"packed {export.path} into {tmp_path / 'run1.tar.gz'}")
    done = run("unpack", tmp_path / "run1.tar.gz", tmp_path / "copy")
    assert done.stdout == f"unpacked {export.export_id} (64 records) into {tmp_path / 'copy'}\n"
    assert open_export(tmp_path / "copy").table().equals(export.table())
    assert "not an empty directory" in run("unpack", tmp_path / "run1.tar.gz", tmp_path / "copy",
                                           check_code=1).stderr


def test_demo_runs_the_classification_example(tmp_path):
    done = run("demo", "--quick", "--export-dir", tmp_path / "demo")
    assert "Accuracy on 160 held-out digits" in done.stdout
    assert open_export(tmp_path / "demo").chains == ["benign", "fgsm"]


def test_demo_without_the_example_says_where_it_should_be(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "EXAMPLES_DIR", tmp_path)
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        assert cli.main(["demo", "--quick"]) == 1
    assert "digits_classification.py: the demo script is not there" in stderr.getvalue()


def test_incomplete_export_is_read_with_a_one_line_warning(tmp_path):
    writer = ExportWriter(tmp_path / "partial", {"name": "partial"}, fiftyone=False, rows_per_part=1)
    name = writer.register_exporter("manual", "Manual", None, {})
    writer.add(name, "benign", 0, {"target": 1}, batch=0, position=0, image=np.zeros((2, 2, 1), np.uint8))
    writer.end_batch()
    writer.abort()
    done = run("info", tmp_path / "partial")
    assert "status writing" in done.stdout and "records     1 (benign 1)" in done.stdout
    assert done.stderr.startswith("armory-datasets: warning: ") and "is incomplete" in done.stderr
    assert done.stderr.count("\n") == 1
    assert "is incomplete" in run("pack", tmp_path / "partial", tmp_path / "p.zip", check_code=1).stderr
