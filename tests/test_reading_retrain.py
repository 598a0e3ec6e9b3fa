"""examples/retrain_from_export.py, small: fine-tune on misclassified FGSM samples read back via torch_dataset."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_retrain_from_export_fixes_the_samples_it_selected(tmp_path):
    spec = importlib.util.spec_from_file_location("retrain_from_export", ROOT / "examples" / "retrain_from_export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(export_dir=tmp_path / "digits", quick=True, epochs=4, quiet=True)
    trained, held_out, clean = report["trained"], report["held_out"], report["clean_test"]
    assert trained["samples"] >= 10 and held_out["samples"] >= 10
    # The export's model, retrained deterministically, misclassifies every selected sample.
    assert trained["before"] == 0.0 and held_out["before"] == 0.0
    assert trained["after"] >= 0.6 and held_out["after"] > 0.2
    assert clean["after"] >= 0.85
