"""``pip install armory-datasets`` alone reads and queries exports; extras are named when missing.

A fresh venv (no system site-packages) gets only ``pip install .`` (core dependencies,
from pip's cache where it has them) and then, as a user would: pandas and plain DuckDB
on the table, ``open_export`` with a criterion, SQL, the ``armory-datasets query``
command. Importing a FiftyOne, torch or saliency feature there raises
``MissingExtraError`` naming the extra to install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from armory_datasets.demo.tiny import tiny_export

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "fiftyone", "captum", "xaitk_saliency", "datasets", "sklearn", "tqdm")

USER_SCRIPT = r"""
import importlib.util, json, sys
import duckdb, pandas as pd
import armory_datasets
from armory_datasets.extras import MissingExtraError

path = sys.argv[1]
frame = pd.read_parquet(f"{path}/table")
plain = duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}/table/*.parquet') "
                   "WHERE NOT correct").fetchall()[0][0]
export = armory_datasets.open_export(path)
wrong = export.to_pandas("~correct & chains(['noisy'])", ["sample_index"]).sample_index.tolist()
by_chain = export.sql("SELECT chain, count(*) AS n FROM samples GROUP BY chain ORDER BY chain")
errors = {}
for name, call in [
    ("fiftyone", lambda: export.fiftyone()),
    ("perturbations", lambda: __import__("armory_datasets.perturbations")),
    ("engine", lambda: __import__("armory_datasets.engine")),
    ("captum", lambda: __import__("armory_datasets.export.captum")),
    ("torch_dataset", lambda: export.torch_dataset()),
    ("to_hf", lambda: export.to_hf()),
    ("convert", lambda: export.convert("out", "imagefolder")),
]:
    try:
        call()
        errors[name] = None
    except MissingExtraError as error:
        errors[name] = str(error)
print(json.dumps({
    "rows": len(frame), "columns": list(frame.columns), "plain_duckdb_wrong": plain,
    "wrong": wrong, "by_chain": by_chain.to_pylist(), "errors": errors,
    "installed": [m for m in %r if importlib.util.find_spec(m) is not None],
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in %r),
}))
""" % (HEAVY, HEAVY)


@pytest.fixture(scope="module")
def lean_venv(tmp_path_factory) -> Path:
    """A venv holding only ``pip install .`` of this tree (copied, so the build leaves
    nothing in the worktree)."""
    base = tmp_path_factory.mktemp("lean")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(ROOT / name, source / name)
    for name in ("armory_datasets", "schemas"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    started = time.monotonic()
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", "--no-compile",
                    "-c", str(source / "constraints.txt"), str(source)], check=True, timeout=900)
    print(f"lean install: pip install . took {time.monotonic() - started:.1f} s")
    return venv


@pytest.mark.slow
def test_bare_install_reads_and_queries_an_export(lean_venv, tmp_path):
    export = tiny_export(tmp_path / "export")
    out = subprocess.run([str(lean_venv / "bin" / "python"), "-c", USER_SCRIPT, str(export)],
                         check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["installed"] == [] and result["imported"] == []
    assert result["rows"] == 16 and {"chain", "correct", "logits"} <= set(result["columns"])
    assert result["plain_duckdb_wrong"] == 3
    assert result["wrong"] == [1, 4, 6]
    assert result["by_chain"] == [{"chain": "benign", "n": 8}, {"chain": "noisy", "n": 8}]
    extras = {"fiftyone": "fiftyone", "perturbations": "torch", "engine": "torch",
              "captum": "saliency", "torch_dataset": "torch", "to_hf": "hf",
              "convert": "fiftyone"}
    for feature, extra in extras.items():
        assert f"pip install 'armory-datasets[{extra}]'" in (result["errors"][feature] or ""), \
            (feature, result["errors"][feature])


@pytest.mark.slow
def test_bare_install_command_line_queries(lean_venv, tmp_path):
    export = tiny_export(tmp_path / "export")
    command = str(lean_venv / "bin" / "armory-datasets")
    done = subprocess.run([command, "query", str(export), "--where", "~correct",
                           "--columns", "record_key", "--format", "json"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [row["record_key"] for row in json.loads(done.stdout)] == \
        ["noisy/1", "noisy/4", "noisy/6"]
    info = subprocess.run([command, "info", str(export)], capture_output=True, text=True)
    assert info.returncode == 0 and "tiny" in info.stdout, info.stderr
