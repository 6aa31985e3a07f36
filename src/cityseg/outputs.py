"""Can a command write where it was told to? The one check of every command and run folder, made
before any work, so that a read-only or misnamed output fails in a second instead of after the
work. No torch import here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cityseg.errors import ConfigError


def existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def resolved(path: Path) -> Path:
    """``path`` with its links and ``..`` resolved; a link that loops as it is written (made
    absolute), so that reading it names it."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symbolic link that loops
        return Path(path).absolute()


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (through links, ``..`` or hard links)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet): compare the names
        return resolved(first) == resolved(second)


def check_output_folder(folder: Path, option: str = "--out") -> None:
    """Raise ConfigError unless ``folder`` is a writable folder or can be created as one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: is a file, not a folder; choose another {option}")
    _check_can_create_in(folder, existing_ancestor(folder), option)


def check_output_file(file: Path, option: str = "--out") -> None:
    """Raise ConfigError unless ``file`` can be written (replaced if it exists)."""
    file = Path(file)
    if file.is_dir():
        raise ConfigError(f"{file}: is a folder; give a file name to {option}")
    _check_can_create_in(file, existing_ancestor(file.parent), option)


def _check_can_create_in(target: Path, ancestor: Path, option: str) -> None:
    if not ancestor.is_dir():
        raise ConfigError(
            f"{target}: cannot be created because {ancestor} is a file, not a folder; "
            f"choose another {option}"
        )
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise ConfigError(
            f"{target}: cannot write into {ancestor} ({error.strerror}); choose another {option}"
        ) from None


def prepare_output_folder(folder: Path, option: str = "--out") -> None:
    """Check ``folder`` as :func:`check_output_folder` does, then create it (and its parents);
    ConfigError saying why when either fails."""
    folder = Path(folder)
    check_output_folder(folder, option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"{folder}: cannot be used as the output folder ({error.strerror or error}); "
            f"choose another {option}"
        ) from None


def check_replaceable(
    folder: Path, names: tuple[str, ...], owned: bool, command: str, option: str = "--out"
) -> None:
    """Raise ConfigError if ``folder`` holds any of the files a command writes (``names``) and
    they are not that command's own (``owned``: the caller recognised its marker file): a command
    replaces only what it made."""
    present = [name for name in names if (Path(folder) / name).exists()]
    if present and not owned:
        raise ConfigError(
            f"{Path(folder) / present[0]}: not written by {command}, which would replace it; "
            f"move it away or choose another {option}"
        )


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it: a reader sees the old file
    or the new one, never half of one."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
