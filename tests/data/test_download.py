"""Downloading: the Cityscapes protocol served by a local HTTP server on 127.0.0.1 (login that
answers 302, package list, MD5 sums, files with Range support, a wrong MD5, a connection dropped
half-way then resumed), and the Kaggle pairs set from a built archive in its nested layout; the
kagglehub call itself is replaced by a function that returns a prepared folder. No test reaches
the internet."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import urllib.parse
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityseg.cli import main
from cityseg.data import download
from cityseg.data.download import DownloadError, download_cityscapes, download_pairs, login
from cityseg.errors import DataError

USER, PASSWORD = "student@example.org", "s3cret"


def zipped(root: Path, top: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root))
        archive.writestr("README", "test package\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("scenes")
    assert main(["data", "generate", str(root), "--train", "3", "--val", "2", "--test", "0",
                 "--size", "64x128"]) == 0  # fmt: skip
    return {
        "gtFine_trainvaltest.zip": zipped(root, "gtFine"),
        "leftImg8bit_trainvaltest.zip": zipped(root, "leftImg8bit"),
        "broken_md5.zip": b"these bytes do not match the sum the server gives",
    }


class Site:
    """What the official site does, as far as the downloader uses it."""

    def __init__(self, packages: dict[str, bytes]) -> None:
        self.packages = packages
        self.ids = {name: str(index + 1) for index, name in enumerate(packages)}
        self.drop_next_download = False
        self.ranges: list[str] = []

    def handler(self):
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
                if url.path == "/login":
                    return self.reply(200, b"login form")
                if url.path == "/downloads/" and "list" in query:
                    listing = [
                        {"name": name, "packageID": site.ids[name], "thirdparty": "0",
                         "size": f"{max(len(data) / 1024, 1):.0f}KB"}
                        for name, data in site.packages.items()
                    ]  # fmt: skip
                    return self.reply(200, json.dumps(listing).encode())
                name = next((n for n, i in site.ids.items() if i == query.get("packageID")), None)
                if name is None:
                    return self.reply(404, b"no such package")
                data = site.packages[name]
                if url.path == "/md5-sum/":
                    digest = hashlib.md5(data).hexdigest()
                    if name == "broken_md5.zip":
                        digest = "0" * 32
                    return self.reply(200, f"{digest}  {name}\n".encode())
                if url.path == "/file-handling/":
                    return self.send_file(data)
                return self.reply(404, b"unknown")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if form.get("username") == USER and form.get("password") == PASSWORD:
                    self.send_response(302)
                    self.send_header("Location", "/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self.reply(200, b"wrong password")

            def send_file(self, data: bytes) -> None:
                start = 0
                if "Range" in self.headers:
                    site.ranges.append(self.headers["Range"])
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if site.drop_next_download:  # half of it, then the connection drops
                    site.drop_next_download = False
                    self.wfile.write(data[start : start + (len(data) - start) // 2])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(data[start:])

            def reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def site(packages, monkeypatch):
    served = Site(packages)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), served.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("CITYSEG_CITYSCAPES_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("CITYSCAPES_USERNAME", USER)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", PASSWORD)
    yield served
    server.shutdown()
    server.server_close()


def test_download_verifies_unzips_and_checks_the_official_layout(site, tmp_path):
    result = download_cityscapes(tmp_path / "cityscapes")
    root = tmp_path / "cityscapes"
    assert sorted(p.name for p in (root / "leftImg8bit").iterdir()) == ["train", "val"]
    assert len(list(root.glob("gtFine/val/*/*_labelIds.png"))) == 2
    text = "\n".join(result.lines)
    assert text.count("MD5 verified") == 2 and "train" in text and "val" in text
    assert not (root / "downloads").exists()  # the archives are deleted once unpacked


def test_the_cli_downloads_with_credentials_from_the_environment(site, tmp_path, capsys):
    out = tmp_path / "cs"
    assert main(["data", "download", "cityscapes", "--out", str(out), "--keep-zips",
                 "--packages", "gtFine_trainvaltest", "leftImg8bit_trainvaltest"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "gtFine_trainvaltest.zip: downloaded" in printed and "next: cityseg train" in printed
    assert (out / "downloads" / "gtFine_trainvaltest.zip").is_file()
    assert main(["data", "download", "cityscapes", "--out", str(out)]) == 0  # again: kept
    assert "already downloaded, MD5 verified" in capsys.readouterr().out


def test_bad_credentials_are_one_line(site, monkeypatch):
    monkeypatch.setenv("CITYSCAPES_PASSWORD", "wrong")
    with pytest.raises(DownloadError, match="the login was refused for 'student@example.org'"):
        login(USER, "wrong")


def test_a_package_that_does_not_exist(site, tmp_path):
    with pytest.raises(DownloadError, match=r"no Cityscapes package named gtCoarse.zip"):
        download_cityscapes(tmp_path / "cs", ["gtCoarse"])


def test_an_md5_mismatch_keeps_the_file_aside(site, tmp_path):
    with pytest.raises(DownloadError, match="MD5 sum does not match") as error:
        download_cityscapes(tmp_path / "cs", ["broken_md5"])
    aside = tmp_path / "cs" / "downloads" / "broken_md5.zip.md5-mismatch"
    assert aside.is_file() and str(aside) in str(error.value)
    assert not (tmp_path / "cs" / "downloads" / "broken_md5.zip").exists()


def test_an_interrupted_download_resumes(site, tmp_path):
    site.drop_next_download = True
    with pytest.raises(DownloadError, match="resumes when the command is run again"):
        download_cityscapes(tmp_path / "cs", ["gtFine_trainvaltest"], check=False)
    partial = tmp_path / "cs" / "downloads" / "gtFine_trainvaltest.zip"
    received = partial.stat().st_size
    assert 0 < received < len(site.packages["gtFine_trainvaltest.zip"])
    result = download_cityscapes(tmp_path / "cs", ["gtFine_trainvaltest"], check=False)
    assert site.ranges == [f"bytes={received}-"]  # only the rest was asked for
    assert "MD5 verified" in "\n".join(result.lines)
    assert (tmp_path / "cs" / "gtFine" / "train").is_dir()


def test_no_network_is_one_line(monkeypatch, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CITYSEG_CITYSCAPES_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError, match=r"cannot reach the server .*check the network"):
        login(USER, PASSWORD)
    monkeypatch.setenv("CITYSCAPES_USERNAME", USER)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", PASSWORD)
    with pytest.raises(DownloadError, match=r"cannot reach the server"):
        download_cityscapes(tmp_path / "cs", ["gtFine_trainvaltest"], check=False)
    assert not (tmp_path / "cs").exists()  # nothing made before the network answered


def test_a_full_disk_while_unpacking(site, tmp_path, monkeypatch):
    import errno

    def full(self, path=None, members=None, pwd=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", full)
    with pytest.raises(DownloadError, match="the disk is full; free some space"):
        download_cityscapes(tmp_path / "cs", ["gtFine_trainvaltest"], check=False)


def test_no_credentials_and_no_terminal(monkeypatch):
    monkeypatch.delenv("CITYSCAPES_USERNAME", raising=False)
    monkeypatch.delenv("CITYSCAPES_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(DownloadError, match="set CITYSCAPES_USERNAME and CITYSCAPES_PASSWORD"):
        download.credentials()


# --- pairs ---------------------------------------------------------------------------------------


def pairs_archive(path: Path, train: int, val: int, size=(256, 512)) -> Path:
    """A zip in the Kaggle layout, the duplicate nested folder included."""
    ok, jpeg = cv2.imencode(".jpg", np.full((*size, 3), 128, np.uint8))
    with zipfile.ZipFile(path, "w") as archive:
        for top in ("cityscapes_data", "cityscapes_data/cityscapes_data"):
            for split, count in (("train", train), ("val", val)):
                for index in range(1, count + 1):
                    archive.writestr(f"{top}/{split}/{index}.jpg", jpeg.tobytes())
    return path


@pytest.fixture
def small_pairs(monkeypatch):
    monkeypatch.setattr(download, "PAIRS_SPLITS", {"train": 6, "val": 3})


def test_pairs_from_a_zip_are_flattened_and_checked(small_pairs, tmp_path, capsys):
    archive = pairs_archive(tmp_path / "archive.zip", 6, 3)
    out = tmp_path / "pairs"
    assert main(["data", "download", "pairs", "--out", str(out), "--from-zip", str(archive)]) == 0
    assert len(list((out / "train").glob("*.jpg"))) == 6
    assert len(list((out / "val").glob("*.jpg"))) == 3
    assert not list(out.glob(".unpack-*")) and not (out / "cityscapes_data").exists()
    assert "checked: 6 train and 3 val JPEGs of 512x256" in capsys.readouterr().out


def test_pairs_of_the_wrong_size_or_count_say_what_is_wrong(small_pairs, tmp_path):
    with pytest.raises(DataError) as error:
        download_pairs(tmp_path / "a", pairs_archive(tmp_path / "a.zip", 5, 3, size=(256, 256)))
    problems = "\n".join(error.value.problems)
    assert "5 JPEGs where the pairs set has 6" in problems
    assert "256x256 pixels where pairs images are 512x256" in problems
    (tmp_path / "other.zip").write_bytes(b"PK not really")
    with pytest.raises(DataError, match="not a readable zip archive"):
        download_pairs(tmp_path / "b", tmp_path / "other.zip")


def test_pairs_through_kagglehub(small_pairs, tmp_path, monkeypatch):
    """kagglehub.dataset_download is replaced by a function that returns a prepared folder."""
    prepared = tmp_path / "kaggle_cache"
    with zipfile.ZipFile(pairs_archive(tmp_path / "k.zip", 6, 3)) as archive:
        archive.extractall(prepared)
    monkeypatch.setattr(download, "kagglehub_download", lambda handle=None: prepared)
    result = download_pairs(tmp_path / "pairs")
    assert "kaggle dansbecker/cityscapes-image-pairs" in result.lines[0]
    assert len(list((tmp_path / "pairs" / "train").glob("*.jpg"))) == 6
    assert (prepared / "cityscapes_data" / "train").is_dir()  # kagglehub's cache is left as it is


def test_without_kagglehub_the_archive_is_the_way(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_kagglehub(name, *args, **kwargs):
        if name == "kagglehub":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kagglehub)
    with pytest.raises(DownloadError, match="pip install kagglehub.*--from-zip FILE"):
        download.kagglehub_download()
