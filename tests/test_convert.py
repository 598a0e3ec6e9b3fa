"""Export -> COCO / YOLO / ImageFolder / HF, each re-read by the format's standard reader.

COCO by pycocotools, YOLO and ImageFolder by FiftyOne's importers, HF by ``datasets``;
labels, class ids and boxes must be the export's, and no sample_index may be in two
splits (nor in different splits in two chains).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from armory_datasets import open_export
from armory_datasets.convert import assign_splits, convert, parse_split
from armory_datasets.database import import_fiftyone
from armory_datasets.demo.tiny import CLASS_NAMES, tiny_detection_export, tiny_export

SPLIT = (0.75, 0.25)


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    return open_export(tiny_detection_export(tmp_path_factory.mktemp("det") / "export"))


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    return open_export(tiny_export(tmp_path_factory.mktemp("cls") / "export"))


def records(export, where=None):
    """{(chain, sample_index): row} of the export's selected records."""
    return {(r["chain"], r["sample_index"]): r for r in export.table(where).to_pylist()}


def sample_index(filename: str) -> int:
    return int(Path(filename).stem)


def check_splits(seen: dict[str, dict[str, set[int]]], expected: dict[str, set[int]]) -> None:
    """seen[chain][split] = sample indices; each chain's splits are disjoint, cover the
    chain's records, and a sample is in the same split in every chain."""
    split_of: dict[int, str] = {}
    for chain, splits in seen.items():
        names = list(splits)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                assert not splits[a] & splits[b], (chain, a, b)
        assert set().union(*splits.values()) == expected[chain]
        for split, indices in splits.items():
            for index in indices:
                assert split_of.setdefault(index, split) == split, (chain, index)
    assert len(set(split_of.values())) == 2  # both splits used


def test_coco_is_read_by_pycocotools_with_the_export_class_ids(detection, tmp_path):
    from pycocotools.coco import COCO

    out = convert(detection, tmp_path / "coco", "coco", split=SPLIT)
    rows = records(detection)
    seen: dict[str, dict[str, set[int]]] = {}
    for labels in sorted(out.glob("*/*/labels.json")):
        chain, split = labels.parent.parent.name, labels.parent.name
        coco = COCO(str(labels))
        assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == \
            list(enumerate(CLASS_NAMES))
        for image in coco.loadImgs(coco.getImgIds()):
            index = sample_index(image["file_name"])
            seen.setdefault(chain, {}).setdefault(split, set()).add(index)
            assert (labels.parent / "data" / image["file_name"]).is_file()
            assert (image["width"], image["height"]) == (16, 12)
            got = sorted((a["category_id"], *np.round(a["bbox"], 6))
                         for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])))
            want = sorted((o["label"], o["x_min"], o["y_min"], o["x_max"] - o["x_min"],
                           o["y_max"] - o["y_min"]) for o in rows[chain, index]["ground_truth_objects"])
            assert got == want, (chain, index)
    check_splits(seen, {c: {i for cc, i in rows if cc == c} for c in detection.chains})


def test_yolo_is_read_by_fiftyone_with_the_manifest_classes(detection, tmp_path):
    fo = import_fiftyone()
    out = convert(detection, tmp_path / "yolo", "yolo", where="~chains(['benign']) | samples([0, 1, 2])",
                  split=SPLIT)
    rows = records(detection)
    seen: dict[str, dict[str, set[int]]] = {}
    for chain_dir in sorted(out.iterdir()):
        chain = chain_dir.name
        config = (chain_dir / "dataset.yaml").read_text()
        assert "names" in config
        for split in ("train", "val"):
            dataset = fo.Dataset.from_dir(dataset_dir=str(chain_dir), split=split,
                                          dataset_type=fo.types.YOLOv5Dataset,
                                          label_field="ground_truth")
            try:
                assert dataset.default_classes == CLASS_NAMES
                for sample in dataset:
                    index = sample_index(sample.filepath)
                    seen.setdefault(chain, {}).setdefault(split, set()).add(index)
                    want = rows[chain, index]["ground_truth_objects"]
                    got = sample.ground_truth.detections
                    assert sorted(d.label for d in got) == sorted(CLASS_NAMES[o["label"]] for o in want)
                    for d in got:  # relative xywh, as FiftyOne reads YOLO back
                        o = next(o for o in want if CLASS_NAMES[o["label"]] == d.label)
                        assert np.allclose(d.bounding_box, [o["x_min"] / 16, o["y_min"] / 12,
                                                            (o["x_max"] - o["x_min"]) / 16,
                                                            (o["y_max"] - o["y_min"]) / 12], atol=1e-5)
            finally:
                dataset.delete()
        # the label files carry the class ids of the manifest
        for label_file in (chain_dir / "labels").rglob("*.txt"):
            index = sample_index(label_file.name)
            ids = sorted(int(line.split()[0]) for line in label_file.read_text().splitlines())
            assert ids == sorted(o["label"] for o in rows[chain, index]["ground_truth_objects"])
    selected = records(detection, "~chains(['benign']) | samples([0, 1, 2])")
    check_splits(seen, {c: {i for cc, i in selected if cc == c} for c in ("benign", "noisy")})


@pytest.mark.parametrize("names", [["bird", "cat", "dog"], CLASS_NAMES],
                         ids=["sorted-names", "unsorted-names"])
def test_imagefolder_is_read_by_fiftyone_with_the_class_ids(names, tmp_path):
    fo = import_fiftyone()
    export = open_export(tiny_export(tmp_path / "export", class_names=names))
    out = convert(export, tmp_path / "folders", "imagefolder", split=SPLIT)
    rows = records(export)
    folders = names if names == sorted(names) else [f"{i}-{n}" for i, n in enumerate(names)]
    seen: dict[str, dict[str, set[int]]] = {}
    for split_dir in sorted(out.glob("*/*")):
        chain, split = split_dir.parent.name, split_dir.name
        dataset = fo.Dataset.from_dir(dataset_dir=str(split_dir), label_field="ground_truth",
                                      dataset_type=fo.types.ImageClassificationDirectoryTree)
        try:
            for sample in dataset:
                index = sample_index(sample.filepath)
                seen.setdefault(chain, {}).setdefault(split, set()).add(index)
                target = rows[chain, index]["target"]
                label = sample.ground_truth.label
                assert label == folders[target]  # names, or index-prefixed names
                assert sorted(folders).index(label) == target  # ImageFolder's class id
        finally:
            dataset.delete()
    check_splits(seen, {c: {i for cc, i in rows if cc == c} for c in export.chains})


def test_imagefolder_class_ids_follow_the_manifest_order(tmp_path):
    """Folder names sort in class-index order, so torchvision/HF ImageFolder ids agree."""
    export = open_export(tiny_export(tmp_path / "export"))  # cat, dog, bird: unsorted
    out = convert(export, tmp_path / "folders", "imagefolder")
    folders = sorted({p.name for p in out.glob("*/train/*")})
    assert folders == ["0-cat", "1-dog", "2-bird"]
    for image in out.glob("*/train/*/*.png"):
        chain, folder = image.parent.parent.parent.name, image.parent.name
        target = records(export)[chain, sample_index(image.name)]["target"]
        assert folders.index(folder) == target


def test_hf_is_read_by_datasets_with_class_label_names(classification, tmp_path):
    import datasets

    out = convert(classification, tmp_path / "hf", "hf", split=SPLIT)
    rows = records(classification)
    seen: dict[str, dict[str, set[int]]] = {}
    for chain_dir in sorted(out.iterdir()):
        loaded = datasets.load_from_disk(str(chain_dir))
        assert set(loaded) == {"train", "val"}
        for split, part in loaded.items():
            assert part.features["target"].names == CLASS_NAMES
            assert part.features["prediction"].names == CLASS_NAMES
            for row in part:
                index = row["sample_index"]
                seen.setdefault(chain_dir.name, {}).setdefault(split, set()).add(index)
                assert row["target"] == rows[chain_dir.name, index]["target"]
                assert row["image"].size == (8, 8)
    check_splits(seen, {c: {i for cc, i in rows if cc == c} for c in classification.chains})
    # embedded images: the converted dataset works with the export gone
    moved = tmp_path / "moved"
    out.rename(moved)
    code = ("import datasets, sys; d = datasets.load_from_disk(sys.argv[1]); "
            "print(d['train'][0]['image'].size)")
    done = subprocess.run([sys.executable, "-c", code, str(moved / "noisy")],
                          capture_output=True, text=True, check=True, cwd=tmp_path)
    assert done.stdout.strip().endswith("(8, 8)")


def test_hf_detection_keeps_boxes_with_class_labels(detection, tmp_path):
    import datasets

    out = convert(detection, tmp_path / "hf", "hf")
    train = datasets.load_from_disk(str(out / "benign"))["train"]
    assert train.features["ground_truth_objects"].feature["label"].names == CLASS_NAMES
    rows = records(detection)
    for row in train:
        assert row["ground_truth_objects"] == rows["benign", row["sample_index"]]["ground_truth_objects"]


def test_refusals_come_before_anything_is_written(classification, detection, tmp_path):
    with pytest.raises(ValueError, match="format 'coco': needs a detection export"):
        convert(classification, tmp_path / "a", "coco")
    with pytest.raises(ValueError, match="format 'imagefolder': needs a classification export"):
        convert(detection, tmp_path / "a", "imagefolder")
    with pytest.raises(ValueError, match="format: got 'voc'"):
        convert(classification, tmp_path / "a", "voc")
    with pytest.raises(ValueError, match="split: got 0.8,0.3"):
        convert(classification, tmp_path / "a", "hf", split="0.8,0.3")
    with pytest.raises(ValueError, match="split: got 0.8,x"):
        convert(classification, tmp_path / "a", "hf", split="0.8,x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        convert(classification, tmp_path / "full", "hf")
    assert not (tmp_path / "a").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no staging left


def test_criteria_selecting_nothing_gives_an_empty_dataset(classification, tmp_path):
    out = convert(classification, tmp_path / "none", "imagefolder", where="first_n_samples(0)")
    assert out.is_dir() and list(out.iterdir()) == []


def test_splits_are_by_sample_and_deterministic():
    indices = np.repeat(np.arange(100), 3)  # three chains
    first = assign_splits(indices, parse_split("0.7,0.2,0.1"), seed=3)
    assert {k: len(v) for k, v in first.items()} == {"train": 70, "val": 20, "test": 10}
    assert sorted(np.concatenate(list(first.values())).tolist()) == list(range(100))
    again = assign_splits(indices[::-1], (0.7, 0.2, 0.1), seed=3)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert json.dumps(parse_split(None)) == "[1.0]"
