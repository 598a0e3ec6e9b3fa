"""The FiftyOne App in a real browser draws our heatmaps and boxes (headless Chromium).

Each test serves an export with `armory-datasets app`, opens one sample's modal with
selenium and compares screenshots of the modal's image with a field ticked and
unticked in the modal sidebar: the overlay's pixels must differ, and the heatmap's
must be coloured (the images are grey, the colour scale is viridis).

Chromium and chromedriver come from Debian (``./dev test`` installs them). A browser
that cannot start fails these tests; set ``ARMORY_SKIP_BROWSER_TESTS=reason`` to skip
them instead (pytest prints the reason). ``ARMORY_APP_SCREENSHOT_DIR=docs`` keeps the
screenshots (docs/app-*.png in the README).
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from app_support import serving
from PIL import Image

from armory_datasets import criteria as C
from armory_datasets import open_export
from armory_datasets.app import free_port
from armory_datasets.demo.digits import (
    CLASS_NAMES,
    DIGITS_MEAN,
    DIGITS_STD,
    make_detection_canvases,
    train_detector,
    train_test_split_digits,
)
from armory_datasets.engine import EvaluationEngine
from armory_datasets.evaluation import Evaluation
from armory_datasets.export import ObjectDetectionExporter
from armory_datasets.export.captum import CaptumImageClassificationExporter
from armory_datasets.export.drise import DRiseSaliencyObjectDetectionExporter
from armory_datasets.reading_fiftyone import dataset_name
from test_reading_support import digits_model

SKIP_ENV = "ARMORY_SKIP_BROWSER_TESTS"
SCREENSHOT_DIR = os.environ.get("ARMORY_APP_SCREENSHOT_DIR")
RENDER_TIMEOUT = 90.0
CHANGED = 40
"""A pixel changed when a channel moved by more than this (of 255)."""


@pytest.fixture(autouse=True)
def app_registry(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ARMORY_DATASETS_APP_DIR", str(tmp_path_factory.getbasetemp() / "app-registry"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Any]:
    """Headless Chromium under selenium; fails (or skips, with ``ARMORY_SKIP_BROWSER_TESTS``)
    when it cannot start."""
    reason = os.environ.get(SKIP_ENV)
    if reason:
        pytest.skip(f"real-browser App tests skipped: {SKIP_ENV}={reason!r}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail(f"chromium ({chromium}) or chromedriver ({driver_path}) is not installed; "
                    f"`./dev test` installs Debian's chromium and chromium-driver, or set "
                    f"{SKIP_ENV}=reason to skip these tests")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--enable-unsafe-swiftshader", "--window-size=1400,900", "--hide-scrollbars",
                     "--force-device-scale-factor=1", "--disable-background-networking",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as error:
        pytest.fail(f"headless chromium did not start: {error.msg}")
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def screenshot(driver: Any) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))


def media_box(driver: Any) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the modal's image canvas on the screenshot."""
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.CSS_SELECTOR, '[data-cy="modal-looker-container"] canvas')
    x, y = int(canvas.rect["x"]), int(canvas.rect["y"])
    return x, y, x + int(canvas.rect["width"]), y + int(canvas.rect["height"])


def settled(driver: Any, differs_from: np.ndarray | None = None) -> np.ndarray:
    """A screenshot once the page has not changed for 3 s (and, if given, differs from
    ``differs_from``)."""
    deadline = time.monotonic() + RENDER_TIMEOUT
    shots = [screenshot(driver)]
    while time.monotonic() < deadline:
        time.sleep(1.5)
        shots = [*shots[-2:], screenshot(driver)]
        still = len(shots) == 3 and all(np.array_equal(shot, shots[-1]) for shot in shots)
        if still and (differs_from is None or changed(shots[-1], differs_from).any()):
            return shots[-1]
    return shots[-1]


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > CHANGED).any(axis=2)


def coloured(pixels: np.ndarray) -> np.ndarray:
    """Pixels far from grey (the digit images are grey)."""
    return (pixels.max(axis=2).astype(np.int16) - pixels.min(axis=2)) > 30


def open_modal(driver: Any, url: str, name: str, sample_id: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{url}datasets/{name}?id={sample_id}")
    for selector in ('[data-cy="modal"] [data-cy="checkbox-ground_truth"]',
                     '[data-cy="modal-looker-container"] canvas[canvas-loaded="true"]'):
        WebDriverWait(driver, RENDER_TIMEOUT).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, selector)))


def untick(driver: Any, *fields: str) -> None:
    from selenium.webdriver.common.by import By

    for field in fields:
        box = driver.find_element(By.CSS_SELECTOR, f'[data-cy="modal"] [data-cy="checkbox-{field}"]')
        assert box.find_element(By.TAG_NAME, "input").is_selected(), f"{field} was not ticked by default"
        box.click()


def region(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return pixels[y0:y1, x0:x1]


def keep(name: str, pixels: np.ndarray, tmp_path: Path) -> None:
    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / name)


@pytest.fixture(scope="module")
def classification(tmp_path_factory) -> Path:
    """Eight digits with a Captum saliency map each."""
    model = digits_model()
    split = train_test_split_digits(seed=0)
    evaluation = Evaluation("digits-browser", "Captum in the App", "tests")
    evaluation.use_dataset([((split.test_images[:8] - DIGITS_MEAN) / DIGITS_STD, split.test_labels[:8])],
                           scale="float", mean=DIGITS_MEAN, std=DIGITS_STD, class_names=CLASS_NAMES)
    evaluation.use_model(model)
    evaluation.use_exporters(CaptumImageClassificationExporter(model, criterion=C.always()))
    path = tmp_path_factory.mktemp("browser") / "digits"
    EvaluationEngine(evaluation, export_dir=path, quiet=True).run()
    return path


@pytest.fixture(scope="module")
def detection(tmp_path_factory) -> Path:
    """Digit canvases with boxes and a D-RISE map per box."""
    torch.set_num_threads(1)
    detector = train_detector(seed=0, n_canvases=300)
    images, targets = make_detection_canvases(4, height=64, width=96, seed=3, split="test")
    evaluation = Evaluation("drise-browser", "D-RISE in the App", "tests")
    evaluation.use_dataset([{"images": images, "targets": targets}], task="detection", scale="float",
                           class_names=CLASS_NAMES)
    evaluation.use_model(detector)
    evaluation.use_exporters(ObjectDetectionExporter(criterion=C.always()),
                             DRiseSaliencyObjectDetectionExporter(detector, num_classes=10, num_masks=200,
                                                                  seed=1, criterion=C.always()))
    path = tmp_path_factory.mktemp("browser") / "canvases"
    EvaluationEngine(evaluation, export_dir=path, quiet=True).run()
    return path


def test_classification_heatmap_is_drawn_over_the_image(browser, classification, tmp_path):
    export = open_export(classification)
    dataset = export.fiftyone()
    sample = dataset.match({"chain": "benign"}).first()
    with serving(classification, free_port()) as app:
        open_modal(browser, app.url, dataset_name(export), sample.id)
        ticked = settled(browser)
        box = media_box(browser)
        untick(browser, "captum_saliency")
        unticked = settled(browser, differs_from=ticked)
    keep("app-classification-heatmap.png", ticked, tmp_path)
    keep("app-classification-no-heatmap.png", unticked, tmp_path)
    on, off = region(ticked, box), region(unticked, box)
    assert changed(on, off).mean() > 0.2, "the heatmaps changed under 20% of the image area"
    assert coloured(on).mean() > 0.2 and coloured(off).mean() < 0.01


def test_detection_boxes_and_drise_map_are_drawn(browser, detection, tmp_path):
    export = open_export(detection)
    dataset = export.fiftyone()
    sample = dataset.match({"chain": "benign"}).exists("drise_gt_0").first()
    heatmaps = [name for name, field in dataset.get_field_schema().items()
                if getattr(field, "document_type", None) is not None
                and field.document_type.__name__ == "Heatmap"]
    assert "drise_gt_0" in heatmaps and "drise_pred_0" in heatmaps
    with serving(detection, free_port()) as app:
        open_modal(browser, app.url, dataset_name(export), sample.id)
        every_map = settled(browser)
        box = media_box(browser)
        untick(browser, *(name for name in heatmaps if name != "drise_gt_0"))
        one_map = settled(browser, differs_from=every_map)
        untick(browser, "drise_gt_0")
        boxes_only = settled(browser, differs_from=one_map)
        untick(browser, "ground_truth", "predictions")
        bare = settled(browser, differs_from=boxes_only)
    keep("app-detection-drise.png", one_map, tmp_path)
    keep("app-detection-boxes.png", boxes_only, tmp_path)
    drise, boxes, image = (region(shot, box) for shot in (one_map, boxes_only, bare))
    assert changed(drise, boxes).mean() > 0.2, "the D-RISE map changed under 20% of the image area"
    assert coloured(drise).mean() > 0.2 and coloured(image).mean() < 0.01
    outline = changed(boxes, image)
    assert 0.002 < outline.mean() < 0.2, "boxes are outlines: some pixels, not the whole image"
