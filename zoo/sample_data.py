"""A small image dataset zoo draws itself, so `zoo bench` runs anywhere with no download.

Ten classes of shapes (circle, triangle, square, pentagon, hexagon, star, cross, ring,
crescent, arrow), each drawn with nuisances that a backbone must see past: random colours
(the fill is never a cue), size, position and rotation, filled or outlined, on a textured
background with clutter strokes and blobs, noise, blur and JPEG artefacts. Drawn from a fixed
seed: the same files on every machine.

It is hard on purpose. Pretrained features tell a pentagon from a hexagon on a busy
background far better than random ones, and bigger backbones tell them apart better than
smaller ones, so `make bench` ranks something. It says nothing about real photos.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from zoo.cache import cache_dir

CLASSES = ("arrow", "circle", "crescent", "cross", "hexagon", "pentagon", "ring", "square", "star", "triangle")
PER_CLASS = {"train": 30, "test": 30}
SIZE = 128
VERSION = 2
#: How much clutter is drawn around each shape: the dial that sets how hard the dataset is.
CLUTTER = 4


def _polygon(cx: float, cy: float, radius: float, corners: int, angle: float, inner: float = 1.0):
    """Corners of a regular polygon (or, with `inner` < 1, a star with alternating radii)."""
    points = []
    steps = corners * (2 if inner < 1 else 1)
    for k in range(steps):
        r = radius * (inner if inner < 1 and k % 2 else 1.0)
        a = angle + 2 * math.pi * k / steps
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _rotated(points, cx: float, cy: float, angle: float):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randrange(0, 256) for _ in range(3))  # type: ignore[return-value]


def _contrasting(rng: random.Random, backgrounds: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """A random colour that stands out from both background colours, so the shape is visible."""
    for _ in range(50):
        colour = _colour(rng)
        if all(sum(abs(a - b) for a, b in zip(colour, other)) >= 180 for other in backgrounds):
            return colour
    return colour


def _shape(draw, shape: str, cx: float, cy: float, r: float, angle: float, fill, outline, width: int) -> None:
    """One shape; `fill` None draws only its outline."""
    if shape in ("circle", "ring"):
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "ring":
            draw.ellipse(box, outline=fill or outline, width=max(3, int(r * 0.3)))
        else:
            draw.ellipse(box, fill=fill, outline=outline, width=width)
        return
    if shape == "crescent":
        polygon = [
            (cx + r * math.cos(2 * math.pi * k / 40), cy + r * math.sin(2 * math.pi * k / 40)) for k in range(21)
        ]
        polygon += [
            (
                cx + 0.35 * r + 0.75 * r * math.cos(math.pi - math.pi * k / 20),
                cy + r * math.sin(math.pi - math.pi * k / 20),
            )
            for k in range(21)
        ]
        polygon = _rotated([(x, y) for x, y in polygon], cx, cy, angle)
    elif shape == "arrow":
        body = [(-1, -0.25), (0.2, -0.25), (0.2, -0.6), (1, 0), (0.2, 0.6), (0.2, 0.25), (-1, 0.25)]
        polygon = _rotated([(cx + x * r, cy + y * r) for x, y in body], cx, cy, angle)
    elif shape == "cross":
        arm = 0.33
        body = [
            (-arm, -1),
            (arm, -1),
            (arm, -arm),
            (1, -arm),
            (1, arm),
            (arm, arm),
            (arm, 1),
            (-arm, 1),
            (-arm, arm),
            (-1, arm),
            (-1, -arm),
            (-arm, -arm),
        ]
        polygon = _rotated([(cx + x * r, cy + y * r) for x, y in body], cx, cy, angle)
    elif shape == "star":
        polygon = _polygon(cx, cy, r, 5, angle, inner=0.45)
    else:
        corners = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[shape]
        polygon = _polygon(cx, cy, r, corners, angle)
    if fill is None:
        draw.line([*polygon, polygon[0]], fill=outline, width=width, joint="curve")
    else:
        draw.polygon(polygon, fill=fill)


def _draw(shape: str, rng: random.Random):
    from PIL import Image, ImageDraw, ImageFilter

    # A background of two colours blended through smooth noise, so no two images share a look.
    backgrounds = [_colour(rng), _colour(rng)]
    low, high = (Image.new("RGB", (SIZE, SIZE), colour) for colour in backgrounds)
    mask = Image.effect_noise((SIZE // 8, SIZE // 8), 80).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    image = Image.composite(high, low, mask)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(CLUTTER // 2, CLUTTER)):  # clutter: strokes and blobs in other colours
        x, y = rng.uniform(0, SIZE), rng.uniform(0, SIZE)
        if rng.random() < 0.5:
            draw.line(
                [(x, y), (x + rng.uniform(-50, 50), y + rng.uniform(-50, 50))],
                fill=_colour(rng),
                width=rng.randint(1, 4),
            )
        else:
            s = rng.uniform(3, 10)
            draw.ellipse((x - s, y - s, x + s * rng.uniform(0.5, 2), y + s), fill=_colour(rng))
    radius = rng.uniform(SIZE * 0.2, SIZE * 0.38)
    cx, cy = (rng.uniform(radius, SIZE - radius) for _ in range(2))
    filled = shape == "circle" or rng.random() < 0.6  # an outlined circle would be a ring
    colour = _contrasting(rng, backgrounds)
    _shape(
        draw, shape, cx, cy, radius, rng.uniform(0, 2 * math.pi), colour if filled else None, colour, rng.randint(2, 5)
    )
    noise = Image.effect_noise((SIZE, SIZE), rng.uniform(10, 50)).convert("RGB")
    image = Image.blend(image, noise, rng.uniform(0.05, 0.3))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def sample_dataset() -> Path:
    """The folder of the sample dataset, drawn into the cache the first time it is asked for."""
    root = cache_dir(f"sample-shapes-v{VERSION}")
    done = root / ".complete"
    if done.exists():
        return root
    rng = random.Random(VERSION)
    for split, count in PER_CLASS.items():
        for shape in CLASSES:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                _draw(shape, rng).save(folder / f"{shape}_{index:03d}.jpg", quality=rng.randint(60, 92))
    done.touch()
    return root
