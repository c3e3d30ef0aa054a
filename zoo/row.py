"""One backbone's bench result: a typed row, filled as each step finishes, saved as a dict.

Every row has every key, None where a step did not run (a failed backbone) or does not apply
(`finetune_seconds` without `--mode finetune`, `extract_seconds` with `--augment`). The bench's
settings are flattened into the row, so each row says how it was measured.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from zoo.settings import BenchSettings
from zoo.spec import BackboneSpec


@dataclass(kw_only=True)
class BenchRow:
    backbone: str
    family: str
    source: str
    plugin: str
    input_size: int
    params: int | None  # the spec's, then the built backbone's count
    weights: str  # what the backbone got ("imagenet", "random", "file", ...); "" until resolved
    weights_note: str = ""
    status: str = "failed"
    error: str = ""
    traceback: str = ""  # of the error: `zoo --debug bench` shows it
    kind: str = "backbone"  # or "ensemble" (zoo.ensemble): the average of other rows' heads
    members: dict[str, float] | None = None  # an ensemble's rows and their weights in its average
    settings: BenchSettings
    settings_fingerprint: str
    weights_file_mb: float | None = None
    feature_cache: str | None = None  # "hit", "miss", "off", a mix, or "off (augment)"
    feature_cache_note: str = ""  # damaged entries found and recomputed, one sentence each
    runtime: str | None = None  # what extracted the features: "tf" or "tflite"; None when none ran
    runtime_note: str = ""  # why that runtime (zoo.runtime), e.g. "TFLite 1.8x TensorFlow's speed"
    extract_seconds: float | None = None
    worker_images: list[int] | None = None  # images each worker extracted features of (views counted)
    head_seconds: float | None = None
    val_top1: float | None = None  # k-fold cross-validation on train/ (zoo.validation): mean
    val_top1_std: float | None = None  # and spread over the folds
    val_log_loss: float | None = None  # of the out-of-fold probabilities: what the ensemble is picked on
    validation_seconds: float | None = None
    top1_frozen: float | None = None  # top-1 after phase 1
    unfrozen_layers: int | None = None
    finetune_seconds: float | None = None
    train_seconds: float | None = None
    top1: float | None = None
    # the kept (and exported) classifier's top-1: it sees each test image alone, where with
    # --mirror `top1` is of the mean over the image and its mirror image; None for an ensemble
    top1_one_view: float | None = None
    top5: float | None = None
    test_images: int | None = None
    test_predictions: list[int] | None = None  # each test image's class, for the paired test
    per_class_accuracy: dict[str, float | None] | None = None
    confusion_matrix: list[list[int]] | None = None
    trainable_params: int | None = None
    images_per_sec: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    # where images/s and latency come from: "extraction" (its own batches, then single images
    # through the same forward pass), "cache" (recorded when the cached features were extracted:
    # the backbone did not run), or "runs" (separate runs: nothing, or too little, was extracted)
    speed_from: str | None = None
    flops_per_image: int | None = None
    peak_rss_mb: float | None = None
    classifier: str | None = None  # the saved classifier's folder, relative to --out
    total_seconds: float | None = None
    finished_at: str = ""

    @classmethod
    def start(cls, spec: BackboneSpec, settings: BenchSettings, fingerprint: str) -> BenchRow:
        """A failed row naming the backbone and settings, until the bench says otherwise."""
        return cls(
            backbone=spec.name,
            family=spec.family,
            source=spec.source,
            plugin=spec.plugin,
            input_size=spec.input_size,
            params=spec.params,
            weights="",  # a row that fails before its weights are resolved got none
            settings=settings,
            settings_fingerprint=fingerprint,
        )

    def finish(self, seconds: float) -> None:
        self.total_seconds = seconds
        self.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def to_dict(self) -> dict[str, Any]:
        """The row as results.json stores it: the settings' fields flattened in place of
        `settings`, the --weights mode as `weights_mode` (the row's `weights` says what it got)."""
        row: dict[str, Any] = {}
        for item in fields(self):
            if item.name == "settings":
                row.update(
                    ("weights_mode" if key == "weights" else key, value) for key, value in asdict(self.settings).items()
                )
            else:
                row[item.name] = getattr(self, item.name)
        return row
