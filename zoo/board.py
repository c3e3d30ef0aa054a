"""TensorBoard logs a reader can trust and compare: the run the bench scores on the test split
is named `test` (Keras calls it `validation`), and each backbone's run carries its settings and
final metrics through TensorBoard's hparams plugin, so the HParams dashboard sets backbones side
by side (`tensorboard --logdir OUT/tensorboard`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from zoo.row import BenchRow
from zoo.spec import file_stem

#: The final metrics the HParams dashboard shows for each backbone.
METRICS = ("top1", "top5", "top1_frozen", "images_per_sec", "latency_ms_p50", "train_seconds")


def log_folder(out_dir: Path, name: str) -> Path:
    """A row's run folder under `out_dir`: named as the row's other files are (file_stem), so a
    `:` name works on Windows too."""
    return out_dir / "tensorboard" / file_stem(name)


def hparams(row: BenchRow) -> dict:
    """What a run was trained with, as the HParams dashboard shows it."""
    settings = row.settings
    return {
        "backbone": row.backbone,
        "weights": row.weights,
        "input_size": row.input_size,
        "epochs": settings.epochs,
        "mirror": settings.mirror,
        "mode": settings.mode,
        "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size,
    }


def finish(log_dir: Path, row: BenchRow) -> None:
    """Rename Keras' `validation` run to `test` and write the hparams summary with the final
    metrics into the backbone's run folder."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp  # type: ignore[import-untyped]

    validation, test = log_dir / "validation", log_dir / "test"
    if validation.is_dir():
        shutil.rmtree(test, ignore_errors=True)
        validation.rename(test)
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams(hparams(row), trial_id=row.backbone)
        for name in METRICS:
            value = getattr(row, name)
            if value is not None:
                tf.summary.scalar(f"final/{name}", value, step=0)
    writer.close()
