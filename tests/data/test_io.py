"""Image reading: RGB order, label maps, header sizes, and truncated or broken files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cityseg.data.io import check_complete, read_header, read_label_png, read_rgb, write_png
from cityseg.errors import DataError


def _rgb(height: int = 16, width: int = 24) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_read_rgb_returns_rgb_order_of_what_write_png_wrote(tmp_path):
    image = _rgb()
    image[0, 0] = (255, 0, 0)
    write_png(tmp_path / "a" / "image.png", image)
    decoded = read_rgb(tmp_path / "a" / "image.png")
    assert decoded.dtype == np.uint8 and decoded.shape == (16, 24, 3)
    np.testing.assert_array_equal(decoded, image)
    assert tuple(decoded[0, 0]) == (255, 0, 0)


def test_read_label_png_round_trips_a_single_channel_map(tmp_path):
    label = np.arange(16 * 24, dtype=np.uint16).reshape(16, 24).astype(np.uint8)
    write_png(tmp_path / "label.png", label)
    np.testing.assert_array_equal(read_label_png(tmp_path / "label.png"), label)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((8, 8, 3), np.uint8), "colour image"),
        (np.zeros((8, 8), np.uint16), "16-bit"),
    ],
)
def test_read_label_png_rejects_colour_and_16_bit_images(tmp_path, array, message):
    path = tmp_path / "bad_gtFine_labelIds.png"
    cv2.imwrite(str(path), array)
    with pytest.raises(DataError, match=message) as error:
        read_label_png(path)
    assert str(path) in error.value.problems[0]


def test_read_header_gives_png_size_and_channels_without_decoding(tmp_path):
    write_png(tmp_path / "rgb.png", _rgb(10, 30))
    cv2.imwrite(str(tmp_path / "deep.png"), np.zeros((5, 7), np.uint16))
    rgb, deep = read_header(tmp_path / "rgb.png"), read_header(tmp_path / "deep.png")
    assert (rgb.format, rgb.width, rgb.height, rgb.channels, rgb.bit_depth) == ("png", 30, 10, 3, 8)
    assert (deep.width, deep.height, deep.channels, deep.bit_depth) == (7, 5, 1, 16)


@pytest.mark.parametrize("progressive", [False, True])
def test_read_header_gives_jpeg_size(tmp_path, progressive):
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), _rgb(20, 44), [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    header = read_header(path)
    assert (header.format, header.width, header.height, header.channels) == ("jpeg", 44, 20, 3)


def test_read_header_of_a_real_pairs_jpeg(pairs_root):
    header = read_header(pairs_root / "train" / "1.jpg")
    assert (header.width, header.height) == (512, 256)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_files_are_reported_not_decoded_into_grey(tmp_path, suffix):
    path = tmp_path / f"image{suffix}"
    cv2.imwrite(str(path), _rgb(64, 64))
    path.write_bytes(path.read_bytes()[:-200])
    for read in (read_rgb, check_complete):
        with pytest.raises(DataError, match="truncated") as error:
            read(path)
        assert error.value.problems == [error.value.problems[0]]
        assert str(path) in error.value.problems[0]


def test_a_complete_file_passes_check_complete(tmp_path):
    write_png(tmp_path / "ok.png", _rgb())
    check_complete(tmp_path / "ok.png")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"this is not an image at all", "neither a PNG nor a JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40 + b"IEND\xaeB`\x82", "cannot be decoded"),
    ],
)
def test_broken_files_name_the_file_and_the_fix(tmp_path, content, message):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        read_rgb(path)
    assert error.value.problems[0].startswith(f"{path}: ")
    assert ";" in error.value.problems[0]


def test_missing_file_and_folder_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_rgb(tmp_path / "missing.png")
    with pytest.raises(DataError, match="is a folder"):
        read_header(tmp_path)
