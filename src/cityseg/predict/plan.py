"""Where ``cityseg predict`` writes, decided before any work: every input's output files, checked
so that none of them is an input and no two inputs write the same file. One rule for photos and
videos. No torch import here.

Example:
    >>> from pathlib import Path
    >>> from cityseg.predict.plan import check_outputs
    >>> check_outputs(Path("out"), [Path("a/x.png"), Path("b/x.png")])  # doctest: +SKIP
    UserError: b/x.png: same name as a/x.png, both would write out/x_labelIds.png; ...
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from cityseg.errors import UserError
from cityseg.outputs import resolved
from cityseg.predict.files import OUTPUTS, photo_outputs
from cityseg.predict.video import video_outputs


def check_outputs(
    out_dir: Path,
    photos: Sequence[Path],
    outputs: Sequence[str] = OUTPUTS,
    videos: Sequence[Path] = (),
    video_kinds: Sequence[str] = ("overlay",),
    models: Iterable[Path | None] = (),
) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other.

    Args:
        out_dir: the output folder.
        photos: the photos to segment.
        outputs: what is written per photo (see :data:`cityseg.predict.files.OUTPUTS`).
        videos: the video files and frame folders to segment.
        video_kinds: what is written per video (see :data:`cityseg.predict.video.VIDEO_OUTPUTS`).
        models: the checkpoint or ONNX model (None entries are skipped): inputs too.

    Raises:
        UserError: one line per output that is an input, lies where an input is, or is written
            by two inputs.
    """
    planned = {Path(photo): photo_outputs(out_dir, Path(photo).stem, outputs) for photo in photos}
    frame_kinds = [kind for kind in video_kinds if kind in ("labelIds", "trainIds")][:1]
    folders: set[Path] = set()
    for video in videos:
        planned[Path(video)] = video_outputs(video, out_dir, video_kinds)
        folders.update(video_outputs(video, out_dir, frame_kinds))
    inputs = _Inputs([*planned, *(Path(model) for model in models if model is not None)])
    owners: dict[Path, Path] = {}
    problems = []
    for source, paths in planned.items():
        for path in paths:
            other = owners.setdefault(path, source)
            if other != source:
                problems.append(
                    f"{source}: same name as {other}, both would write {path}; predict them in "
                    "separate runs with different --out folders"
                )
            taken = inputs.inside(path) if path in folders else inputs.find(path)
            if taken is not None:
                problems.append(
                    f"{taken}: is an input, and {source} would write {path} over it; inputs are "
                    "never overwritten: choose another --out"
                )
    if problems:
        raise UserError(*dict.fromkeys(problems))


class _Inputs:
    """The inputs of a run, looked up by resolved name and, for existing files, by inode (a hard
    link is the same file under another name)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.by_name = {resolved(path): path for path in paths}
        self.by_inode = {}
        for path in paths:
            key = _inode(path)
            if key is not None:
                self.by_inode[key] = path

    def find(self, path: Path) -> Path | None:
        """The input that ``path`` names, or None."""
        found = self.by_name.get(resolved(path))
        key = _inode(path) if found is None else None
        return self.by_inode.get(key) if key is not None else found

    def inside(self, folder: Path) -> Path | None:
        """An input inside ``folder`` (a video's frame folder, all of it the command's), or None."""
        folder = resolved(folder)
        return next((p for name, p in self.by_name.items() if name.is_relative_to(folder)), None)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino
