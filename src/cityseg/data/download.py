"""Getting the data: the official Cityscapes packages (an account is needed) and the Kaggle
"cityscapes-image-pairs" set, each ending in a checked dataset folder.

Cityscapes: the protocol of ``cityscapesscripts.download`` (the dataset authors' downloader: the
package list, MD5 sums, and files sent in ranges so that a download resumes) runs on a session
that logged in here, from ``CITYSCAPES_USERNAME`` / ``CITYSCAPES_PASSWORD`` or a prompt (the
password is never echoed nor stored). ``CITYSEG_CITYSCAPES_URL`` points it at a mirror (the tests
use a local server).

Pairs: ``kagglehub`` (Kaggle's client; public data needs no token), or an archive the user
already has (``from_zip``). The archive nests a duplicate folder
(``cityscapes_data/cityscapes_data/train``); the split folders are found wherever they are and
moved to ``OUT/train`` and ``OUT/val``.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from cityscapesscripts.download import downloader

from cityseg import environment
from cityseg.data.archives import check_archive, check_targets, move_unpacked, unpack_archive
from cityseg.data.check import check_dataset, format_report
from cityseg.data.io import read_header
from cityseg.errors import ConfigError, DataError, UserError
from cityseg.outputs import check_output_folder

OFFICIAL_URL = "https://www.cityscapes-dataset.com"
DEFAULT_PACKAGES = ("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip")
KAGGLE_PAIRS = "dansbecker/cityscapes-image-pairs"
PAIRS_SPLITS = {"train": 2975, "val": 500}
PAIRS_SIZE = (256, 512)  # height, width of a pairs JPEG
CHUNK = 1 << 20


class DownloadError(UserError):
    """A download that cannot be done as asked: network, credentials, names, checksums, disk."""


@dataclass
class Downloaded:
    """What a download produced: the dataset folder and one line per package or step."""

    root: Path
    lines: list[str]


# --- Cityscapes ---------------------------------------------------------------------------------


URL_VARIABLE = "CITYSEG_CITYSCAPES_URL"


def base_url() -> str:
    """The Cityscapes site: ``CITYSEG_CITYSCAPES_URL`` (a mirror, a test server) when set, else the
    official one; ConfigError when it is not an http(s) address."""
    url = environment.text(URL_VARIABLE) or OFFICIAL_URL
    scheme, _, rest = url.strip().partition("://")
    if scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise ConfigError(
            f"{URL_VARIABLE}={url!r}: not an http(s) address; give one such as {OFFICIAL_URL}, "
            "or unset it"
        )
    return url.strip().rstrip("/")


def _session():
    """A requests session whose requests to the official site go to :func:`base_url`."""

    class Session(requests.Session):
        def request(self, method, url, *args, **kwargs):
            if isinstance(url, str) and url.startswith(OFFICIAL_URL):
                url = base_url() + url[len(OFFICIAL_URL) :]
            return super().request(method, url, *args, **kwargs)

    return Session()


def credentials() -> tuple[str, str]:
    """``CITYSCAPES_USERNAME`` / ``CITYSCAPES_PASSWORD``, else a prompt (password not echoed)."""
    username = os.environ.get("CITYSCAPES_USERNAME")
    password = os.environ.get("CITYSCAPES_PASSWORD")
    if username and password:
        return username, password
    if not sys.stdin.isatty():
        raise DownloadError(
            "Cityscapes needs an account: set CITYSCAPES_USERNAME and CITYSCAPES_PASSWORD "
            "(register at https://www.cityscapes-dataset.com/register/)"
        )
    username = username or input("Cityscapes username or email address: ")
    return username, password or getpass.getpass("Cityscapes password: ")


def _network(action):
    """Run ``action()``; a connection problem becomes one line naming the server."""
    try:
        return action()
    except requests.exceptions.HTTPError as error:
        raise DownloadError(f"{base_url()}: the server answered {error}; try again later") from None
    except requests.exceptions.RequestException as error:
        reason = type(error).__name__
        raise DownloadError(
            f"{base_url()}: cannot reach the server ({reason}); check the network connection "
            "(an interrupted download resumes when the command is run again)"
        ) from None


def login(username: str, password: str):
    """A logged-in session; DownloadError for bad credentials or no network."""
    session = _session()
    data = {"username": username, "password": password, "submit": "Login"}

    def post():
        session.get(f"{OFFICIAL_URL}/login", allow_redirects=False).raise_for_status()
        response = session.post(f"{OFFICIAL_URL}/login", data=data, allow_redirects=False)
        response.raise_for_status()
        return response

    if _network(post).status_code != 302:  # the site redirects after a good login
        raise DownloadError(
            f"{base_url()}: the login was refused for {username!r}; check CITYSCAPES_USERNAME "
            "and CITYSCAPES_PASSWORD"
        )
    return session


def package_names(names: Sequence[str]) -> list[str]:
    """Package names as the site lists them (``gtFine_trainvaltest`` -> ``...zip``)."""
    return [name if name.endswith(".zip") else f"{name}.zip" for name in names]


def download_cityscapes(
    out: str | Path,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    *,
    session=None,
    keep_zips: bool = False,
    check: bool = True,
) -> Downloaded:
    """Download ``packages`` into ``out/downloads`` (resuming partial files), verify each MD5,
    unzip them into ``out`` (the official layout) and check the result.

    A package whose MD5 does not match is renamed ``NAME.md5-mismatch`` and not unzipped.
    """
    out = Path(out)
    base_url()  # a bad CITYSEG_CITYSCAPES_URL is one line before anything is made
    downloads = out / "downloads"
    check_output_folder(downloads)  # writable, but made only once there is something to keep
    if session is None:
        session = login(*credentials())
    listed = _network(lambda: downloader.get_available_packages(session=session))
    available = {entry["name"]: entry for entry in listed}
    names = package_names(packages)
    unknown = [name for name in names if name not in available]
    if unknown:
        shown = ", ".join(sorted(available)[:12])
        raise DownloadError(
            f"no Cityscapes package named {', '.join(unknown)} (or this account may not get it); "
            f"available: {shown}, ..."
        )
    lines = []
    for name in names:
        path = downloads / name
        expected = _network(lambda name=name: _md5_of_package(session, available[name]))
        _make_folder(downloads)
        if path.is_file() and _md5(path) == expected:
            lines.append(f"{name}: already downloaded, MD5 verified")
        else:
            _fetch(downloader, session, name, downloads, resume=path.is_file())
            if _md5(path) != expected:
                aside = path.with_name(path.name + ".md5-mismatch")
                path.replace(aside)
                raise DownloadError(
                    f"{name}: the MD5 sum does not match the server's (the file is kept aside as "
                    f"{aside}, not used); run the command again to download it anew"
                )
            lines.append(
                f"{name}: downloaded ({path.stat().st_size / 2**20:.1f} MiB), MD5 verified"
            )
        _unzip(path, out)
        lines.append(f"{name}: unzipped into {out}")
        if not keep_zips:
            path.unlink()
    if not keep_zips:
        with contextlib.suppress(OSError):
            downloads.rmdir()  # only when empty: what else is there is not the download's
    if check:
        lines += _check(out)
    return Downloaded(out, lines)


def _md5_of_package(session, package: dict) -> str:
    url = f"{OFFICIAL_URL}/md5-sum/?packageID={package['packageID']}"
    response = session.get(url, allow_redirects=False)
    response.raise_for_status()
    return response.text.split()[0]


def _fetch(downloader, session, name: str, folder: Path, resume: bool) -> None:
    """cityscapesscripts' download of one package (its prints kept for our own lines); its
    own MD5 check is redone by the caller, which keeps a mismatching file aside."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            _network(
                lambda: downloader.download_packages(
                    session=session, package_names=[name], destination_path=str(folder),
                    resume=resume,
                )
            )  # fmt: skip
    except OSError as error:
        raise _disk_error(folder / name, error) from None
    except DownloadError:
        raise
    except Exception as error:  # noqa: BLE001 - cityscapesscripts raises plain Exceptions
        if "MD5" not in str(error):
            raise DownloadError(f"{name}: the download failed ({error})") from None


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unzip(archive: Path, out: Path) -> None:
    """Unpack ``archive`` into ``out`` once it is checked completely (see
    :func:`cityseg.data.archives.check_archive`) and no file of ``out`` it would replace differs
    from the archive's: unpacked in a hidden folder of ``out``, then each file renamed into place
    (an interrupted unpack leaves no half-written file)."""
    members = check_archive(archive, out)
    check_targets(archive, members, out)
    try:
        with tempfile.TemporaryDirectory(dir=out, prefix=".unpack-") as scratch:
            unpack_archive(archive, scratch)
            move_unpacked(Path(scratch), out)
    except OSError as error:
        raise _disk_error(out, error) from None


def _check(root: Path) -> list[str]:
    report = check_dataset(root, sample=5, progress=False)
    return format_report(report).splitlines()


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _disk_error(folder, error) from None


def _disk_error(path: Path, error: OSError) -> DownloadError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(
            f"{path}: the disk is full; free some space and run the command again (a partial "
            "download resumes)"
        )
    return DownloadError(f"{path}: cannot be written ({error.strerror or error})")


# --- Kaggle pairs -------------------------------------------------------------------------------


def kagglehub_download(handle: str = KAGGLE_PAIRS) -> Path:
    """The folder kagglehub downloads (and caches) the dataset ``handle`` into."""
    try:
        import kagglehub  # optional: only this download needs it
    except ImportError:
        raise DownloadError(
            "downloading from Kaggle needs the kagglehub package (pip install kagglehub); or "
            "download the archive from https://www.kaggle.com/datasets/"
            f"{handle} and give it with --from-zip FILE"
        ) from None
    try:
        return Path(kagglehub.dataset_download(handle))
    except Exception as error:  # noqa: BLE001 - network, credentials, Kaggle's own errors
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        raise DownloadError(
            f"kaggle {handle}: the download failed ({type(error).__name__}: {first}); check the "
            "network and Kaggle credentials (KAGGLE_USERNAME / KAGGLE_KEY or ~/.kaggle), or "
            "give the archive with --from-zip FILE"
        ) from None


def download_pairs(out: str | Path, from_zip: str | Path | None = None) -> Downloaded:
    """The Kaggle pairs set in ``out/train`` and ``out/val`` (checked: 2975 and 500 JPEGs of
    512x256), from kagglehub or from an archive the user has.

    Nothing in ``out`` is touched until the archive is checked and its splits are unpacked and
    checked in a hidden folder beside them; only then are they renamed into place. An existing
    ``out/train`` or ``out/val`` is replaced only when an earlier download wrote it (its marker,
    :data:`DOWNLOAD_MARKER`, says so); a failed download leaves ``out`` as it found it.

    Raises:
        DataError: an existing split folder the command did not write, an archive that fails its
            check, or data that is not the pairs set.
    """
    out = Path(out)
    check_pairs_folders(out)
    if from_zip is not None:
        check_archive(Path(from_zip), out)
    created = not out.exists()
    _make_folder(out)
    try:
        with tempfile.TemporaryDirectory(dir=out, prefix=".unpack-") as scratch:
            lines = _unpack_pairs(out, Path(scratch), from_zip)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: the folder this download made
        raise
    lines.append(
        f"checked: {PAIRS_SPLITS['train']} train and {PAIRS_SPLITS['val']} val JPEGs of "
        f"{PAIRS_SIZE[1]}x{PAIRS_SIZE[0]} in {out}"
    )
    return Downloaded(out, lines)


DOWNLOAD_MARKER = ".cityseg-download.json"
"""Written beside ``train/`` and ``val/`` by a complete pairs download: the folders it replaces."""


def check_pairs_folders(out: Path) -> None:
    """Refuse, before any work, split folders of ``out`` that a pairs download did not write
    (an empty folder is taken as it holds nothing)."""
    ours = _marker(out).get("dataset") == "pairs"
    for split in PAIRS_SPLITS:
        folder = out / split
        exists = folder.exists() or folder.is_symlink()
        empty = folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir())
        if exists and not empty and not (ours and folder.is_dir() and not folder.is_symlink()):
            raise DataError(
                f"{folder}: already exists and was not written by `cityseg data download pairs` "
                f"(no {DOWNLOAD_MARKER}); it is left as it is: move it away or choose another --out"
            )


def _marker(out: Path) -> dict:
    try:
        marker = json.loads((out / DOWNLOAD_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _unpack_pairs(out: Path, scratch: Path, from_zip: str | Path | None) -> list[str]:
    """Unpack and check the splits in ``scratch``, then rename them into ``out``."""
    if from_zip is not None:
        source = scratch / "archive"
        try:
            unpack_archive(Path(from_zip), source)
        except OSError as error:
            raise _disk_error(out, error) from None
        origin = str(from_zip)
    else:
        source = kagglehub_download()
        origin = f"kaggle {KAGGLE_PAIRS} ({source})"
    lines = [f"pairs from {origin}"]
    staged = {}
    for split in PAIRS_SPLITS:
        found = find_split(source, split)
        if found is None:
            raise DataError(
                f"{origin}: no {split}/ folder of JPEGs inside; is this the "
                "cityscapes-image-pairs archive?"
            )
        staged[split] = scratch / f"new-{split}"
        try:
            if from_zip is None:
                shutil.copytree(found, staged[split])  # kagglehub's cache is left as it is
            else:
                found.rename(staged[split])
        except OSError as error:
            raise _disk_error(out, error) from None
        lines.append(f"{split}: {found.relative_to(source)} -> {out / split}")
    problems = check_pairs(scratch, staged, shown=out)
    if problems:
        raise DataError(*problems)
    for split, folder in staged.items():
        target = out / split
        if target.is_dir():  # an earlier download's (checked): moved into the scratch, deleted
            os.replace(target, scratch / f"old-{split}")
        os.replace(folder, target)
    temporary = out / f".{DOWNLOAD_MARKER}.tmp"
    splits = {split: len(list((out / split).glob("*.jpg"))) for split in PAIRS_SPLITS}
    temporary.write_text(json.dumps({"dataset": "pairs", "source": origin, "splits": splits}))
    os.replace(temporary, out / DOWNLOAD_MARKER)
    return lines


def find_split(root: Path, split: str) -> Path | None:
    """The shallowest folder named ``split`` under ``root`` that holds JPEGs (the archive nests
    ``cityscapes_data/cityscapes_data/<split>``; either copy is the same data)."""
    candidates = [p for p in root.rglob(split) if p.is_dir() and any(p.glob("*.jpg"))]
    return min(candidates, key=lambda p: (len(p.parts), str(p))) if candidates else None


def check_pairs(
    root: Path, folders: dict[str, Path] | None = None, shown: Path | None = None
) -> list[str]:
    """One line per way ``root`` differs from the pairs set: counts and image sizes.

    Args:
        root: the dataset folder.
        folders: where each split is, when not ``root/<split>``.
        shown: the folder the messages name instead of ``root`` (where the splits will go).
    """
    folders = folders or {split: root / split for split in PAIRS_SPLITS}
    shown = shown or root
    problems = []
    for split, expected in PAIRS_SPLITS.items():
        files = sorted(folders[split].glob("*.jpg"))
        if len(files) != expected:
            problems.append(
                f"{shown / split}: {len(files)} JPEGs where the pairs set has {expected}; the "
                "archive is incomplete or another dataset"
            )
        sizes = {}
        for path in files:
            try:
                header = read_header(path)
            except DataError as error:
                problems.extend(error.problems)
                continue
            sizes.setdefault((header.height, header.width), path)
        for (height, width), path in sizes.items():
            if (height, width) != PAIRS_SIZE:
                problems.append(
                    f"{shown / split / path.name}: {width}x{height} pixels where pairs images are "
                    f"{PAIRS_SIZE[1]}x{PAIRS_SIZE[0]} (photo | labels)"
                )
    return problems
