#!/usr/bin/env bash
# Makes docs/video.png for the README from generated street scenes only (no Cityscapes pixels):
# a 12-frame clip of generated scenes is segmented by `cityseg predict` (a checkpoint, or the
# shipped pairs model) and four frames of the overlay video are laid side by side.
#   scripts/video_picture.sh [CHECKPOINT]      # e.g. demo_out/run/checkpoint_best.pt
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cityseg data generate "$work/scenes" --train 12 --val 0 --test 0 --size 256x512 --seed 3 >/dev/null
python - "$work" <<'PY'
import sys
from pathlib import Path

import cv2

work = Path(sys.argv[1])
frames = sorted((work / "scenes" / "leftImg8bit" / "train").glob("*/*.png"))
writer = cv2.VideoWriter(str(work / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 4, (512, 256))
for path in frames:
    writer.write(cv2.imread(str(path)))
writer.release()
PY
if [ $# -ge 1 ]; then model=("$1"); else model=(--pretrained pairs); fi
cityseg predict "${model[@]}" "$work/clip.mp4" --out "$work/out" --no-progress
mkdir -p "$here/docs"
python - "$work/out/clip_overlay.mp4" "$here/docs/video.png" <<'PY'
import sys

import cv2
import numpy as np

capture = cv2.VideoCapture(sys.argv[1])
frames = []
while True:
    ok, frame = capture.read()
    if not ok:
        break
    frames.append(frame)
chosen = [frames[i] for i in np.linspace(0, len(frames) - 1, 4).round().astype(int)]
for index, frame in zip(np.linspace(0, len(frames) - 1, 4).round().astype(int), chosen):
    cv2.putText(frame, f"frame {index}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
grid = np.concatenate([np.concatenate(chosen[:2], axis=1), np.concatenate(chosen[2:], axis=1)])
cv2.imwrite(sys.argv[2], grid)
PY
echo "wrote $here/docs/video.png"
