"""The head trained by zoo's NumPy loop against the same recipe through Keras' `fit`.

zoo.recipe.train_head trains the softmax head with its own mini-batch Adam loop instead of
`model.fit`, which cost more in per-step overhead than the arithmetic. This checks that the
results are the same, on the food photos with real ImageNet weights: for each backbone the
features (plain and mirrored) are extracted once, then for several seeds both ways train the
row's head (20 epochs, batch 32, Adam 1e-3, mirror) and the 5-fold cross-validation heads,
scored as the bench scores them (test top-1 on the mean over each image and its mirror;
val_top1 the mean over the folds). Writes benchmarks/results/bench_head.json and .md.
Heavy (a few minutes on 2 cores): run it under `flock /work/bench.lock`.

    .venv/bin/python benchmarks/bench_head.py [--data DIR] [BACKBONE ...]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DATA = Path(__file__).resolve().parents[2] / "shared/data/10_food_classes_10_percent"
RESULTS = Path(__file__).resolve().parent / "results"
BACKBONES = ["efficientnet_lite0", "efficientnet_lite2"]
SEEDS = (42, 0, 1)


def views(spec, split, batch_size: int) -> list[np.ndarray]:
    """The split's features and those of its mirror images, through the compiled extractor."""
    from zoo.data import decoded_batches
    from zoo.metrics import compiled_forward
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    forward = compiled_forward(feature_extractor(spec, resolve(spec, "imagenet")))
    batches = list(decoded_batches(split.files, spec.input_size, batch_size, spec.interpolation))
    return [
        np.concatenate([np.asarray(forward(batch.astype(np.float32))) for batch in batches]),
        np.concatenate([np.asarray(forward(batch[:, :, ::-1].astype(np.float32))) for batch in batches]),
    ]


class KerasFit:
    """The recipe as zoo ran it before: the same head, compiled the same way, trained by fit;
    one compiled head per feature width, reset (new initial weights, zeroed optimizer state)
    for every training, as the bench did so that fit does not trace its step again."""

    def __init__(self):
        self.heads: dict = {}

    def __call__(self, train_x, train_y, num_classes, settings, seed):
        import keras

        from zoo.models import classification_head
        from zoo.recipe import compile_model

        keras.utils.set_random_seed(seed)
        fresh = classification_head(train_x.shape[1], num_classes)
        head = self.heads.get((train_x.shape[1], num_classes))
        if head is None:
            head = self.heads[(train_x.shape[1], num_classes)] = fresh
            compile_model(head, settings.learning_rate)
        else:
            head.set_weights(fresh.get_weights())
            for variable in head.optimizer.variables:
                variable.assign(np.zeros(variable.shape, variable.dtype))
            head.optimizer.learning_rate = settings.learning_rate
        head.fit(train_x, train_y, epochs=settings.epochs, batch_size=settings.batch_size, shuffle=True, verbose=0)
        return head


def numpy_head(train_x, train_y, num_classes, settings, seed):
    from zoo.recipe import train_head

    return train_head([train_x], train_y, num_classes, settings, seed=seed)


def scores(train, test, train_y, test_y, settings, seed, train_one) -> dict:
    """Test top-1 of the row's head and val_top1 of the k-fold heads (fold i seeded seed + i)."""
    from zoo.recipe import predict_views
    from zoo.validation import stratified_folds

    classes = int(train_y.max()) + 1
    start = time.perf_counter()
    head = train_one(np.concatenate(train), np.tile(train_y, len(train)), classes, settings, seed)
    top1 = float(np.mean(predict_views(head, test).argmax(axis=1) == test_y))
    folds = stratified_folds(train_y, settings.folds, settings.seed)
    fold_top1 = []
    for fold in range(settings.folds):
        held = folds == fold
        fit_x = np.concatenate([view[~held] for view in train])
        head = train_one(fit_x, np.tile(train_y[~held], len(train)), classes, settings, seed + fold)
        guessed = predict_views(head, [view[held] for view in train]).argmax(axis=1)
        fold_top1.append(float(np.mean(guessed == train_y[held])))
    return {"top1": top1, "val_top1": float(np.mean(fold_top1)), "seconds": time.perf_counter() - start}


def main() -> None:
    arguments = sys.argv[1:]
    data = Path(arguments.pop(arguments.index("--data") + 1)) if "--data" in arguments else DATA
    names = [name for name in arguments if name != "--data"] or BACKBONES

    from zoo.data import load_dataset
    from zoo.plugin_manager import catalog
    from zoo.settings import BenchSettings

    settings = BenchSettings.from_config(weights="imagenet")
    dataset = load_dataset(data)
    train_y, test_y = np.asarray(dataset.train.labels), np.asarray(dataset.test.labels)
    result: dict = {
        "data": data.name,
        "settings": {
            key: getattr(settings, key) for key in ("epochs", "batch_size", "learning_rate", "mirror", "folds")
        },
        "seeds": SEEDS,
        "backbones": {},
    }
    for name in names:
        spec = catalog().get(name)
        train, test = views(spec, dataset.train, settings.batch_size), views(spec, dataset.test, settings.batch_size)
        runs = {
            way: [scores(train, test, train_y, test_y, settings, seed, train_one) for seed in SEEDS]
            for way, train_one in (("keras_fit", KerasFit()), ("numpy_loop", numpy_head))
        }
        result["backbones"][name] = {
            way: {
                "runs": each,
                "top1_mean": float(np.mean([run["top1"] for run in each])),
                "val_top1_mean": float(np.mean([run["val_top1"] for run in each])),
                "seconds_mean": float(np.mean([run["seconds"] for run in each])),
            }
            for way, each in runs.items()
        }
        print(name, json.dumps(result["backbones"][name], indent=1), flush=True)
    result["load_average_after"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_head.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# The head through zoo's NumPy loop vs Keras fit, {data.name}, ImageNet weights",
        "",
        f"Same features, same recipe ({settings.epochs} epochs, batch {settings.batch_size}, Adam "
        f"{settings.learning_rate}, mirror, {settings.folds}-fold validation); mean over seeds {list(SEEDS)}. "
        "Seconds: the row's head plus the k fold heads. From `bench_head.json`.",
        "",
        "| backbone | way | test top-1 | val_top1 | per-seed test top-1 | head + folds s |",
        "|---|---|---|---|---|---|",
    ]
    for name, ways in result["backbones"].items():
        for way, summary in ways.items():
            each = ", ".join(f"{run['top1']:.3f}" for run in summary["runs"])
            lines.append(
                f"| {name} | {way} | {summary['top1_mean']:.3f} | {summary['val_top1_mean']:.3f} | {each} "
                f"| {summary['seconds_mean']:.1f} |"
            )
    (RESULTS / "bench_head.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
