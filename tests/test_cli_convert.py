"""The command line as users meet it: convert, columns, CSV of nested columns, hints, flags."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from armory_datasets import open_export
from armory_datasets.demo.tiny import tiny_detection_export, tiny_export
from armory_datasets.schema import VOCABULARY
from armory_datasets.store import ExportWriter

ROOT = Path(__file__).resolve().parent.parent


def run(*args: object, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "armory_datasets.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == code, (done.stdout, done.stderr)
    return done


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return open_export(tiny_export(tmp_path_factory.mktemp("cli") / "tiny"))


@pytest.mark.parametrize("command", ["convert", "columns"])
def test_new_commands_have_help(command):
    done = run(command, "--help")
    assert done.stdout.startswith(f"usage: armory-datasets {command}")


def test_csv_writes_nested_columns_as_json_text(export):
    text = run("query", export.path, "--columns", "record_key,logits,exporters,correct",
               "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    table = export.table(columns=["record_key", "logits", "exporters"]).to_pylist()
    assert len(rows) == len(table) == 16
    for row, want in zip(rows, table):
        assert row["record_key"] == want["record_key"]
        assert np.allclose(json.loads(row["logits"]), want["logits"], rtol=1e-6)
        assert json.loads(row["exporters"]) == want["exporters"]
        assert row["correct"] in ("True", "False")


def test_csv_of_detection_boxes_is_json(tmp_path):
    detection = open_export(tiny_detection_export(tmp_path / "det"))
    text = run("query", detection.path, "--columns", "ground_truth_objects", "--format", "csv",
               "--limit", "2").stdout
    boxes = [json.loads(row["ground_truth_objects"]) for row in csv.DictReader(io.StringIO(text))]
    assert boxes == detection.table(columns=["ground_truth_objects"], limit=2) \
        .column(0).to_pylist()


@pytest.mark.parametrize("where, hint", [
    ("correct == False", "unknown column 'False' (booleans are lowercase: write false)"),
    ("~correct | True", "unknown column 'True' (booleans are lowercase: write true)"),
    ("correct = false", "write == to compare"),
    ("confidence > 0.5 & target = 1", "write == to compare"),
])
def test_usual_slips_get_a_hint(export, where, hint):
    stderr = run("query", export.path, "--where", where, code=2).stderr
    assert hint in stderr and "^" in stderr


@pytest.mark.parametrize("where", ["confidence >= 0.5", "target != 1", "correct == false"])
def test_right_comparisons_get_no_hint(export, where):
    run("query", export.path, "--where", where, "--limit", "1")


def test_pack_names_the_flag_not_the_argument(tmp_path):
    writer = ExportWriter(tmp_path / "partial", {"name": "partial"}, fiftyone=False, rows_per_part=1)
    name = writer.register_exporter("manual", "Manual", None, {})
    writer.add(name, "benign", 0, {"target": 1}, batch=0, position=0,
               image=np.zeros((2, 2, 1), np.uint8))
    writer.end_batch()
    writer.abort()
    stderr = run("pack", tmp_path / "partial", tmp_path / "p.zip", code=1).stderr
    assert "--allow-incomplete" in stderr and "allow_incomplete=True" not in stderr
    run("pack", tmp_path / "partial", tmp_path / "p.zip", "--allow-incomplete")


def test_columns_lists_types_and_descriptions_from_the_schema(export):
    listed = json.loads(run("columns", export.path, "--json").stdout)
    assert [c["name"] for c in listed] == export.columns
    for column in listed:
        assert column["description"] == VOCABULARY[column["name"]].description
    by_name = {c["name"]: c for c in listed}
    assert by_name["logits"]["type"] == "list<float32>"
    assert by_name["confidence"]["type"] == "float64"
    text = run("columns", export.path).stdout
    assert text.splitlines()[0].split()[:2] == ["export_id", "string"]
    assert VOCABULARY["sample_index"].description in text


def test_columns_describes_heatmap_columns(tmp_path):
    from armory_datasets.criteria import always
    from armory_datasets.data import ImageClassificationBatch, Images
    from armory_datasets.export import ImageClassificationExporter
    from armory_datasets.export.saliency_common import SaliencyFields, heatmap_columns

    class Bright(SaliencyFields, ImageClassificationExporter):
        def columns(self):
            return heatmap_columns("bright")

        def task_fields(self, batch, positions):
            indices, _ = self.pending(batch, positions)
            maps = [np.ones((4, 4), np.float32) for _ in positions]
            return {**super().task_fields(batch, positions),
                    **self.store("bright", batch.chain, indices, maps)}

    with Bright(name="bright", criterion=always(), export_dir=tmp_path / "maps") as exporter:
        exporter.export(0, ImageClassificationBatch(Images(np.zeros((2, 1, 4, 4), np.uint8)),
                                                    [0, 1], np.eye(2)))
    listed = {c["name"]: c for c in json.loads(run("columns", tmp_path / "maps", "--json").stdout)}
    assert listed["bright_path"]["description"].startswith("File of saliency map bright")
    assert listed["bright_max"]["description"] == "Maximum of saliency map bright."


def test_convert_writes_each_chain_and_refuses_bad_options_with_flag_names(export, tmp_path):
    out = tmp_path / "hf"
    done = run("convert", export.path, "--format", "hf", "--out", out, "--where", "~correct",
               "--split", "0.5,0.5")
    assert "noisy" in done.stdout and sorted(p.name for p in out.iterdir()) == ["noisy"]
    assert done.stderr == ""  # quiet, as every format: no progress bars of `datasets`
    stderr = run("convert", export.path, "--format", "hf", "--out", tmp_path / "b",
                 "--split", "0.5,0.6", code=2).stderr
    assert "--split: got 0.5,0.6" in stderr
    stderr = run("convert", export.path, "--format", "coco", "--out", tmp_path / "b", code=2).stderr
    assert "--format 'coco': needs a detection export" in stderr
    stderr = run("convert", export.path, "--format", "hf", "--out", tmp_path / "b",
                 "--where", "correct = false", code=2).stderr
    assert "write == to compare" in stderr
    assert not (tmp_path / "b").exists()
