"""The bench's pictures: accuracy against speed for all rows, a confusion matrix per backbone.

Matplotlib only (no TensorFlow), so `zoo report` redraws them anywhere. Each is written
atomically: a reader never sees half a PNG.
"""

from __future__ import annotations

import contextlib
import functools
import math
import textwrap
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from zoo import atomic
from zoo.spec import file_stem

#: Where a label may sit around its point, in points (dx, dy), nearest first; each is tried at
#: growing distances until the label overlaps no other label and no marker.
_OFFSETS = ((8, 6), (8, -14), (-8, 6), (-8, -14), (0, 12), (0, -20))


@functools.cache
def _characters(font_file: str) -> frozenset[str]:
    """The characters a font file has glyphs for (none when FreeType cannot read it)."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(map(chr, FT2Font(font_file).get_charmap()))
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def _fallback_fonts(texts: Iterable[str]) -> list[str]:
    """Installed font families that have the characters of `texts` the default font lacks
    (class folders named 寿司 or ラーメン: boxes in DejaVu Sans), few, in font_manager's order."""
    from matplotlib import font_manager

    default = _characters(font_manager.findfont(font_manager.FontProperties()))
    missing = {char for text in texts for char in text if char.isprintable()} - default - {" "}
    families: list[str] = []
    for font in font_manager.fontManager.ttflist:
        if not missing:
            break
        if font.name.replace(" ", "").startswith("LastResort"):  # it has every character: each a box
            continue
        found = missing & _characters(font.fname)
        if found and font.name not in families:
            families.append(font.name)
            missing -= found
    return families


@contextlib.contextmanager
def _figure(size: tuple[float, float], dpi: int, texts: Iterable[str]) -> Iterator[tuple[Any, Any]]:
    """A new figure and its axes, closed when done, in which `texts` (names from users) are shown
    as they are: not set as math between `$`s (a class folder `$5 $off`), and in a font that has
    their characters where one is installed (_fallback_fonts); else as boxes, with no warning
    for each missing glyph."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fonts = [*matplotlib.rcParams["font.family"], *_fallback_fonts(texts)]
    style = matplotlib.rc_context({"text.parse_math": False, "font.family": fonts})
    with style, warnings.catch_warnings():  # read as each text, tick label too, is made
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        figure, axes = pyplot.subplots(figsize=size, dpi=dpi)
        try:
            yield figure, axes
        finally:
            pyplot.close(figure)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indexes of the points no other point beats on both speed and accuracy, fastest first."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


class _Box:
    """A rectangle in display coordinates, shaped like matplotlib's Bbox for _overlap."""

    def __init__(self, x0: float, y0: float, x1: float, y1: float):
        self.x0, self.y0, self.x1, self.y1 = x0, y0, x1, y1


def _overlap(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def place_labels(axes, points: list[tuple[float, float]], labels: list[str], sizes: list[float]) -> list:
    """Annotations for `points` placed so that no two overlap and none covers a marker (the
    least overlapping spot when none is free), with a leader line when pushed away."""
    figure = axes.figure
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    transform = axes.transData
    markers: list[Any] = []
    for (x, y), area in zip(points, sizes):
        cx, cy = transform.transform((x, y))
        radius = (area**0.5) / 2 * figure.dpi / 72
        markers.append(_Box(cx - radius, cy - radius, cx + radius, cy + radius))
    frame = axes.get_window_extent(renderer)
    placed: list[Any] = []
    annotations: list[Any] = []
    for index, ((x, y), label) in enumerate(zip(points, labels)):
        others = [*placed, *(marker for i, marker in enumerate(markers) if i != index)]
        best_cost, best, best_box = math.inf, None, None
        for distance, (dx, dy) in ((d, offset) for d in (1, 2, 3, 4) for offset in _OFFSETS):
            annotation = axes.annotate(
                label,
                (x, y),
                textcoords="offset points",
                xytext=(dx * distance, dy * distance),
                fontsize=8,
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6} if distance > 1 else None,
            )
            box = annotation.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            cost = sum(_overlap(box, other) for other in others) + (0.0 if inside else 1e6)
            if cost < best_cost:
                if best is not None:
                    best.remove()
                best_cost, best, best_box = cost, annotation, box
            else:
                annotation.remove()
            if best_cost == 0:
                break
        placed.append(best_box)
        annotations.append(best)
    return annotations


def accuracy_vs_speed(results: dict, statistics: dict, path: Path) -> None:
    """Top-1 (with its 95 % interval) against images/s: marker area by parameters, the Pareto
    front dashed, random-weight rows hollow and labelled, an ensemble a diamond (in the legend),
    chance level dotted."""
    rows = [
        r for r in results["backbones"] if r["status"] == "ok" and r.get("top1") is not None and r.get("images_per_sec")
    ]
    dataset = results.get("dataset", {})
    classes = len(dataset.get("classes") or ()) or None
    test_images = statistics.get("test_images") or dataset.get("test_images")
    name = Path(dataset.get("root", "")).name or "results"
    with _figure((9, 6), 120, [name, *(row["backbone"] for row in rows)]) as (figure, axes):
        if rows:
            largest = max(r.get("params") or 1 for r in rows)
            points = [(r["images_per_sec"], r["top1"] * 100) for r in rows]
            sizes = [60 + 1000 * (r.get("params") or 1) / largest for r in rows]
            labels = []
            for row, (x, y), size in zip(rows, points, sizes):
                random = row.get("weights") == "random"
                ensemble = row.get("kind") == "ensemble"
                low, high = statistics.get("rows", {}).get(row["backbone"], {}).get("top1_ci95", (y / 100, y / 100))
                # max(0, ...): a hand-edited top1 may lie outside the interval of its predictions
                below, above = max(0.0, y - low * 100), max(0.0, high * 100 - y)
                axes.errorbar(x, y, yerr=[[below], [above]], fmt="none", ecolor="0.4", capsize=3, lw=1)
                axes.scatter(
                    x,
                    y,
                    s=size,
                    marker="D" if ensemble else "o",
                    alpha=0.9 if random else 0.6,
                    facecolors="none" if random else "C0",
                    edgecolors="C3" if random else "black",
                    linewidths=1.5 if random else 0.8,
                    zorder=3,
                )
                marks = (
                    [f"{(row.get('params') or 0) / 1e6:.1f}M"] + ["RANDOM weights"] * random + ["ensemble"] * ensemble
                )
                labels.append(f"{row['backbone']} ({', '.join(marks)})")
            if any(row.get("kind") == "ensemble" for row in rows):
                axes.scatter(
                    [],
                    [],
                    marker="D",
                    s=60,
                    alpha=0.6,
                    facecolors="C0",
                    edgecolors="black",
                    linewidths=0.8,
                    label="ensemble: its members' probabilities averaged; it costs their sum",
                )
            front = pareto_front(points)
            if len(front) > 1:
                axes.plot(
                    [points[i][0] for i in front],
                    [points[i][1] for i in front],
                    "--",
                    color="C2",
                    lw=1,
                    label="Pareto front (nothing both faster and more accurate)",
                    zorder=2,
                )
            axes.set_xscale("log")
            from matplotlib.ticker import FuncFormatter

            plain = FuncFormatter(lambda value, _: f"{value:g}")  # 30, not 3×10¹
            axes.xaxis.set_major_formatter(plain)
            axes.xaxis.set_minor_formatter(plain)
            axes.margins(0.3, 0.15)
            if classes:
                axes.axhline(
                    100 / classes, ls=":", color="0.4", label=f"chance ({100 / classes:.0f} %, {classes} classes)"
                )
            if axes.get_legend_handles_labels()[0]:  # none without classes, ensemble or front
                axes.legend(loc="lower left", fontsize=8, framealpha=0.8)
            place_labels(axes, points, labels, sizes)
        else:
            axes.text(0.5, 0.5, "no finished backbones", ha="center", va="center", transform=axes.transAxes)
        axes.set_xlabel("inference throughput (images/s, log scale)")
        axes.set_ylabel("top-1 accuracy (%), bars: 95 % interval")
        on = f", {test_images} test images" if test_images else ""
        _set_title(axes, f"{name}{on}", "accuracy vs speed (marker area = parameters; hollow = random weights)")
        axes.grid(True, which="both", alpha=0.3)
        figure.tight_layout()
        _save(figure, path)


def confusion_file(backbone: str) -> str:
    """The confusion PNG's file name for a backbone."""
    return f"confusion_{file_stem(backbone)}.png"


def _tick_labels(names: list[str], width: int = 20) -> list[str]:
    """Class names cut to `width` characters in the middle, their start and end kept: names that
    begin alike (`pizza_margherita_small`, `pizza_margherita_large`) stay apart. Names that
    would still read alike are kept whole."""
    head = (width - 1) // 2
    cut = [name if len(name) <= width else f"{name[:head]}…{name[head + 1 - width :]}" for name in names]
    return [short if cut.count(short) == 1 else name for short, name in zip(cut, names)]


def confusion_matrix(row: dict, classes: list[str], path: Path) -> None:
    """The backbone's confusion matrix, each true class's row normalised to 1, class names on
    both axes; sized and lettered to stay readable up to 50 classes."""
    import numpy as np

    counts = np.asarray(row["confusion_matrix"], dtype=float)
    n = len(counts)
    given = classes if len(classes) == n else [str(index) for index in range(n)]  # e.g. a matrix of another run
    names = _tick_labels(given)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = min(max(5.0, 0.3 * n + 3), 19.0)
    font = max(7.0, min(10.0, 350 / max(n, 1)))
    with _figure((side + 1, side), 100, [row["backbone"], *names]) as (figure, axes):
        image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
        axes.set_xticks(range(n), names, rotation=90, fontsize=font)
        axes.set_yticks(range(n), names, fontsize=font)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        if n <= 15:
            for i in range(n):
                for j in range(n):
                    if counts[i, j]:
                        axes.text(
                            j,
                            i,
                            f"{shares[i, j]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=font - 1,
                            color="white" if shares[i, j] > 0.5 else "black",
                        )
        top1 = f", top-1 {row['top1']:.1%}" if row.get("top1") is not None else ""
        _set_title(axes, f"{row['backbone']}{top1}", "confusion matrix, normalised by true class")
        figure.tight_layout()
        _save(figure, path)


def _set_title(axes, subject: str, about: str) -> None:
    """`subject: about` as the title, on one line where it fits the figure's width; else the
    subject (a long dataset folder, an ensemble's members) wrapped on lines of its own, above
    `about`: a title wider than the figure ran off both its sides."""
    title = axes.set_title(f"{subject}: {about}", fontsize=10)
    figure = axes.figure
    renderer, room = figure.canvas.get_renderer(), 0.9 * figure.bbox.width  # centred over the axes, not the figure
    characters = len(title.get_text())
    while title.get_window_extent(renderer).width > room and characters > 10:
        characters = int(characters * 0.9)
        title.set_text("\n".join(textwrap.wrap(f"{subject}:", characters) + textwrap.wrap(about, characters)))


def _save(figure, path: Path) -> None:
    with atomic.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
