"""manifest.json (and the writers' journals) are strict JSON, whatever floats an evaluation holds.

Adversarial evaluations carry ``norm = inf``; Python's ``json`` writes it as the bare
``Infinity``, which jq, browsers and Spark refuse. Each test parses what the export
wrote with a parser that refuses those constants, then reads the floats back.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from armory_datasets.reading import open_export
from armory_datasets.store import ExportWriter, read_manifest
from armory_datasets.store.commit import WRITERS_DIR, commit_export
from armory_datasets.store.manifest import validate_manifest

PARAMS = {"norm": math.inf, "floor": -math.inf, "unset": math.nan, "eps": 0.5, "steps": [1, math.inf]}


def strict(text: str):
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def params_back(params: dict) -> None:
    assert params["norm"] == math.inf and params["floor"] == -math.inf and math.isnan(params["unset"])
    assert params["eps"] == 0.5 and params["steps"] == [1, math.inf]


def write(export_dir, fiftyone: bool = False, writer_id: str | None = None, first: int = 0) -> None:
    with ExportWriter(export_dir, {"name": "inf", "params": PARAMS}, fiftyone=fiftyone,
                      writer_id=writer_id) as writer:
        name = writer.register_exporter("clf", "Manual", "always()", {"threshold": math.inf})
        indices = np.arange(first, first + 3)
        writer.add_records(name, "benign", indices, {"target": indices % 2}, batch=first,
                           positions=np.arange(3), images=np.zeros((3, 2, 2, 1), np.uint8))
        writer.end_batch()


def test_an_export_with_infinite_and_nan_parameters_writes_strict_json_and_reads_the_floats_back(tmp_path):
    write(tmp_path / "e", fiftyone=True)
    doc = strict((tmp_path / "e" / "manifest.json").read_text())
    assert doc["evaluation"]["params"]["norm"] == {"$numberDouble": "Infinity"}
    assert doc["exporters"][0]["params"]["threshold"] == {"$numberDouble": "Infinity"}
    validate_manifest(doc)  # the file as other tools see it follows the schema too
    export = open_export(tmp_path / "e")
    params_back(export.manifest["evaluation"]["params"])
    assert export.manifest["exporters"][0]["params"]["threshold"] == math.inf
    params_back(export.fiftyone().info["evaluation"]["params"])
    info = subprocess.run([sys.executable, "-m", "armory_datasets.cli", "info", str(export.path), "--json"],
                          capture_output=True, text=True, timeout=300, check=True)
    assert strict(info.stdout)["manifest"]["evaluation"]["params"]["norm"] == {"$numberDouble": "Infinity"}


def test_writers_journals_and_the_committed_manifest_are_strict_json(tmp_path):
    export_dir = tmp_path / "e"
    write(export_dir, writer_id="w0", first=0)
    write(export_dir, writer_id="w1", first=3)
    journals = sorted((export_dir / "table" / WRITERS_DIR).glob("*.json"))
    assert len(journals) == 2 and all(strict(j.read_text()) for j in journals)
    manifest = commit_export(export_dir)
    assert manifest["counts"]["records"] == 6
    strict((export_dir / "manifest.json").read_text())
    params_back(read_manifest(export_dir)["evaluation"]["params"])


@pytest.mark.parametrize("constant, value", [("Infinity", math.inf), ("-Infinity", -math.inf)])
def test_a_manifest_an_older_release_wrote_with_bare_constants_still_reads(tmp_path, constant, value):
    write(tmp_path / "e")
    path = tmp_path / "e" / "manifest.json"
    path.write_text(path.read_text().replace('{\n        "$numberDouble": "Infinity"\n      }', constant))
    assert constant in path.read_text()
    assert read_manifest(tmp_path / "e")["evaluation"]["params"]["norm"] == value
