"""The photo sets that measure `export --quantize int8` on the shipped model (docs/deploy.md).

From the Kaggle pairs ``train/`` folder, into ``--out`` (outside the repository: the data may not
be redistributed), split as the shipped model's recipe splits it (``--config``, by default
``configs/pretrained_pairs.yaml``: its held-out cities):

* ``calibration/``: the photo halves (PNG) of 32 images the shipped model was trained on, spread
  evenly over them;
* ``heldout/val/``: links to 100 of the images held out of its training (spread evenly over
  them), with their labels, for ``--data``.

Usage: ``python scripts/int8_sets.py data/pairs --out /tmp/int8_sets``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2

from cityseg.config import load_config
from cityseg.data.loader import SubsetDataset, open_splits

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "pretrained_pairs.yaml"


def recipe_split(pairs: Path, config_path: Path) -> tuple[list[Path], list[Path]]:
    """(trained on, held out): the image paths of ``pairs`` that the recipe at ``config_path``
    trains on and holds out (``cityseg.data.loader.open_splits``, the trainer's own rule)."""
    overrides = [f"data.root={pairs}", "data.cache=null", "data.max_images=null"]
    config = load_config(config_path, [*overrides, "data.max_val_images=null"])
    splits = open_splits(config.data, config.train.seed)
    return image_paths(splits.train), image_paths(splits.val)


def image_paths(images) -> list[Path]:
    """The image files of a dataset, or of a subset of one, in order."""
    if images is None:
        return []
    dataset, indices = images, range(len(images))
    if isinstance(images, SubsetDataset):
        dataset, indices = images.dataset, images.indices
    return [Path(dataset.samples[i].image_path) for i in indices]


def spread(items: list, count: int) -> list:
    """``count`` of ``items``, evenly spaced (all of them if there are fewer)."""
    step = max(1, len(items) // count)
    return items[::step][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path, help="the pairs dataset (holding train/)")
    parser.add_argument("--out", type=Path, required=True, help="folder to create")
    parser.add_argument("--config", type=Path, default=RECIPE, help="the model's recipe")
    args = parser.parse_args()
    trained, held = recipe_split(args.pairs, args.config)
    calibration, heldout = args.out / "calibration", args.out / "heldout" / "val"
    calibration.mkdir(parents=True)
    heldout.mkdir(parents=True)
    for path in spread(trained, 32):
        image = cv2.imread(str(path))
        cv2.imwrite(str(calibration / f"{path.stem}.png"), image[:, : image.shape[1] // 2])
    for path in spread(held, 100):
        os.symlink(path.resolve(), heldout / path.name)
    print(f"wrote {calibration} and {heldout}")


if __name__ == "__main__":
    main()
