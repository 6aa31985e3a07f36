#!/usr/bin/env bash
# Makes the README's pictures from a `cityseg demo` output folder (generated street scenes only:
# no Cityscapes pixels): docs/overlay.png (photo | colour mask | overlay of one validation image)
# and docs/report.png (a headless-Chromium screenshot of the demo's report.html).
#   cityseg demo --out demo_out && scripts/readme_pictures.sh demo_out
set -euo pipefail
demo=$(realpath "${1:-demo_out}")
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$here/docs"
python - "$demo" "$here/docs/overlay.png" <<'PY'
import sys
from pathlib import Path

import cv2
import numpy as np

demo, out = Path(sys.argv[1]), sys.argv[2]
overlay = sorted((demo / "predictions").glob("*_overlay.png"))[0]
stem = overlay.name[: -len("_overlay.png")]
photo = next((demo / "data" / "leftImg8bit" / "val").glob(f"*/{stem}.png"))
row = [cv2.imread(str(p)) for p in (photo, demo / "predictions" / f"{stem}_color.png", overlay)]
row = [cv2.resize(image, (512, 256), interpolation=cv2.INTER_NEAREST) for image in row]
cv2.imwrite(out, np.concatenate(row, axis=1))
PY
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --user-data-dir="$profile" --window-size=1280,1800 --virtual-time-budget=5000 \
  --screenshot="$here/docs/report.png" "file://$demo/evaluation/report.html" 2>/dev/null
rm -rf "$profile"
echo "wrote $here/docs/overlay.png and $here/docs/report.png"
