"""No command deletes or overwrites what it did not make: it writes only files it creates or
recognises as its own (a cache split's index, a download's marker, an ONNX model it exported, a
run folder's checkpoints), never one of its inputs; archives are checked completely before the
output folder is touched, and a failed command leaves the folder as it found it."""

from __future__ import annotations

import os
import socket
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg.cli import main
from cityseg.data import download
from cityseg.data.download import DOWNLOAD_MARKER, download_pairs
from cityseg.data.prepare import prepare_cache
from cityseg.errors import DataError
from cityseg.train.run_lock import LOCK_FILE, run_folder_lock
from tests.helpers import in_process, save_tiny_checkpoint, train_args, write_pairs, write_scenes


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) and its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# --- data prepare ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"), 2, size=32)


def test_prepare_into_the_dataset_folder_is_refused(pairs, capsys):
    before = snapshot(pairs)
    assert main(["data", "prepare", str(pairs), "--out", str(pairs), "--workers", "1"]) == 2
    assert "is the dataset folder itself" in one_error_line(capsys)
    assert snapshot(pairs) == before


def test_prepare_never_replaces_a_split_folder_it_did_not_write(pairs, tmp_path, capsys):
    out = tmp_path / "cache"
    (out / "train").mkdir(parents=True)
    (out / "train" / "notes.txt").write_text("mine")
    assert main(["data", "prepare", str(pairs), "--out", str(out), "--workers", "1"]) == 2
    assert "train: exists and is not a cache split" in one_error_line(capsys)
    assert (out / "train" / "notes.txt").read_text() == "mine"


def test_prepare_refuses_a_split_folder_holding_the_dataset(tmp_path):
    root = write_pairs(tmp_path / "train", 2, size=32)  # --out contains it as OUT/train
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=r"train: holds files of the dataset \("):
        prepare_cache(root, tmp_path, splits=["train"], format="pairs", workers=1)
    assert snapshot(tmp_path) == before


def test_prepare_replaces_its_own_cache_split(pairs, tmp_path):
    out = tmp_path / "cache"
    prepare_cache(pairs, out, workers=1)
    prepare_cache(pairs, out, workers=1, force=True)  # its own split: replaced
    assert (out / "train" / "index.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# --- data download pairs --from-zip ------------------------------------------------------------


@pytest.fixture
def small_pairs(monkeypatch):
    monkeypatch.setattr(download, "PAIRS_SPLITS", {"train": 2, "val": 1})
    monkeypatch.setattr(download, "PAIRS_SIZE", (16, 32))


def pairs_zip(path: Path, splits=("train", "val"), method=zipfile.ZIP_STORED) -> Path:
    ok, jpeg = cv2.imencode(".jpg", np.full((16, 32, 3), 128, np.uint8))
    with zipfile.ZipFile(path, "w", method) as archive:
        for split, count in (("train", 2), ("val", 1)):
            if split in splits:
                for index in range(1, count + 1):
                    archive.writestr(f"cityscapes_data/{split}/{index}.jpg", jpeg.tobytes())
    return path


def users_folder(out: Path) -> dict[str, bytes]:
    for split in ("train", "val"):
        (out / split).mkdir(parents=True)
        (out / split / "mine.jpg").write_bytes(b"the user's own photo")
    return snapshot(out)


def download_args(out: Path, archive: Path) -> list[str]:
    return ["data", "download", "pairs", "--out", str(out), "--from-zip", str(archive)]


def test_download_never_deletes_split_folders_it_did_not_write(small_pairs, tmp_path, capsys):
    out = tmp_path / "data"
    before = users_folder(out)
    assert main(download_args(out, pairs_zip(tmp_path / "a.zip"))) == 2
    assert "train: already exists and was not written by" in one_error_line(capsys)
    assert snapshot(out) == before


def test_a_failed_download_leaves_the_folder_as_it_found_it(small_pairs, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(download_args(out, pairs_zip(tmp_path / "a.zip"))) == 0
    before = snapshot(out)
    assert (out / DOWNLOAD_MARKER).is_file()
    no_val = pairs_zip(tmp_path / "b.zip", splits=("train",))
    assert main(download_args(out, no_val)) == 2
    assert "no val/ folder" in one_error_line(capsys)
    assert snapshot(out) == before  # the earlier download is untouched, no leftovers
    assert main(download_args(tmp_path / "new", no_val)) == 2
    assert not (tmp_path / "new").exists()  # the folder it made is gone again


def test_a_download_replaces_its_own_earlier_download(small_pairs, tmp_path):
    out = tmp_path / "data"
    download_pairs(out, pairs_zip(tmp_path / "a.zip"))
    (out / "train" / "1.jpg").write_bytes(b"changed")
    download_pairs(out, pairs_zip(tmp_path / "a.zip"))
    assert (out / "train" / "1.jpg").read_bytes() != b"changed"
    assert sorted(p.name for p in out.iterdir()) == [DOWNLOAD_MARKER, "train", "val"]


def patched(archive: Path, offsets: tuple[int, int], value: bytes) -> Path:
    """``archive`` with ``value`` written at an offset of every local header and central
    directory entry (the method at 8 and 10, the flags at 6 and 8)."""
    data = bytearray(archive.read_bytes())
    for signature, offset in zip((b"PK\x03\x04", b"PK\x01\x02"), offsets, strict=True):
        start = data.find(signature)
        while start >= 0:
            data[start + offset : start + offset + len(value)] = value
            start = data.find(signature, start + 4)
    archive.write_bytes(bytes(data))
    return archive


@pytest.mark.parametrize(
    ("offsets", "value", "message"),
    [
        ((6, 8), b"\x01\x00", "is encrypted; give an archive without a password"),
        ((8, 10), b"\x5d\x00", "uses compression method 93, which cannot be unpacked here"),
    ],
    ids=["encrypted", "zstd"],
)
def test_archives_python_cannot_unpack_are_one_line(
    small_pairs, tmp_path, capsys, offsets, value, message
):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    before = snapshot(out)
    archive = patched(pairs_zip(tmp_path / "a.zip"), offsets, value)
    assert main(download_args(out, archive)) == 2
    assert message in one_error_line(capsys)
    assert snapshot(out) == before


def test_a_zip_bomb_is_refused_before_unpacking(small_pairs, tmp_path, capsys):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as opened:
        opened.writestr("cityscapes_data/train/zeros.bin", bytes(4 << 20))
    assert archive.stat().st_size < 40_000
    out = tmp_path / "data"
    assert main(download_args(out, archive)) == 2
    assert "more than 100 times its size; not unpacked" in one_error_line(capsys)
    assert not out.exists()


# --- export ------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return save_tiny_checkpoint(tmp_path / "ck.pt", (32, 64), 0, 4, 2)


def test_export_never_replaces_its_checkpoint(checkpoint, capsys):
    before = checkpoint.read_bytes()
    assert main(["export", str(checkpoint), "--out", str(checkpoint)]) == 2
    assert "is the checkpoint being exported" in one_error_line(capsys)
    assert checkpoint.read_bytes() == before


def test_export_replaces_only_a_model_it_exported(checkpoint, tmp_path, capsys):
    users = tmp_path / "model.onnx"
    users.write_bytes(b"\x08 the user's own model")
    assert main(["export", str(checkpoint), "--out", str(users), "--no-verify"]) == 2
    assert "is not an ONNX model written by `cityseg export`" in one_error_line(capsys)
    assert users.read_bytes() == b"\x08 the user's own model"
    ours = tmp_path / "ours.onnx"
    assert main(["export", str(checkpoint), "--out", str(ours), "--no-verify"]) == 0
    first = ours.stat().st_ino
    assert main(["export", str(checkpoint), "--out", str(ours), "--no-verify"]) == 0
    assert ours.stat().st_ino != first  # replaced whole, by a rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt", "model.onnx", "ours.onnx"]


# --- predict -----------------------------------------------------------------------------------


def test_predict_never_writes_over_an_input(tiny_checkpoint, tmp_path, capsys):
    folder = tmp_path / "ph"
    folder.mkdir()
    for name in ("a.png", "a_color.png"):
        cv2.imwrite(str(folder / name), np.full((16, 32, 3), 90, np.uint8))
    before = snapshot(folder)
    args = ["predict", str(tiny_checkpoint), str(folder / "a.png"), str(folder / "a_color.png")]
    assert main([*args, "--out", str(folder), "--no-progress"]) == 2
    assert "a_color.png: is an input, and " in one_error_line(capsys)
    assert snapshot(folder) == before


def test_predict_into_its_input_folder_says_out_is_excluded(tiny_checkpoint, tmp_path, capsys):
    folder = tmp_path / "ph"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((16, 32, 3), 90, np.uint8))
    assert main(["predict", str(tiny_checkpoint), str(folder), "--out", str(folder)]) == 2
    assert "never read as input (--out holds the outputs)" in one_error_line(capsys)


def test_videos_of_one_name_from_two_folders_are_refused(tiny_checkpoint, tmp_path, capsys):
    for folder in ("day", "night"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "clip.mp4").write_bytes(b"not decoded: refused before any work")
    videos = [str(tmp_path / "day" / "clip.mp4"), str(tmp_path / "night" / "clip.mp4")]
    out = tmp_path / "out"
    assert main(["predict", str(tiny_checkpoint), *videos, "--out", str(out)]) == 2
    assert "night/clip.mp4: same name as" in one_error_line(capsys)
    assert not out.exists()


# --- train -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"checkpoint_best.pt": b"best", "metrics.jsonl": b"{}\n"}, "no checkpoint_last.pt"),
        ({"notes.txt": b"the user's"}, "already holds notes.txt and no checkpoint_last.pt"),
        ({"config.yaml": b"model: {}\n"}, "stopped before its first checkpoint; start it again"),
    ],
    ids=["best-only", "not-a-run", "no-save-yet"],
)
def test_a_new_run_never_replaces_files_in_its_folder(tmp_path, capsys, files, message):
    run = tmp_path / "run"
    run.mkdir()
    for name, data in files.items():
        (run / name).write_bytes(data)
    before = snapshot(run)
    assert in_process(*train_args(tmp_path / "data", run)) == 2
    assert message in one_error_line(capsys)
    assert snapshot(run) == before


def test_a_run_folder_has_one_writer_at_a_time(tmp_path, capsys):
    data = write_scenes(tmp_path / "data", {"train": 4, "val": 2}, 32, 64)
    run = tmp_path / "run"
    args = train_args(data, run, "train.max_iterations=2", "train.epochs=1")
    with run_folder_lock(run):  # another run writes it
        holder = (run / LOCK_FILE).read_text().strip()
        assert in_process(*args) == 2
        err = one_error_line(capsys)
        assert f"another cityseg train is writing this run folder ({holder})" in err
        assert holder == f"pid {os.getpid()} on {socket.gethostname()}"
        assert [p.name for p in run.iterdir()] == [LOCK_FILE]
    assert not run.exists()  # the lock's holder made the folder and nothing else: removed
    assert in_process(*args) == 0  # the lock is free again
    assert (run / "checkpoint_last.pt").is_file() and not (run / LOCK_FILE).exists()


def test_a_cityscapes_package_never_unpacks_over_a_different_file(tmp_path):
    archive = tmp_path / "gtFine.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("gtFine/README", "the package's")
        opened.writestr("license.txt", "licence")
    out = tmp_path / "cityscapes"
    (out / "gtFine").mkdir(parents=True)
    (out / "gtFine" / "README").write_text("the user's notes")
    before = snapshot(out)
    with pytest.raises(DataError, match=r"README: exists and differs from gtFine/README in"):
        download._unzip(archive, out)
    assert snapshot(out) == before
    (out / "gtFine" / "README").write_text("the package's")  # the same file: kept, not rewritten
    inode = (out / "gtFine" / "README").stat().st_ino
    download._unzip(archive, out)
    assert (out / "gtFine" / "README").stat().st_ino == inode
    assert (out / "license.txt").read_text() == "licence"
    assert sorted(p.name for p in out.iterdir()) == ["gtFine", "license.txt"]


def test_score_replaces_only_a_score_file(tmp_path, capsys):
    users = tmp_path / "results.json"
    users.write_text('{"mine": 1}')
    args = ["score", str(tmp_path), "--gt", str(tmp_path), "--out", str(users)]
    assert main(args) == 2
    assert "is not a score file written by `cityseg score`" in one_error_line(capsys)
    assert users.read_text() == '{"mine": 1}'


# --- evaluate ----------------------------------------------------------------------------------


def test_evaluate_replaces_only_an_evaluation(tiny_checkpoint, tmp_path, capsys):
    scenes = write_scenes(tmp_path / "scenes", {"val": 1}, 32, 64)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text('{"my": "numbers"}')
    args = ["evaluate", str(tiny_checkpoint), "--data", str(scenes), "--out", str(out)]
    args += ["--workers", "0", "--no-progress"]
    assert main(args) == 2
    assert "metrics.json: not written by cityseg evaluate" in one_error_line(capsys)
    assert (out / "metrics.json").read_text() == '{"my": "numbers"}'
    (out / "metrics.json").unlink()
    assert main(args) == 0 and main(args) == 0  # its own evaluation is replaced
    assert not list(out.glob(".*tmp"))


# --- data generate -----------------------------------------------------------------------------


def test_generate_never_writes_into_a_data_set_it_did_not_make(tmp_path, capsys):
    real = tmp_path / "real"
    (real / "leftImg8bit" / "val" / "pixelton").mkdir(parents=True)
    before = snapshot(real)
    args = ["data", "generate", str(real), "--train", "0", "--val", "1", "--test", "0"]
    assert main([*args, "--size", "32x64"]) == 2
    assert "a data set that `cityseg data generate` did not write" in one_error_line(capsys)
    assert snapshot(real) == before and not any(real.glob("gtFine"))
    mine = tmp_path / "mine"
    for _ in range(2):  # its own data set is written again
        assert main(["data", "generate", str(mine), *args[3:], "--size", "32x64"]) == 0
