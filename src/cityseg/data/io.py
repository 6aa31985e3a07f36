"""Image files in and out: decoding through OpenCV, cheap header reads, and truncation checks.

Every failure is a :class:`~cityseg.errors.DataError` that names the file and says what to do:
``cv2.imread`` returns ``None`` without saying why, and a truncated PNG or JPEG can decode into a
partly grey picture, so the bytes are checked for their end marker (PNG ``IEND`` chunk, JPEG
``FFD9``) before decoding. :func:`read_header` gives the size of a PNG or JPEG from its first bytes,
for pairing checks over thousands of files without decoding any pixels.

EXIF orientation: OpenCV turns a PNG or JPEG upright by its EXIF orientation tag in
``IMREAD_COLOR``, but not in ``IMREAD_UNCHANGED`` (how label maps are read), so a photo tagged
"rotate 180" would no longer line up with its labels, and a pairs JPEG would swap its halves.
Dataset files are therefore decoded as stored, tag ignored, photos and labels alike (the sizes in
their headers are the stored ones too); only a photo that has no labels, such as one `predict`
reads, is turned upright (``read_rgb(path, upright=True)``).
"""

from __future__ import annotations

import errno
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cityseg import limits
from cityseg.errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"
_PNG_PALETTE_TYPE = 3
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> channels as OpenCV decodes them
_JPEG_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_HEAD_BYTES = 64 * 1024  # where a JPEG frame header is looked for first
_TAIL_BYTES = 1024  # where the end marker is looked for (some writers pad after it)
_REPLACE = "re-download or re-extract it, or remove it from the dataset"


@dataclass(frozen=True)
class ImageHeader:
    """What the first bytes of a PNG or JPEG say about it.

    Attributes:
        format: ``"png"`` or ``"jpeg"``.
        width, height: size in pixels.
        channels: channels OpenCV decodes with ``IMREAD_UNCHANGED`` (palette PNGs count as 3).
        bit_depth: bits per sample (8 or 16).
        palette: whether the PNG is palette-indexed.
    """

    format: str
    width: int
    height: int
    channels: int
    bit_depth: int
    palette: bool = False


def read_header(path: Path) -> ImageHeader:
    """Read size, channels and bit depth of a PNG or JPEG without decoding its pixels.

    Raises:
        DataError: the file is missing, unreadable, or neither a PNG nor a JPEG.
    """
    head = _read_head(path, _HEAD_BYTES)
    if head.startswith(PNG_SIGNATURE):
        return _png_header(path, head)
    if head.startswith(JPEG_START):
        header = _jpeg_header(head)
        if header is None and len(head) == _HEAD_BYTES:
            header = _jpeg_header(_read_head(path, None))
        if header is not None:
            return header
        raise DataError(f"{path}: JPEG without a frame header (truncated or corrupt); {_REPLACE}")
    raise DataError(f"{path}: neither a PNG nor a JPEG file; {_REPLACE}")


def check_complete(path: Path) -> None:
    """Raise DataError if a PNG or JPEG lacks its end marker, the sign of a truncated file."""
    head = _read_head(path, 8)
    try:
        with open(path, "rb") as file:
            file.seek(max(0, path.stat().st_size - _TAIL_BYTES))
            tail = file.read()
    except OSError as error:
        raise DataError(_unreadable(path, error)) from None
    _check_end_marker(path, head, tail)


def read_rgb(path: Path, upright: bool = False) -> np.ndarray:
    """Decode a colour photo as RGB uint8 (H, W, 3); grey or 16-bit files are converted.

    Args:
        path: a PNG or JPEG file.
        upright: apply the file's EXIF orientation tag (a phone photo as its viewer shows it),
            for photos without labels. False, for dataset files: the pixels as stored, the tag
            ignored, as it is for their label maps, so that photo and labels line up.

    Raises:
        DataError: missing, unreadable, truncated or undecodable file.
    """
    orientation = 0 if upright else cv2.IMREAD_IGNORE_ORIENTATION
    image = _decode(path, cv2.IMREAD_COLOR | orientation)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_unchanged(path: Path) -> np.ndarray:
    """Decode a PNG or JPEG as stored (any channels, 8 or 16 bits, EXIF orientation ignored),
    after the same checks as every reader here: a regular file, size and pixel limits, end marker.

    Raises:
        DataError: missing, unreadable, too large, truncated or undecodable file.
    """
    return _decode(path, cv2.IMREAD_UNCHANGED)


def read_label_png(path: Path) -> np.ndarray:
    """Decode a single-channel 8-bit label PNG (labelIds or labelTrainIds) as uint8 (H, W).

    A palette PNG (how some tools save label maps, to show them in colour) gives its indices.

    Raises:
        DataError: unreadable file, or a colour / 16-bit image that cannot be a label map.
    """
    data = _read_complete(path)
    if data.startswith(PNG_SIGNATURE) and len(data) > 25 and data[25] == _PNG_PALETTE_TYPE:
        return _palette_indices(path, data)
    label = _imdecode(path, data, cv2.IMREAD_UNCHANGED)
    if label.ndim == 3:
        raise DataError(
            f"{path}: a colour image ({label.shape[2]} channels) where a single-channel label map "
            "was expected; use the *_gtFine_labelIds.png files, not *_gtFine_color.png"
        )
    if label.dtype != np.uint8:
        raise DataError(
            f"{path}: a {label.dtype.itemsize * 8}-bit image where an 8-bit label map was "
            "expected; instanceIds files are not labels: use *_gtFine_labelIds.png"
        )
    return label


def write_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as PNG: (H, W) as grey, (H, W, 3) as RGB. Creates parent folders."""
    array = np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"cannot encode an array of shape {array.shape} and {array.dtype} as PNG")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded.tobytes())


def _decode(path: Path, flags: int) -> np.ndarray:
    return _imdecode(path, _read_complete(path), flags)


def _read_complete(path: Path) -> bytes:
    """The whole file (a regular file within the size limit, see ``_read_head``), checked for
    its end marker and for an image header within the pixel limit before anything decodes it."""
    data = _read_head(path, None)
    _check_end_marker(path, data[:8], data[-_TAIL_BYTES:])
    header = _header_of(path, data)
    if header is not None:  # (without a header nothing can be decoded: imdecode says so)
        problem = limits.pixels_problem(header.width, header.height)
        if problem is not None:
            raise DataError(f"{path}: {problem}")
    return data


def _header_of(path: Path, data: bytes) -> ImageHeader | None:
    """The size the header announces, or None for a file without a readable header."""
    if data.startswith(PNG_SIGNATURE):
        try:
            return _png_header(path, data[:_HEAD_BYTES])
        except DataError:
            return None
    return _jpeg_header(data)


def _imdecode(path: Path, data: bytes, flags: int) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None or image.size == 0:
        raise DataError(f"{path}: cannot be decoded as an image (corrupt file); {_REPLACE}")
    return image


def _palette_indices(path: Path, data: bytes) -> np.ndarray:
    """The indices of a palette PNG (OpenCV would expand them to colours)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            indices = np.asarray(image)
    except (OSError, ValueError, SyntaxError):  # what Pillow raises for damaged files
        indices = None
    if indices is None or indices.ndim != 2:
        raise DataError(f"{path}: cannot be decoded as an image (corrupt file); {_REPLACE}")
    if indices.size == 0:
        raise DataError(f"{path}: an image of 0 pixels; {_REPLACE}")
    return np.ascontiguousarray(indices, dtype=np.uint8)


def _read_head(path: Path, size: int | None) -> bytes:
    """The first ``size`` bytes (all when None) of a regular file within the size limit."""
    problem = limits.regular_file_problem(path, limits.MAX_IMAGE_BYTES)
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    try:
        with open(path, "rb") as file:
            data = file.read() if size is None else file.read(size)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the dataset root and split") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder where an image file was expected") from None
    except OSError as error:
        raise DataError(_unreadable(path, error)) from None
    if not data:
        raise DataError(f"{path}: empty file (0 bytes); {_REPLACE}")
    return data


def _unreadable(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return f"{path}: a symbolic link that loops ({error.strerror}); fix or remove it"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{path}: cannot be read ({error.strerror}); check its permissions"
    return f"{path}: cannot be read ({error.strerror or error}); check the file and its disk"


def _check_end_marker(path: Path, head: bytes, tail: bytes) -> None:
    if head.startswith(PNG_SIGNATURE):
        complete = tail.endswith(PNG_END)
    elif head.startswith(JPEG_START):
        complete = JPEG_END in tail  # FFD9 cannot occur inside entropy-coded data
    else:
        raise DataError(f"{path}: neither a PNG nor a JPEG file; {_REPLACE}")
    if not complete:
        raise DataError(f"{path}: truncated file (no end marker); {_REPLACE}")


def _png_header(path: Path, head: bytes) -> ImageHeader:
    if len(head) < 29 or head[12:16] != b"IHDR":
        raise DataError(f"{path}: PNG without an IHDR header (truncated or corrupt); {_REPLACE}")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", head[16:26])
    if colour_type not in _PNG_CHANNELS:
        raise DataError(f"{path}: PNG with invalid colour type {colour_type}; {_REPLACE}")
    palette = colour_type == 3
    return ImageHeader("png", width, height, _PNG_CHANNELS[colour_type], bit_depth, palette)


def _jpeg_header(data: bytes) -> ImageHeader | None:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in _JPEG_SOF_MARKERS and position + 10 <= len(data):
            bit_depth, height, width, channels = struct.unpack(
                ">BHHB", data[position + 4 : position + 10]
            )
            return ImageHeader("jpeg", width, height, channels, bit_depth)
        position += 2 + length
    return None
