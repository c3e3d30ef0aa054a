"""How the bench trains and measures every backbone, and the fingerprint `--resume` compares."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from zoo import config, features
from zoo.data import Dataset
from zoo.errors import ZooError
from zoo.spec import BackboneSpec
from zoo.weights import MODES as WEIGHTS_MODES

MODES = ("features", "finetune")
STRATEGIES = ("default", "mirrored", "multiworker")


#: The largest --batch-size: one batch of decoded images is held in memory at once.
MAX_BATCH_SIZE = 4096


@dataclass(frozen=True)
class BenchSettings:
    """How every backbone is trained and measured; epochs, batch size, learning rate, seed,
    mirror and runtime default to the user's settings (`zoo config`, zoo/config.py).

    Every field but `cache` and `runtime` can change a result, so all of them go into the settings
    fingerprint that `--resume` compares; those two change only how features are obtained, not
    what they are (zoo.runtime uses another runtime only where its features agree).
    """

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    weights: str = "auto"
    mode: str = "features"
    finetune_epochs: int = 5
    unfreeze: int = 10
    augment: bool = False
    mirror: bool = True
    strategy: str = "default"
    latency_runs: int = 30
    throughput_batches: int = 3
    cache: bool = True
    folds: int = 5  # k of the cross-validation on train/ behind val_top1 and the ensemble; 0: none
    runtime: str = "auto"  # what extracts features: tf, tflite or auto (zoo.runtime)

    def __post_init__(self) -> None:
        # A weights file by its absolute path, however it was spelled: --resume knows it for the
        # same file, and a saved classifier finds it from anywhere. A missing one stays as typed,
        # for the error that says so (zoo.weights.validate_weights_mode).
        given = Path(self.weights).expanduser()
        if self.weights not in WEIGHTS_MODES and given.exists():
            object.__setattr__(self, "weights", str(given.resolve()))

    @classmethod
    def from_config(cls, **overrides: Any) -> BenchSettings:
        """The user's bench settings (`zoo config`), with every override that is not None on top."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return cls(**{**config.bench_defaults(), **given})

    def validate(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ZooError(
                f"--batch-size {self.batch_size}: it must be 1 to {MAX_BATCH_SIZE} (a batch of images is "
                "held in memory at once; 32 is the usual choice)"
            )
        if self.epochs < 0:
            raise ZooError(f"--epochs {self.epochs}: it must be 0 or more")
        if self.finetune_epochs < 0:
            raise ZooError(f"--finetune-epochs {self.finetune_epochs}: it must be 0 or more")
        if not self.learning_rate > 0:
            raise ZooError(f"--learning-rate {self.learning_rate}: it must be above 0")
        if self.mode not in MODES:
            raise ZooError(f"--mode {self.mode}: use one of {', '.join(MODES)}")
        if self.strategy not in STRATEGIES:
            raise ZooError(f"--strategy {self.strategy}: use one of {', '.join(STRATEGIES)}")
        if self.runtime not in config.RUNTIMES:
            raise ZooError(f"--runtime {self.runtime}: use one of {', '.join(config.RUNTIMES)}")
        if self.unfreeze < 0:
            raise ZooError(f"--unfreeze {self.unfreeze}: it must be 0 or more")
        if self.folds < 0 or self.folds == 1:
            raise ZooError(f"--folds {self.folds}: use 2 or more, or 0 for no cross-validation")
        if self.latency_runs < 1 or self.throughput_batches < 1:
            raise ZooError("latency_runs and throughput_batches must be 1 or more")


#: Settings that change how features are obtained, never what they are.
HOW_NOT_WHAT = ("cache", "runtime")


def result_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The settings that can change a result (every field but HOW_NOT_WHAT), from the fields of a
    BenchSettings or of a results row, which carries them all (the --weights mode as
    `weights_mode`: its `weights` is what the row got, which differs from backbone to backbone)."""
    values = {**values, "weights": values.get("weights_mode", values.get("weights"))}
    return {field.name: values.get(field.name) for field in fields(BenchSettings) if field.name not in HOW_NOT_WHAT}


def settings_fingerprint(spec: BackboneSpec, dataset: Dataset, settings: BenchSettings) -> str:
    """What a finished row was measured with: backbone, data files and settings (not HOW_NOT_WHAT)."""
    data = features.files_fingerprint(dataset.train.files + dataset.test.files)
    parts = {
        "backbone": spec.to_dict(),
        "classes": list(dataset.class_names),
        "data": data,
        "settings": result_settings(asdict(settings)),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
