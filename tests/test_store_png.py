"""The hand-written PNG encoder: standard files that Pillow and libpng decode to the same pixels,
at every level; a level outside 0..9 refused before anything is written."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from armory_datasets.store import ExportWriter
from armory_datasets.store.png import encode_png

SHAPES = [(1, 1, 3), (1, 9, 3), (9, 1, 3), (7, 13, 1), (5, 6, 4), (64, 64, 3), (3, 2)]


def _pixels(shape, dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("level", [0, 1, 2, 3, 4, 9])
def test_pillow_and_opencv_decode_the_same_pixels(shape, level):
    pixels = _pixels(shape)
    content = encode_png(pixels, level)
    with Image.open(io.BytesIO(content)) as image:
        image.load()  # checks every chunk's CRC and the zlib stream
        back = np.asarray(image)
    assert np.array_equal(back.reshape(pixels.shape), pixels)
    decoded = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)  # libpng
    if decoded.ndim == 3:  # OpenCV orders channels BGR(A)
        decoded = decoded[:, :, [2, 1, 0, 3][:decoded.shape[2]]]
    assert np.array_equal(decoded.reshape(pixels.shape), pixels)


def test_sixteen_bit_gray_and_text_chunks():
    levels = _pixels((17, 31), np.uint16)
    content = encode_png(levels, text={"armory_datasets:range": "-1.5 2.0"})
    with Image.open(io.BytesIO(content)) as image:
        assert (image.mode, image.text) == ("I;16", {"armory_datasets:range": "-1.5 2.0"})
        assert np.array_equal(np.asarray(image), levels)
    assert np.array_equal(cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED), levels)


def test_same_pixels_same_bytes_and_smaller_than_raw_on_a_photo():
    from sklearn.datasets import load_sample_images

    photo = np.ascontiguousarray(load_sample_images().images[0][:128, :128])
    assert encode_png(photo) == encode_png(photo.copy())
    assert len(encode_png(photo)) < 0.8 * photo.nbytes  # the filter and deflate do compress
    strided = np.asarray(load_sample_images().images[0])[:128:2, :128:2]  # a non-contiguous view
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(strided)))), strided)


@pytest.mark.parametrize("pixels", [
    np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 3), np.uint16),
    np.zeros((0, 4, 3), np.uint8), np.zeros((4,), np.uint8), np.zeros((2, 2, 3, 1), np.uint8),
])
def test_other_arrays_are_refused_naming_the_expected_form(pixels):
    with pytest.raises(ValueError, match=r"pixels: got .* expected a non-empty \(H, W, C\) uint8"):
        encode_png(pixels)


def test_higher_levels_give_files_no_larger_on_a_photo():
    from sklearn.datasets import load_sample_images

    photo = np.ascontiguousarray(load_sample_images().images[1][:96, :96])
    sizes = {level: len(encode_png(photo, level)) for level in range(10)}
    assert sizes[9] == min(sizes.values()) and sizes[0] == max(sizes.values())
    assert sizes[1] < 0.5 * sizes[0]


@pytest.mark.parametrize("level", [-1, 10, 1.0, True, "1", None])
def test_a_level_outside_0_to_9_is_refused_before_anything_is_written(tmp_path, level):
    with pytest.raises(ValueError, match=r"png_compress_level: got .*; expected an int in 0\.\.9"):
        ExportWriter(tmp_path / "e", {"name": "e"}, png_compress_level=level)
    assert not (tmp_path / "e").exists()
    with pytest.raises(ValueError, match=r"compress_level: got .*; expected an int in 0\.\.9"):
        encode_png(np.zeros((1, 1), np.uint8), level)
