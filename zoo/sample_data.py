"""A small image dataset zoo draws itself, so `zoo bench` runs anywhere with no download.

Three classes of shapes (circles, squares, triangles) on noisy backgrounds, drawn from a fixed
seed: the same files on every machine. It shows the bench working; it says nothing about how a
backbone does on real photos.
"""

from __future__ import annotations

import random
from pathlib import Path

from zoo.cache import cache_dir

CLASSES = ("circle", "square", "triangle")
PER_CLASS = {"train": 24, "test": 12}
SIZE = 128
VERSION = 1


def _draw(shape: str, rng: random.Random):
    from PIL import Image, ImageDraw

    background = tuple(rng.randrange(0, 256) for _ in range(3))
    image = Image.effect_noise((SIZE, SIZE), rng.uniform(10, 40)).convert("RGB")
    image = Image.blend(image, Image.new("RGB", (SIZE, SIZE), background), 0.6)
    draw = ImageDraw.Draw(image)
    radius = rng.randrange(SIZE // 6, SIZE // 3)
    cx, cy = (rng.randrange(radius, SIZE - radius) for _ in range(2))
    colour = tuple(rng.randrange(0, 256) for _ in range(3))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    return image


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
                _draw(shape, rng).save(folder / f"{shape}_{index:03d}.jpg", quality=90)
    done.touch()
    return root
