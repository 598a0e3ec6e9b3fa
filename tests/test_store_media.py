"""Media files: 16-bit PNG heatmaps the App decodes, values recoverable, names that follow
content; images and maps created under their names, a file or link found there replaced."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from armory_datasets.store.media import (
    HEATMAP_LEVELS,
    encode_heatmap,
    heatmap_relpath,
    read_heatmap,
    write_heatmap,
    write_png,
)


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-3e-4, 7e-4), (-250.0, 1e4), (5.0, 5.0)])
def test_values_come_back_within_half_a_level_of_the_range(tmp_path, low, high):
    rng = np.random.default_rng(0)
    heat = rng.uniform(low, high, size=(31, 17)).astype(np.float32)
    heat[0, 0], heat[-1, -1] = low, high
    path = tmp_path / write_heatmap(tmp_path, "ig", "benign", 4, heat)
    with Image.open(path) as image:  # what the App's 16-bit PNG decoder gets
        assert (image.format, image.mode) == ("PNG", "I;16")
        levels = np.asarray(image)
    assert levels.dtype == np.uint16 and (levels.max() == HEATMAP_LEVELS or high == low)
    back = read_heatmap(path)
    assert back.dtype == np.float32 and back.shape == heat.shape
    span = high - low
    assert np.abs(back - heat).max() <= span / HEATMAP_LEVELS * 0.5001 + 1e-6 * max(abs(low), abs(high))
    assert np.abs(back - heat).max() <= 1e-4 * span + 1e-6 * max(abs(low), abs(high))


def test_names_follow_content(tmp_path):
    first = write_heatmap(tmp_path, "ig", "benign", 4, np.eye(3))
    assert write_heatmap(tmp_path, "ig", "benign", 4, np.eye(3)) == first  # same bytes, same name
    second = write_heatmap(tmp_path, "ig", "benign", 4, np.eye(3)[::-1])
    assert second != first and second.startswith("media/heatmaps/ig/benign/00000004-")
    assert sorted(p.name for p in (tmp_path / "media/heatmaps/ig/benign").iterdir()) == sorted(
        [first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]])  # no .tmp left behind


@pytest.mark.parametrize("heat, message", [
    (np.zeros((2, 2, 1)), r"shape \(2, 2, 1\)"),
    (np.array([[0.0, np.nan]]), r"shape \(1, 2\)"),
    (np.array([["a"]]), r"<U1 array of shape \(1, 1\)"),
])
def test_bad_maps_are_refused_before_a_file_is_written(tmp_path, heat, message):
    with pytest.raises(ValueError, match=f"heatmap: got .*{message}; expected a 2-D numeric "
                                         r"\(H, W\) map of finite values"):
        write_heatmap(tmp_path, "ig", "benign", 0, heat)
    assert not (tmp_path / "media").exists()


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n truncated"])
def test_a_damaged_or_foreign_file_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="x.png: not a readable heatmap PNG"):
        read_heatmap(path)


def test_a_png_without_the_range_chunk_is_refused(tmp_path):
    path = tmp_path / "plain.png"
    Image.fromarray(np.zeros((2, 2), np.uint16)).save(path)
    with pytest.raises(ValueError, match="plain.png: expected a 16-bit grayscale heatmap PNG"):
        read_heatmap(path)


def _pixels(value: int) -> np.ndarray:
    return np.full((4, 5, 3), value, np.uint8)


def test_an_image_is_created_under_its_name_and_a_torn_one_is_replaced_whole(tmp_path):
    path = tmp_path / "media/images/benign/00000001.png"
    write_png(path, _pixels(7))
    assert np.array_equal(np.asarray(Image.open(path)), _pixels(7))
    path.write_bytes(path.read_bytes()[:20])  # what a killed export leaves
    write_png(path, _pixels(9))  # a resumed export writes the record again
    assert np.array_equal(np.asarray(Image.open(path)), _pixels(9))
    assert sorted(p.name for p in path.parent.iterdir()) == ["00000001.png"]


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_under_a_media_name_is_replaced_never_written_through(tmp_path, link):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the export's")
    path = tmp_path / "e/media/images/benign/00000001.png"
    heat = tmp_path / "e" / heatmap_relpath("ig", "benign", 1, encode_heatmap(np.eye(2)))
    for planted in (path, heat):
        planted.parent.mkdir(parents=True)
        planted.symlink_to(outside) if link == "symlink" else planted.hardlink_to(outside)
    write_png(path, _pixels(3))
    assert tmp_path / "e" / write_heatmap(tmp_path / "e", "ig", "benign", 1, np.eye(2)) == heat
    assert outside.read_bytes() == b"not the export's"
    assert not path.is_symlink() and np.array_equal(np.asarray(Image.open(path)), _pixels(3))
    assert not heat.is_symlink() and read_heatmap(heat).tolist() == [[1.0, 0.0], [0.0, 1.0]]
