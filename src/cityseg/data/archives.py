"""Zip archives checked completely before anything is unpacked: the listing, each member's
compression method and encryption, names that stay inside the folder, and how far the archive
expands (a bound on the ratio and the free disk). No torch import here.

Example:
    >>> from cityseg.data.archives import check_archive
    >>> check_archive("cityscapes-image-pairs.zip", "data/pairs")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from cityseg.errors import DataError
from cityseg.outputs import existing_ancestor

MAX_EXPANSION = 100
"""An archive may expand to at most this many times its size (photos and PNG labels are already
compressed: the pairs set expands about 1x, a text-heavy package about 10x; a zip bomb 1000x)."""
METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
"""The compression methods Python's zipfile unpacks."""
ENCRYPTED = 0x1
"""Bit 0 of a member's general purpose flags: the member is encrypted."""


def check_archive(archive: str | Path, out: str | Path) -> list[zipfile.ZipInfo]:
    """The members of ``archive``, once every one of them is known to unpack into ``out``.

    Raises:
        DataError: not a readable zip, an encrypted member, a compression method Python cannot
            unpack, a name outside the folder, an expansion above :data:`MAX_EXPANSION` times the
            archive's size, or more bytes than ``out``'s disk has free (one line naming the file).
    """
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as opened:
            members = opened.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise DataError(f"{archive}: not a readable zip archive; download it again") from None
    for member in members:
        if member.flag_bits & ENCRYPTED:
            raise DataError(
                f"{archive}: {member.filename} is encrypted; give an archive without a password "
                "(unpack it yourself and zip it again)"
            )
        if member.compress_type not in METHODS:
            raise DataError(
                f"{archive}: {member.filename} uses compression method {member.compress_type}, "
                f"which cannot be unpacked here (only {', '.join(METHODS.values())}); unpack it "
                "yourself and zip it again"
            )
        name = PurePosixPath(member.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts:
            raise DataError(f"{archive}: holds {member.filename}, outside the folder; not unpacked")
    expanded = sum(member.file_size for member in members)
    size = archive.stat().st_size
    if expanded > MAX_EXPANSION * max(size, 1):
        raise DataError(
            f"{archive}: expands to {expanded / 2**20:.1f} MiB from {size / 2**20:.1f} MiB, more "
            f"than {MAX_EXPANSION} times its size; not unpacked (a damaged or malicious archive)"
        )
    free = shutil.disk_usage(existing_ancestor(Path(out))).free
    if expanded > free:
        raise DataError(
            f"{archive}: expands to {expanded / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB are "
            f"free under {out}; free some space or choose another --out"
        )
    return members


def unpack_archive(archive: str | Path, folder: str | Path) -> None:
    """Unpack a checked archive (see :func:`check_archive`) into ``folder``.

    Raises:
        DataError: a member whose data is damaged (its CRC or length does not match).
        OSError: the disk cannot take it (the caller names the folder).
    """
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(folder)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, ValueError) as error:
        raise DataError(
            f"{archive}: damaged ({str(error)[:120] or type(error).__name__}); nothing was kept; "
            "download it again"
        ) from None


def check_targets(archive: str | Path, members: list[zipfile.ZipInfo], out: str | Path) -> None:
    """Refuse to unpack over a file that is not the archive's own: a file already at a member's
    place must hold the member's bytes (same size and CRC-32; it is then kept as it is).

    Raises:
        DataError: one line naming the first file that differs.
    """
    for member in members:
        if member.is_dir():
            continue
        target = Path(out) / member.filename
        if not (target.exists() or target.is_symlink()):
            continue
        if target.is_symlink() or not target.is_file() or not _holds(target, member):
            raise DataError(
                f"{target}: exists and differs from {member.filename} in {archive}; it is left "
                "as it is: move it away or choose another --out"
            )


def _holds(path: Path, member: zipfile.ZipInfo) -> bool:
    if path.stat().st_size != member.file_size:
        return False
    checksum = 0
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            checksum = zlib.crc32(chunk, checksum)
    return checksum == member.CRC


def move_unpacked(unpacked: Path, out: Path) -> None:
    """Rename every file unpacked into ``unpacked`` to its place in ``out`` (a file already there
    was checked by :func:`check_targets` to be the same, and is kept)."""
    for path in sorted(Path(unpacked).rglob("*")):
        if path.is_dir() or path.is_symlink():
            continue
        target = Path(out) / path.relative_to(unpacked)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
