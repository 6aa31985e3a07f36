"""The photo sets that measure `export --quantize int8` on the shipped model (docs/deploy.md).

From the Kaggle pairs ``train/`` folder, into ``--out`` (outside the repository: the data may not
be redistributed):

* ``calibration/``: the photo halves (PNG) of 32 images the shipped model was trained on (every
  84th of them);
* ``heldout/val/``: links to 100 of the 298 pairs images held out of its training (every third of
  the seeded 10% of ``data.val_fraction=0.1``, ``train.seed=0``), with their labels, for
  ``--data``.

Usage: ``python scripts/int8_sets.py data/pairs --out /tmp/int8_sets``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from cityseg.data.datasets import open_dataset


def held_out_indices(total: int, fraction: float = 0.1, seed: int = 0) -> list[int]:
    """The images training holds out for validation (as ``cityseg.data.loader`` picks them)."""
    count = max(1, round(total * fraction))
    return sorted(np.random.default_rng(seed).permutation(total)[:count].tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path, help="the pairs dataset (holding train/)")
    parser.add_argument("--out", type=Path, required=True, help="folder to create")
    args = parser.parse_args()
    paths = [sample.image_path for sample in open_dataset(args.pairs, "train", "pairs").samples]
    held = held_out_indices(len(paths))
    trained = sorted(set(range(len(paths))) - set(held))
    calibration, heldout = args.out / "calibration", args.out / "heldout" / "val"
    calibration.mkdir(parents=True)
    heldout.mkdir(parents=True)
    for index in trained[::84][:32]:
        image = cv2.imread(str(paths[index]))
        cv2.imwrite(str(calibration / f"{paths[index].stem}.png"), image[:, : image.shape[1] // 2])
    for index in held[::3][:100]:
        os.symlink(Path(paths[index]).resolve(), heldout / Path(paths[index]).name)
    print(f"wrote {calibration} and {heldout}")


if __name__ == "__main__":
    main()
