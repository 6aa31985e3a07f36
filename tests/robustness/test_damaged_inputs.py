"""Damaged checkpoints and rotated photos never give a silently wrong result.

A checkpoint whose bytes changed (NaN weights, a flipped bit, a cut-off end) is refused on load
with the one-line "damaged checkpoint" error; an image's EXIF orientation tag is ignored for
dataset files (photo and labels decode the same way) and applied to the photos `predict` reads.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cityseg.checkpoint.io import load_checkpoint, save_checkpoint
from cityseg.checkpoint.loading import load_model
from cityseg.errors import CheckpointError
from tests.helpers import in_process, save_tiny_checkpoint

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


def rotated_jpeg(path: Path, image: np.ndarray, orientation: int = 3) -> None:
    """``image`` saved as a JPEG whose EXIF tells viewers to rotate it (3: by 180 degrees)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(image).save(path, "JPEG", quality=100, exif=exif.tobytes())
