"""A self-contained HTML evaluation report: one file, images inlined, no external resources.

Example::

    from cityseg.visualize.plots import evaluation_charts
    from cityseg.visualize.report import write_report
    charts = evaluation_charts(metrics, "runs/eval")
    best = [("frankfurt_000000_000294", 0.71, Path("runs/eval/images/best_1.png"))]
    write_report("runs/eval", metrics, charts, best, worst=[], info={"checkpoint": "best.pt"})
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from cityseg.labels import CLASS_NAMES, PALETTE

__all__ = ["write_report"]

ImageRef = tuple[str, float | None, Path | str]
"""``(frame_id, miou, grid_png)`` of one best or worst image."""

_HEADLINE = (
    ("mean_iou", "mIoU", "mean of the per-class IoU over the classes present"),
    ("pixel_accuracy", "Pixel accuracy", "correct pixels / labelled pixels"),
    ("mean_accuracy", "Mean accuracy", "mean of the per-class recall"),
    ("frequency_weighted_iou", "FW IoU", "IoU weighted by each class's pixel share"),
    ("mean_f1", "Mean F1", "mean of the per-class F1 (Dice)"),
)
_OFFICIAL = (
    ("classes_iou", "IoU classes"),
    ("classes_iiou", "iIoU classes"),
    ("categories_iou", "IoU categories"),
    ("categories_iiou", "iIoU categories"),
)
_COLUMNS = ("iou", "precision", "recall", "specificity", "f1")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

_CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --accent: #2f6fb0; --soft: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 24px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 40px 0 12px; padding-bottom: 6px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 22px 0 8px; }
.muted, .note { color: var(--muted); }
.note { font-size: 13px; margin: 8px 0 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; }
.card { background: var(--soft); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 14px; }
.card .value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .label { font-weight: 600; }
.card .hint { font-size: 12px; color: var(--muted); }
.card.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
.card.primary .hint { color: #dbe7f5; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right;
  white-space: nowrap; }
th { background: var(--soft); font-weight: 600; position: sticky; top: 0; }
th:first-child, td:first-child, td.name { text-align: left; }
tbody tr:hover { background: #fafbfc; }
tr.absent td { color: var(--muted); }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 8px;
  vertical-align: -1px; border: 1px solid rgba(0,0,0,.25); }
.bar { display: inline-block; width: 90px; height: 8px; background: var(--line); border-radius: 4px;
  margin-right: 8px; vertical-align: 1px; overflow: hidden; }
.bar span { display: block; height: 100%; background: var(--accent); }
.num { display: inline-block; min-width: 3em; }
.info td { text-align: left; white-space: normal; word-break: break-all; }
.info td:first-child { width: 180px; font-weight: 600; word-break: normal; }
pre { margin: 6px 0 0; background: var(--soft); padding: 10px; border-radius: 6px; font-size: 12px;
  white-space: pre-wrap; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 24px;
  align-items: start; }
figure { margin: 0 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
footer { margin-top: 48px; font-size: 12px; color: var(--muted); }
"""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _percent(value: object, digits: int = 1) -> str:
    number = _number(value)
    return "—" if number is None else f"{100 * number:.{digits}f}"


def _data_uri(path: Path | str) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image for the report not found")
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _figure(path: Path | str, caption: str, show_caption: bool = True) -> str:
    shown = f"<figcaption>{escape(caption)}</figcaption>" if show_caption else ""
    return f'<figure><img src="{_data_uri(path)}" alt="{escape(caption)}">{shown}</figure>'


def _card(label: str, value: object, hint: str = "", primary: bool = False) -> str:
    css = "card primary" if primary else "card"
    shown = _percent(value, 2)
    shown += "%" if shown != "—" else ""
    return (
        f'<div class="{css}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{shown}</div><div class="hint">{escape(hint)}</div></div>'
    )


def _headline(metrics: Mapping) -> str:
    cards = [
        _card(label, metrics.get(key), hint, primary=key == "mean_iou")
        for key, label, hint in _HEADLINE
    ]
    html = f'<h2>Headline</h2><div class="cards">{"".join(cards)}</div>'
    official = metrics.get("cityscapes") or {}
    scores = [(label, official.get(key)) for key, label in _OFFICIAL]
    shown = [
        _card(label, value, "official cityscapesScripts")
        for label, value in scores
        if _number(value) is not None
    ]
    if shown:
        html += f'<h3>Official Cityscapes evaluation</h3><div class="cards">{"".join(shown)}</div>'
    if official.get("note"):
        html += f'<p class="note">{escape(str(official["note"]))}</p>'
    return html


def _class_color(name: str) -> str:
    if name in CLASS_NAMES:
        red, green, blue = (int(c) for c in PALETTE[CLASS_NAMES.index(name)])
        return f"rgb({red},{green},{blue})"
    return "#999"


def _class_row(name: str, values: Mapping) -> str:
    iou = _number(values.get("iou"))
    absent = iou is None
    bar_width = 0 if absent else round(100 * iou)
    cells = [
        f'<td class="name"><span class="swatch" style="background:{_class_color(name)}"></span>'
        f"{escape(name)}</td>",
        f'<td><span class="bar"><span style="width:{bar_width}%"></span></span>'
        f'<span class="num">{_percent(iou)}</span></td>',
    ]
    cells += [f"<td>{_percent(values.get(column))}</td>" for column in _COLUMNS[1:]]
    pixels = _number(values.get("pixels"))
    cells.append(f"<td>{'—' if pixels is None else f'{int(pixels):,}'}</td>")
    css = ' class="absent"' if absent else ""
    return f"<tr{css}>{''.join(cells)}</tr>"


def _class_table(metrics: Mapping) -> str:
    classes: Mapping = metrics.get("classes") or {name: {} for name in CLASS_NAMES}
    rows = "".join(_class_row(name, values or {}) for name, values in classes.items())
    header = "".join(
        f"<th>{label}</th>"
        for label in (
            "Class",
            "IoU %",
            "Precision %",
            "Recall %",
            "Specificity %",
            "F1 %",
            "Pixels",
        )
    )
    html = (
        f'<h2>Per-class results</h2><table id="per-class"><thead><tr>{header}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    absent = list(metrics.get("absent_classes") or [])
    absent += [n for n, v in classes.items() if _number((v or {}).get("iou")) is None]
    absent = list(dict.fromkeys(absent))
    if absent:
        html += (
            '<p class="note">— : absent from the ground truth of the evaluated images, so the '
            "class's IoU is undefined and it is left out of every mean. Absent: "
            f"{escape(', '.join(absent))}.</p>"
        )
    html += '<p class="note">Pixels: ground-truth pixels of the class (ignore excluded).</p>'
    return html


def _official_table(heading: str, scores: Mapping) -> str:
    rows = "".join(
        f'<tr><td class="name">{escape(str(name))}</td>'
        f"<td>{_percent((values or {}).get('iou'))}</td>"
        f"<td>{_percent((values or {}).get('iiou'))}</td></tr>"
        for name, values in scores.items()
    )
    return (
        f"<div><h3>{escape(heading)}</h3><table><thead><tr><th>Name</th><th>IoU %</th>"
        f"<th>iIoU %</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _official_details(metrics: Mapping) -> str:
    """The official per-class and per-category IoU / iIoU of ``cityscapesScripts``, when given."""
    official = metrics.get("cityscapes") or {}
    tables = [
        _official_table(heading, official[key])
        for key, heading in (("per_class", "Classes"), ("per_category", "Categories"))
        if isinstance(official.get(key), Mapping) and official[key]
    ]
    if not tables:
        return ""
    return (
        "<h2>Official Cityscapes scores</h2>"
        f'<div class="columns">{"".join(tables)}</div>'
        '<p class="note">iIoU: instance-level IoU, which weights each pixel by the size of its '
        "object so that small objects count as much as large ones.</p>"
    )


def _info(info: Mapping[str, object] | None) -> str:
    if not info:
        return ""
    rows = []
    for key, value in info.items():
        if isinstance(value, (Mapping, list, tuple)):
            text = escape(json.dumps(value, indent=2, default=str))
            shown = f"<details><summary>show</summary><pre>{text}</pre></details>"
        else:
            shown = escape(str(value))
        rows.append(f"<tr><td>{escape(str(key))}</td><td>{shown}</td></tr>")
    return f'<table class="info"><tbody>{"".join(rows)}</tbody></table>'


def _gallery(heading: str, entries: Sequence[ImageRef] | None, kind: str = "best") -> str:
    if not entries:
        return ""
    parts = [f'<section class="{kind}"><h2>{escape(heading)}</h2>']
    for frame_id, miou, grid_png in entries:
        caption = f"{frame_id} — mIoU {_percent(miou)}%"
        parts.append(
            f'<div class="image" data-frame="{escape(frame_id)}" data-miou="{miou:.6f}">'
            f"<h3>{escape(caption)}</h3>{_figure(grid_png, caption, show_caption=False)}</div>"
        )
    return "".join(parts) + "</section>"


def _missed_table(missed: Mapping[str, Sequence[tuple[str, float, int]]] | None) -> str:
    if not missed:
        return ""
    rows = []
    for name, entries in missed.items():
        cells = "; ".join(
            f"{escape(frame_id)} ({_percent(share)}% of {pixels:,} px)"
            for frame_id, share, pixels in entries
        )
        swatch = f'<span class="swatch" style="background:{_class_color(name)}"></span>'
        rows.append(f'<tr><td class="name">{swatch}{escape(name)}</td><td>{cells}</td></tr>')
    return (
        '<section class="missed"><h2>Where each class is missed most</h2>'
        "<p class='muted'>Per class, the images where the largest share of its pixels was "
        "predicted as something else (images holding at least 64 of its pixels).</p>"
        "<table><thead><tr><th>class</th><th>images (share of the class missed)</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def write_report(
    out_dir: str | Path,
    metrics: Mapping,
    images: Mapping[str, Path | str] | None = None,
    best: Sequence[ImageRef] | None = None,
    worst: Sequence[ImageRef] | None = None,
    title: str = "cityseg evaluation report",
    info: Mapping[str, object] | None = None,
    missed: Mapping[str, Sequence[tuple[str, float, int]]] | None = None,
) -> Path:
    """Write ``out_dir/report.html``: headline numbers, per-class table, charts, best/worst images.

    The page is self-contained (inline CSS, images as base64 data URIs, no scripts, no links), so
    it can be mailed or archived as one file.

    Args:
        out_dir: folder to write into (created if needed).
        metrics: the evaluation metrics dict (fractions in [0, 1], ``None`` for absent classes;
            see ``cityseg.evaluate``): headline means, ``classes``, ``absent_classes`` and the
            optional ``cityscapes`` official scores.
        images: caption -> chart PNG, shown in order (e.g. from ``plots.evaluation_charts``).
        best: ``(frame_id, miou, comparison_grid_png)`` of the best images.
        worst: the same for the worst images.
        title: page title.
        info: extra facts shown under the title (checkpoint, data, config...); dicts and lists
            are shown as collapsible JSON.
        missed: per class, ``(frame_id, missed share, class pixels)`` of the images where it is
            missed most, worst first (a table "Where each class is missed most").

    Returns:
        The path of ``report.html``.
    """
    charts = "".join(_figure(path, caption) for caption, path in (images or {}).items())
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(
        (
            f"<h1>{escape(title)}</h1><p class='muted'>Generated {generated} by cityseg</p>",
            _info(info),
            _headline(metrics),
            _class_table(metrics),
            _official_details(metrics),
            f"<h2>Charts</h2>{charts}" if charts else "",
            _gallery("Best images (highest mIoU)", best),
            _gallery("Worst images (lowest mIoU first)", worst, "worst"),
            _missed_table(missed),
            "<footer>Percentages of pixels over the evaluated images; ignore pixels (255) are "
            "not counted.</footer>",
        )
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
