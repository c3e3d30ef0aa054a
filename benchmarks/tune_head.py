"""Choose the bench's head-training defaults by measurement on a validation split of train/.

The frozen base's features are extracted once (plain and horizontally mirrored), then the
softmax head is trained many ways on 80 % of train/ and scored on the other 20 %; test/ is
never looked at. Writes benchmarks/results/tune_head.json.

    .venv/bin/python benchmarks/tune_head.py [DATA] [BACKBONE ...]
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared/data/10_food_classes_10_percent"
BACKBONES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
EPOCHS = (5, 10, 20, 40)
SEEDS = (0, 1, 2)


def features(spec, files):
    """Features of `files` and of their mirror images."""
    import tensorflow as tf

    from zoo.data import image_batches
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    extractor = feature_extractor(spec, resolve(spec, "imagenet"))
    plain, mirrored = [], []
    for batch in image_batches(files, spec.input_size, 32):
        plain.append(np.asarray(extractor(batch, training=False)))
        mirrored.append(np.asarray(extractor(tf.image.flip_left_right(batch), training=False)))
    return np.concatenate(plain), np.concatenate(mirrored)


def validation_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified 80/20 indices of train/."""
    rng = np.random.default_rng(seed)
    held = np.concatenate([
        rng.permutation(np.flatnonzero(labels == c))[: max(1, int(0.2 * np.sum(labels == c)))]
        for c in np.unique(labels)
    ])
    return np.setdiff1d(np.arange(len(labels)), held), held


def score(x, x_flip, y, fit_idx, val_idx, epochs, flip_train, flip_test, seed) -> float:
    """Validation top-1 of the bench's own head recipe (zoo.recipe) at these epochs."""

    from zoo.recipe import train_head
    from zoo.settings import BenchSettings

    # The registry's batch size and learning rate; only the epochs and the mirror images vary.
    settings = BenchSettings.from_config(epochs=epochs, seed=seed)
    views = [x, x_flip] if flip_train else [x]
    head = train_head(views, y, int(y.max()) + 1, settings, images=fit_idx)
    probabilities = np.asarray(head(x[val_idx]))
    if flip_test:
        probabilities = (probabilities + np.asarray(head(x_flip[val_idx]))) / 2
    return float(np.mean(probabilities.argmax(1) == y[val_idx]))


def main() -> None:
    from zoo import get_backbone
    from zoo.data import load_dataset

    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    names = sys.argv[2:] or BACKBONES
    dataset = load_dataset(data)
    y = np.array(dataset.train.labels)
    results = {}
    for name in names:
        x, x_flip = features(get_backbone(name), dataset.train.files)
        grid = {}
        for epochs, flip_train, flip_test in itertools.product(EPOCHS, (False, True), (False, True)):
            scores = [
                score(x, x_flip, y, *validation_split(y, seed), epochs, flip_train, flip_test, seed)
                for seed in SEEDS
            ]
            key = f"epochs={epochs} flip_train={flip_train} flip_test={flip_test}"
            grid[key] = round(float(np.mean(scores)), 4)
            print(name, key, grid[key], flush=True)
        results[name] = grid
    out = Path(__file__).parent / "results" / "tune_head.json"
    out.write_text(json.dumps({"data": str(data.name), "validation": "stratified 20% of train/, "
                               f"seeds {list(SEEDS)}", "mean_val_top1": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
