"""Damaged checkpoints and rotated photos never give a silently wrong result.

A checkpoint whose bytes changed (NaN weights, a flipped bit, a cut-off end) is refused on load
with the one-line "damaged checkpoint" error; an image's EXIF orientation tag is ignored for
dataset files (photo and labels decode the same way) and applied to the photos `predict` reads
(a user expects a phone photo upright).
"""

from __future__ import annotations

import shutil
import struct
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cityseg.checkpoint.io import load_checkpoint, save_checkpoint
from cityseg.checkpoint.loading import load_model
from cityseg.checkpoint.model_folder import write_model_folder
from cityseg.data.check import check_dataset
from cityseg.data.cityscapes import CityscapesDataset
from cityseg.data.io import read_label_png, read_rgb
from cityseg.data.pairs import PairsDataset
from cityseg.errors import CheckpointError
from cityseg.predict.files import read_photo
from tests.helpers import in_process, save_tiny_checkpoint, write_pairs, write_scenes

LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # a zip member's local file header (30 bytes)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny.pt", (32, 64))


def largest_tensor_bytes(path: Path) -> tuple[int, int]:
    """(offset, length) in the file of the largest tensor's bytes (a member ``archive/data/N``)."""
    with zipfile.ZipFile(path) as archive:
        member = max(
            (info for info in archive.infolist() if "/data/" in info.filename),
            key=lambda info: info.file_size,
        )
    with open(path, "rb") as file:
        file.seek(member.header_offset)
        fields = LOCAL_HEADER.unpack(file.read(LOCAL_HEADER.size))
    name_length, extra_length = fields[-2:]
    start = member.header_offset + LOCAL_HEADER.size + name_length + extra_length
    return start, member.file_size


def damaged_copy(source: Path, folder: Path, name: str, change) -> Path:
    path = folder / name
    shutil.copy(source, path)
    data = bytearray(path.read_bytes())
    path.write_bytes(change(data, *largest_tensor_bytes(source)))
    return path


def nan_weights(data: bytearray, start: int, length: int) -> bytes:
    data[start : start + length] = b"\xff" * length
    return bytes(data)


def flipped_bit(data: bytearray, start: int, length: int) -> bytes:
    data[start + length // 2] ^= 0x04  # one bit of one weight
    return bytes(data)


def truncated(data: bytearray, start: int, length: int) -> bytes:
    return bytes(data[: len(data) * 2 // 3])


@pytest.mark.parametrize("change", [nan_weights, flipped_bit, truncated])
def test_a_damaged_checkpoint_is_refused_on_load(checkpoint, tmp_path, change):
    damaged = damaged_copy(checkpoint, tmp_path, f"{change.__name__}.pt", change)
    assert damaged.read_bytes() != checkpoint.read_bytes()
    with pytest.raises(CheckpointError, match="damaged checkpoint") as caught:
        load_model(damaged)
    (line,) = caught.value.problems
    assert line.startswith(f"{damaged}: damaged checkpoint (")
    if change is not truncated:  # the member whose sum does not match is named
        assert "do not match their stored CRC-32" in line


def test_nan_weights_with_valid_sums_are_refused(checkpoint, tmp_path):
    """NaN written before zipping (or a file re-zipped with fresh sums): the CRCs match, the
    weights do not make sense."""
    state = torch.load(checkpoint, weights_only=True)
    name = max(state["model"], key=lambda key: state["model"][key].numel())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    path = tmp_path / "nan.pt"
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=rf"damaged checkpoint \(model\.{name} holds NaN"):
        load_checkpoint(path)


def test_nan_weights_in_a_model_folder_are_refused(checkpoint, tmp_path):
    """A model folder (as on the Hugging Face Hub) has no sums, but its weights must be finite."""
    state = torch.load(checkpoint, weights_only=True)
    name = max(state["model"], key=lambda key: state["model"][key].numel())
    state["model"][name] = torch.full_like(state["model"][name], float("inf"))
    folder = tmp_path / "model"
    write_model_folder(state, folder)
    with pytest.raises(CheckpointError, match=rf"damaged model weights \({name} holds NaN"):
        load_model(folder)


def test_shared_lists_are_checked_once(checkpoint, tmp_path):
    """A pickle may refer to one list many times: 10 levels of 10 references each are 10^10
    items in a file of a few kilobytes, and the check of the weights must not walk them all."""
    state = torch.load(checkpoint, weights_only=True)
    nested = [torch.zeros(1)] * 10
    for _ in range(9):
        nested = [nested] * 10
    path = tmp_path / "shared.pt"
    save_checkpoint(path, state | {"metrics": nested})
    started = time.perf_counter()
    assert load_checkpoint(path)["format"] == state["format"]
    assert time.perf_counter() - started < 2


def test_a_whole_checkpoint_still_loads(checkpoint):
    model, meta = load_model(checkpoint)
    assert meta["input_size"] == [32, 64]


def test_predict_with_a_damaged_checkpoint_is_one_line(checkpoint, tmp_path, capsys):
    damaged = damaged_copy(checkpoint, tmp_path, "ck.pt", flipped_bit)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(photo)
    status = in_process("predict", str(damaged), str(photo), "--out", str(tmp_path / "out"))
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert error == error.splitlines()[0] and "damaged checkpoint" in error
    assert not (tmp_path / "out").exists()


ROTATE_180, ROTATE_90 = 3, 6
"""EXIF orientation tags: show the stored pixels turned by 180 degrees, or by 90 clockwise."""


def tag_orientation(path: Path, orientation: int) -> None:
    """Give an image file an EXIF orientation tag (written by Pillow), its pixels unchanged: a
    JPEG gets an APP1 segment after its start marker, a PNG is saved again (losslessly)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()  # b"Exif\0\0" and the TIFF structure, as APP1 holds it
    data = path.read_bytes()
    if data.startswith(b"\xff\xd8"):
        segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
        path.write_bytes(data[:2] + segment + data[2:])
    else:
        with Image.open(path) as image:
            image.load()
        image.save(path, "PNG", exif=payload)


def test_a_rotated_pairs_jpeg_is_read_as_stored(tmp_path):
    """A pairs JPEG tagged "rotate 180" keeps the photo on the left and the labels on the right:
    `data check`, training and `predict --input-format pairs` see the stored halves."""
    root = write_pairs(tmp_path / "pairs", 2, size=32)
    before = PairsDataset(root, "train")
    stored = [before.read(sample) for sample in before.samples]
    tag_orientation(root / "train" / "1.jpg", ROTATE_180)
    after = PairsDataset(root, "train")
    for (image, target), sample in zip(stored, after.samples, strict=True):
        tagged_image, tagged_target = after.read(sample)
        assert np.array_equal(tagged_image, image) and np.array_equal(tagged_target, target)
    assert np.array_equal(read_photo(root / "train" / "1.jpg", "pairs"), stored[0][0])
    check_dataset(root, sample=2, progress=False)  # raises on any problem


@pytest.mark.parametrize("orientation", [ROTATE_180, ROTATE_90])
@pytest.mark.parametrize("encoding", ["png", "jpeg"])
def test_a_rotated_photo_in_the_official_layout_lines_up_with_its_labels(
    tmp_path, orientation, encoding
):
    """A leftImg8bit photo with an orientation tag (a PNG's eXIf chunk, or JPEG bytes under the
    .png name) is decoded as stored, like its label map: the same pixels, the same size."""
    root = write_scenes(tmp_path / "scenes", {"train": 2}, 32, 64)
    dataset = CityscapesDataset(root, "train")
    sample = dataset.samples[0]
    if encoding == "jpeg":
        photo = read_rgb(sample.image_path)[..., ::-1]
        jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
        sample.image_path.write_bytes(jpeg)
    image, target = dataset.read(sample)
    tag_orientation(sample.image_path, orientation)
    tagged_image, tagged_target = dataset.read(sample)
    assert np.array_equal(tagged_image, image) and np.array_equal(tagged_target, target)
    check_dataset(root, sample=2, progress=False)


def test_predict_turns_a_phone_photo_upright(checkpoint, tmp_path):
    """A user's photo tagged "rotate 90" is segmented as it is shown, and written upright."""
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :32] = (200, 30, 30)  # the left half red: the top once turned upright
    photo = tmp_path / "phone.jpg"
    cv2.imwrite(str(photo), stored[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    tag_orientation(photo, ROTATE_90)
    upright = read_photo(photo)
    assert upright.shape == (64, 32, 3)
    assert upright[:32, :, 0].mean() > 150 > upright[32:, :, 0].mean()
    status = in_process("predict", str(checkpoint), str(photo), "--out", str(tmp_path / "out"))
    assert status == 0
    written = read_label_png(tmp_path / "out" / "phone_trainIds.png")
    assert written.shape == (64, 32)
