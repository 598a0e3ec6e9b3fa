"""open_export: table/sql/FiftyOne/torch on real digits exports; same criterion, same rows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from armory_datasets import criteria as C
from armory_datasets import open_export
from armory_datasets.criteria import CriteriaSyntaxError
from armory_datasets.database import import_fiftyone
from armory_datasets.export.captum import CaptumImageClassificationExporter
from armory_datasets.reading import CriterionError, IncompleteExportWarning, SQLQueryError, UnknownColumnError
from armory_datasets.reading_fiftyone import dataset_name, match
from armory_datasets.reading_torch import collate_detection
from armory_datasets.store import ExportWriter
from armory_datasets.store.media import HEATMAP_LEVELS, read_heatmap
from test_reading_support import HEATMAP, digits_export, digits_model

ROOT = Path(__file__).resolve().parent.parent

CRITERIA = [
    "always()",
    "~correct",
    "confidence < 0.8",
    "chains(['fgsm']) & target in [1, 8]",
    "every_n_samples(7) | first_n_batches(1)",
    "every_n_samples_of_batch(3) & prediction != target",
    "samples([0, 5, 50, 95]) & chains(['benign'])",
    "isclose(confidence, 1.0, atol=0.01)",
    "confidence > 0.7 & prediction % 2 == 0 & chains(['fgsm'])",
    "first_n_samples(0)",
]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Everything exported (always()), with its FiftyOne dataset."""
    return open_export(digits_export(tmp_path_factory.mktemp("full") / "export"))


def keys(table_or_view) -> set[str]:
    if isinstance(table_or_view, pa.Table):
        return set(table_or_view.column("record_key").to_pylist())
    return set(table_or_view.values("record_key"))


@pytest.mark.parametrize("text", CRITERIA)
def test_same_criterion_same_rows_as_exporting_with_it(full, text, tmp_path):
    criterion = C.parse(text)
    selected = open_export(digits_export(tmp_path / "selected", criterion, fiftyone=False))
    exported = keys(selected.table())
    assert keys(full.table(where=criterion)) == exported
    assert keys(full.table(where=text)) == exported
    assert keys(full.fiftyone(where=criterion)) == exported
    assert full.count(text) == len(exported)
    assert full.sql(f"SELECT count(*) AS n FROM samples WHERE {criterion.to_sql()}") \
        .column("n")[0].as_py() == len(exported)


def test_selective_criteria_select_something_and_not_everything(full):
    n = full.count()
    assert n == 192
    for text in CRITERIA[1:-1]:
        assert 0 < full.count(text) < n, text


def test_table_columns_limit_and_pandas(full):
    table = full.table("chains(['fgsm'])", columns=["sample_index", "prediction"], limit=5)
    assert table.column_names == ["sample_index", "prediction"] and table.num_rows == 5
    frame = full.to_pandas("~correct", ["record_key", "correct"])
    assert len(frame) == full.count("~correct") and not frame.correct.any()
    assert full.manifest["export_id"] == full.export_id and full.status == "complete"
    assert full.chains == ["benign", "fgsm"] and full.task == "classification"
    assert full.dataset.schema.equals(full.schema)


def test_sql_view_samples(full):
    table = full.sql("SELECT chain, count(*) AS n, avg(brightness_max) AS b FROM samples "
                     "GROUP BY chain ORDER BY chain")
    assert table.column("chain").to_pylist() == ["benign", "fgsm"]
    assert table.column("n").to_pylist() == [96, 96]
    relation = full.duckdb().sql("SELECT record_key FROM samples WHERE NOT correct")
    assert {r for (r,) in relation.fetchall()} == keys(full.table("~correct"))


@pytest.mark.parametrize("query, says", [
    ("SELECT * FROM records", "Table with name records does not exist"),  # the view is 'samples'
    ("SELEC chain FROM samples", "syntax error"),
    ("SELECT nope FROM samples", 'column "nope" not found'),
    ("SELECT no_such_function(chain) FROM samples", "no_such_function does not exist"),
    ("   ", "got '   '"),
])
def test_sql_that_does_not_fit_the_views_names_them(full, query, says):
    with pytest.raises(SQLQueryError, match="expected") as caught:
        full.sql(query)
    assert says in str(caught.value) and "'SELECT * FROM samples LIMIT 5'" in str(caught.value)
    assert "\n" not in str(caught.value)  # DuckDB's multi-line message on one line


def test_compare_chains_as_table_and_fiftyone_view(full):
    changed = full.compare_chains("benign", "fgsm")
    frame = full.to_pandas(columns=["chain", "sample_index", "prediction", "correct"])
    benign = frame[frame.chain == "benign"].set_index("sample_index")
    fgsm = frame[frame.chain == "fgsm"].set_index("sample_index")
    differs = (benign.prediction != fgsm.prediction) | (benign.correct != fgsm.correct)
    expected = sorted(benign.index[differs])
    assert changed.column("sample_index").to_pylist() == expected and expected
    assert {"prediction_benign", "prediction_fgsm", "correct_benign", "correct_fgsm",
            "confidence_fgsm", "image_path_benign", "target"} <= set(changed.column_names)
    view = full.compare_chains("benign", "fgsm", fiftyone=True)
    assert view.values("sample_index") == sorted(expected * 2)
    assert view.values("chain")[:2] == ["benign", "fgsm"]
    with pytest.raises(ValueError, match="chain 'pgd': not in this export"):
        full.compare_chains("benign", "pgd")


def test_torch_dataset_images_targets_heatmaps(full):
    data = full.torch_dataset("chains(['fgsm']) & ~correct", with_heatmap=HEATMAP)
    rows = full.table("chains(['fgsm']) & ~correct", columns=["record_key", "target", "image_path"])
    assert len(data) == rows.num_rows and data.records.column("record_key") == rows.column("record_key")
    image, target, heatmap = data[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert target.item() == rows.column("target")[0].as_py()
    png = np.asarray(Image.open(full.path / rows.column("image_path")[0].as_py()), np.float32) / 255
    assert np.allclose(image[0].numpy(), png)
    assert heatmap.shape == (32, 32) and heatmap.dtype == torch.float32
    assert np.abs(heatmap.numpy() - png).max() <= 0.5 / 255 + 1e-6  # PNG rounds to 1/255
    loader = torch.utils.data.DataLoader(full.torch_dataset("~correct", transform=lambda x: x * 2),
                                         batch_size=8)
    images, targets = next(iter(loader))
    assert images.shape == (8, 1, 32, 32) and targets.dtype == torch.int64 and images.max() > 1
    with pytest.raises(UnknownColumnError, match="heatmap fields: \\['brightness'\\]"):
        full.torch_dataset(with_heatmap="captum")


def test_a_name_that_is_not_an_identifier_is_suggested_as_criteria_write_it(tmp_path):
    with ExportWriter(tmp_path / "e", {"name": "odd names"}, fiftyone=False) as writer:
        writer.add_records("clf", "benign", [0, 1], {"my-col": [1.0, -1.0], "größe": ["a", "b"]},
                           batch=0, positions=[0, 1], images=np.zeros((2, 2, 2, 3), np.uint8))
    export = open_export(tmp_path / "e")
    with pytest.raises(UnknownColumnError, match=r"unknown column 'mycol' \(did you mean `my-col`\?\)"):
        export.table("mycol > 0")
    with pytest.raises(UnknownColumnError, match=r"unknown column 'mycol' \(did you mean 'my-col'\?\)"):
        export.table(columns=["mycol"])  # a list of names, not criteria: no backticks
    with pytest.raises(CriteriaSyntaxError, match="in backticks: `größe`"):
        export.table("größe == 'a'")
    assert export.table("`größe` == 'a' & `my-col` > 0").column("sample_index").to_pylist() == [0]


def test_unknown_columns_name_the_column_and_list_the_others(full):
    with pytest.raises(UnknownColumnError) as error:
        full.table("correct & confidnce < 0.5")
    message = str(error.value)
    assert "unknown column 'confidnce'" in message and "did you mean 'confidence'" in message
    assert "brightness_max" in message and error.value.position == len("correct & ")
    with pytest.raises(UnknownColumnError, match="columns: unknown column 'nope'"):
        full.table(columns=["record_key", "nope"])
    with pytest.raises(UnknownColumnError, match="unknown column 'nope'"):
        full.fiftyone(C.col("nope") > 1)
    with pytest.raises(CriteriaSyntaxError) as syntax:
        full.table("confidence < ")
    assert syntax.value.position == len("confidence < ")
    with pytest.raises(CriterionError, match="where: chain < 3: cannot be applied"):
        full.table("chain < 3")
    with pytest.raises(TypeError, match="where: got int"):
        full.table(3)


def test_missing_directory_manifest_and_parts(tmp_path, full):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        open_export(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        open_export(tmp_path)
    with pytest.raises(NotADirectoryError, match=f"a file \\(the export is its directory, {full.path}\\)"):
        open_export(full.path / "manifest.json")
    copy = tmp_path / "copy"
    shutil.copytree(full.path, copy)
    (copy / "table" / "part-00000.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"table parts \['part-00000.parquet'\]"):
        open_export(copy)
    manifest = json.loads((full.path / "manifest.json").read_text())
    manifest["status"] = "finished"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="manifest: 'finished' is not one of"):
        open_export(copy)


def written_records(path: Path, batches: list[dict]) -> ExportWriter:
    """An interrupted export: one finished part per batch, then abort()."""
    writer = ExportWriter(path, {"name": "partial"}, fiftyone=False, rows_per_part=1)
    name = writer.register_exporter("manual", "Manual", None, {})
    for b, fields in enumerate(batches):
        writer.add(name, "benign", b, fields, batch=b, position=0, image=np.zeros((2, 2, 1), np.uint8))
        writer.end_batch()
    return writer


def test_incomplete_export_reads_with_a_warning_and_parts_may_differ(tmp_path):
    writer = written_records(tmp_path / "partial", [{"target": 1}, {"target": 2, "site": "lab"}])
    writer.abort()
    with pytest.warns(IncompleteExportWarning, match="incomplete \\(status 'writing'\\)"):
        export = open_export(tmp_path / "partial")
    assert len(export.parts) == 2
    assert export.table(columns=["target", "site"]).to_pylist() == [
        {"target": 1, "site": None}, {"target": 2, "site": "lab"}]
    assert export.sql("SELECT site FROM samples WHERE target = 2").to_pylist() == [{"site": "lab"}]
    assert export.count("site == 'lab'") == 1


def test_empty_export_reads_as_an_empty_table(tmp_path):
    ExportWriter(tmp_path / "empty", {"name": "empty"}, fiftyone=False).close()
    export = open_export(tmp_path / "empty")
    assert export.table("~correct").num_rows == 0 and export.count() == 0
    assert export.sql("SELECT count(*) AS n FROM samples").column("n").to_pylist() == [0]


def test_copied_export_rebuilds_its_fiftyone_dataset(full, tmp_path):
    fo = import_fiftyone()
    original = full.fiftyone()
    name = original.dataset_name
    assert name == dataset_name(full) and original.count() == 192
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(full.path, copy)

    same_machine = open_export(copy).fiftyone()  # the original's dataset stays as it is
    assert same_machine.dataset_name != name and fo.load_dataset(name).info["export_dir"] == str(full.path)
    fo.delete_dataset(same_machine.dataset_name)

    fo.delete_dataset(name)  # as on another machine
    rebuilt = open_export(copy).fiftyone()
    assert rebuilt.dataset_name == name and rebuilt.count() == 192
    fields = ["record_key", "ground_truth.label", "prediction.label", "prediction.confidence",
              "correct", f"{HEATMAP}.map_path", "filepath"]
    rebuilt_values = dict(zip(fields, rebuilt.sort_by("record_key").values(fields)))
    assert all(p.startswith(str(copy)) for p in rebuilt_values["filepath"])
    table = full.table().sort_by("record_key")
    assert rebuilt_values["record_key"] == table.column("record_key").to_pylist()
    assert rebuilt_values["ground_truth.label"] == [str(t) for t in table.column("target").to_pylist()]
    assert rebuilt_values["prediction.confidence"] == table.column("confidence").to_pylist()
    heatmaps = rebuilt_values[f"{HEATMAP}.map_path"]
    assert heatmaps == [str(copy / p) for p in table.column(f"{HEATMAP}_path").to_pylist()]
    assert all(Path(p).is_file() for p in heatmaps)
    assert open_export(copy).fiftyone().dataset_name == name  # loaded, not rebuilt
    assert open_export(copy).fiftyone("~correct").count() == full.count("~correct")
    fo.delete_dataset(name)
    assert full.fiftyone().count() == 192  # the original directory rebuilds it again


def test_captum_heatmaps_survive_a_copy_to_another_machine(tmp_path):
    fo = import_fiftyone()
    captum = CaptumImageClassificationExporter(digits_model(), criterion=C.parse("~correct"))
    original = open_export(digits_export(tmp_path / "original", n=32, name="digits-captum",
                                         extra_exporters=[captum]))
    copy = tmp_path / "copy"
    shutil.copytree(original.path, copy)
    fo.delete_dataset(dataset_name(original))
    view = open_export(copy).fiftyone("captum_saliency_path != ''")
    expected = original.table("~correct", ["record_key", "captum_saliency_path", "captum_saliency_max"])
    assert keys(view) == keys(expected) and view.count() > 0
    rows = {r["record_key"]: r for r in expected.to_pylist()}
    for key, heatmap in zip(*view.values(["record_key", "captum_saliency"])):
        assert heatmap.map_path == str(copy / rows[key]["captum_saliency_path"])
        assert list(heatmap.range) == [0, HEATMAP_LEVELS]  # the PNG's levels span the map's min..max
        assert read_heatmap(heatmap.map_path).max() == pytest.approx(rows[key]["captum_saliency_max"], rel=1e-6)
    data = open_export(copy).torch_dataset(with_heatmap="captum_saliency")
    assert keys(data.records) == keys(expected)
    _, _, heatmap = data[0]
    assert heatmap.max().item() == pytest.approx(expected.column("captum_saliency_max")[0].as_py())


def test_match_sees_every_slice_of_a_grouped_dataset():
    fo = import_fiftyone()
    dataset = fo.Dataset()
    dataset.add_group_field("group", default="benign")
    for i in range(3):
        group = fo.Group()
        dataset.add_samples([fo.Sample(filepath=f"/x/{c}{i}.png", group=group.element(c), sample_index=i,
                                       chain=c) for c in ("benign", "fgsm")])
    view = match(dataset, C.parse("sample_index >= 1"))
    assert sorted(view.values("chain")) == ["benign", "benign", "fgsm", "fgsm"]
    dataset.delete()


def test_querying_imports_neither_fiftyone_nor_torch(full):
    code = (f"import sys, armory_datasets; e = armory_datasets.open_export({str(full.path)!r}); "
            "n = e.table(where='~correct & confidence < 0.9').num_rows; e.sql('SELECT 1'); "
            "print(n, 'fiftyone' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout.split()
    assert out == [str(full.count("~correct & confidence < 0.9")), "False", "False"]


def box(label, x0, score=None):
    return {"label": label, "x_min": float(x0), "y_min": 1.0, "x_max": x0 + 4.0, "y_max": 5.0, "score": score}


def test_detection_exports_compare_boxes_and_give_box_targets(tmp_path):
    writer = ExportWriter(tmp_path / "det", {"name": "det"}, fiftyone=False)
    name = writer.register_exporter("manual", "Manual", None, {})
    truth = [[box(1, 0)], [box(2, 2), box(3, 8)], []]
    predicted = {"benign": [[box(1, 0, 0.9)], [box(2, 2, 0.8)], []],
                 "noise": [[box(1, 0, 0.9)], [box(5, 2, 0.7)], [box(4, 1, 0.6)]]}
    for chain, objects in predicted.items():
        writer.add_records(name, chain, [0, 1, 2], {"ground_truth_objects": truth, "predicted_objects": objects},
                           batch=0, positions=[0, 1, 2], images=np.zeros((3, 12, 16, 3), np.uint8))
        writer.end_batch()
    writer.close()
    export = open_export(tmp_path / "det")
    assert export.task == "detection"
    changed = export.compare_chains("benign", "noise")
    assert changed.column("sample_index").to_pylist() == [1, 2]
    assert "predicted_objects_noise" in changed.column_names and "target" not in changed.column_names
    data = export.torch_dataset("chains(['benign'])")
    image, target = data[1]
    assert image.shape == (3, 12, 16)
    assert target["labels"].tolist() == [2, 3] and target["boxes"].tolist()[1] == [8.0, 1.0, 12.0, 5.0]
    assert data[2][1]["boxes"].shape == (0, 4)
    images, targets = next(iter(torch.utils.data.DataLoader(data, batch_size=3, collate_fn=collate_detection)))
    assert images.shape == (3, 3, 12, 16) and [len(t["labels"]) for t in targets] == [1, 2, 0]
