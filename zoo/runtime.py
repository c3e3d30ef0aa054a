"""What extracts a frozen base's features: TensorFlow's traced graph, or the same extractor
converted to TFLite and run by LiteRT (zoo.tflite: XNNPACK, one thread per core), which on CPU
is often much faster for the same features (benchmarks/results/bench_floor.json, `tflite_probe`).

`--runtime auto` (the default) decides on the first batch that must be extracted: TFLite where
the extractor converts, its features on that batch agree with TensorFlow's within TOLERANCE
(relative: the largest |tflite - tf| over the largest |tf|, so the error is judged at the scale
of the features), and it is at least MARGIN times as fast there (the best of TIMINGS runs of
that batch each, after the warm-up call that traced or allocated); else TensorFlow, with a note
saying why. On a GPU, or under `--strategy mirrored|multiworker`, auto is TensorFlow. `tflite`
insists (a row where TFLite cannot convert or agree fails, saying to use `--runtime tf`); `tf`
never converts.

The converted model is kept in zoo's cache beside the features, under the extractor's identity
(zoo.features), so conversion (seconds to tens of seconds) is paid once per backbone; so is auto's
choice, recorded under the same identity and this machine's CPU: a later bench (new data, say)
goes straight to the runtime chosen, without tracing TensorFlow's graph or timing either. `zoo
cache clear` forgets both. Nothing is decided, converted or loaded until a batch needs
extracting: a bench whose every split comes from the feature cache pays nothing here.

`zoo bench` converts before its first row (`convert_ahead`), each backbone in a process of its
own: beside a bench that has run TensorFlow (whose allocator keeps the high-water mark of the
largest batch it ran, hundreds of MB), the converter's gigabyte came on top, and `--all` peaked
1.35x the largest backbone benched alone (benchmarks/results/bench_floor.json at d0342d5).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from zoo import distributed, features, metrics, plugin_manager, tflite
from zoo.errors import ZooError
from zoo.progress import Progress, no_progress, prefixed

#: The largest relative gap between TFLite's and TensorFlow's features that counts as the same.
TOLERANCE = 1e-4
#: How much faster TFLite must be for auto to pick it, so a tie within timing noise stays
#: TensorFlow: at 1.05, EfficientNetV2-B0 timed 1.07x on its first batch and 0.90x after it.
MARGIN = 1.15
#: Timed runs of the first batch through each runtime, after its warm-up; the fastest counts.
TIMINGS = 3
#: The batches the interpreter may run, tried on the first batch (and the whole batch): XNNPACK
#: is often fastest on a few images at a time, whose activations stay in the CPU's caches (on 2
#: cores, 6 of the 7 backbones auto put on TFLite chose 4 over 8 and 32: benchmarks/results/bench_floor.json).
PIECES = (4, 8)


#: The progress step of a conversion.
CONVERTING = "converting to TFLite (once per backbone)"
#: What `convert_ahead` recorded (zoo.features.remember) of a backbone: "converted" or "unconvertible".
AHEAD = "converted-ahead"


def relative_gap(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| / max |expected|: 0 for the same features, 1e-6 for float round-off."""
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    return float(np.max(np.abs(got - expected))) / max(scale, 1e-12) if expected.size else 0.0


def _timed(forward: Callable, batch: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    output = np.asarray(forward(batch))
    return time.perf_counter() - start, output


class _Unfit(Exception):
    """Why TFLite cannot extract this backbone's features, in a few words."""


class Extraction:
    """images → features through the runtime `settings.runtime` chooses, on the first call.

    After that call, `runtime` says what was chosen ("tf" or "tflite") and `note` why (and any
    damaged cache entry replaced on the way); both stay None/"" while nothing was extracted.
    `identity` is the extractor's (zoo.features.identity); None keeps nothing in the cache.
    `progress` hears of a conversion, the one slow step here.
    """

    def __init__(
        self,
        backbone: str,
        extractor: Any,
        settings: Any,
        strategy: Any,
        identity: dict | None,
        progress: Progress = no_progress,
    ):
        self._backbone, self._extractor, self._settings = backbone, extractor, settings
        self._strategy, self._identity, self._progress = strategy, identity, progress
        self._forward: Callable[[np.ndarray], Any] | None = None
        self._notes: list[str] = []
        self.runtime: str | None = None
        self.note = ""

    def __call__(self, batch: np.ndarray) -> Any:
        if self._forward is None:
            return self._choose(batch)
        return self._forward(batch)

    def _choose(self, batch: np.ndarray) -> np.ndarray:
        """The first batch's features, through the runtime chosen on it (or recorded as chosen)."""
        tf_forward = distributed.split_over_devices(self._strategy, metrics.compiled_forward(self._extractor))
        why = tensorflow_only(self._settings)
        if why is not None:
            return self._use("tf", tf_forward, np.asarray(tf_forward(batch)), why)
        choice = self._machine_key if self._settings.runtime == "auto" else None
        recorded = features.recall("runtime", choice) if choice else None
        if recorded is not None:
            forward = self._fastest_runner(batch) if recorded["runtime"] == "tflite" else tf_forward
            note = f"{recorded['note']} (chosen on an earlier bench)"
            return self._use(recorded["runtime"], forward, np.asarray(forward(batch)), note)
        try:
            runtime, forward, first, why = self._tflite_if_fit(batch, tf_forward)
        except _Unfit as exc:
            if self._settings.runtime == "tflite":
                raise ZooError(f"--runtime tflite: {exc}; use --runtime tf for this backbone") from None
            runtime, forward, first, why = "tf", tf_forward, np.asarray(tf_forward(batch)), str(exc)
        if choice:  # conversion failures too: no use trying again on every bench
            features.remember("runtime", choice, {"runtime": runtime, "note": why})
        return self._use(runtime, forward, first, why)

    @functools.cached_property
    def _machine_key(self) -> str | None:
        """Where what was timed of this extractor on this machine is recorded: auto's choice and
        the interpreter's fastest batch (None: nothing kept)."""
        import tensorflow as tf

        if self._identity is None:
            return None
        machine = {"cpu": metrics.cpu_model(), "cpus": os.cpu_count(), "batch_size": self._settings.batch_size}
        return features.key(self._identity, converter=f"tensorflow {tf.__version__}", **machine)

    def _tflite_if_fit(self, batch: np.ndarray, tf_forward: Callable) -> tuple[str, Callable, np.ndarray, str]:
        """(runtime, its forward pass, the batch's features, why): TFLite where it converts, runs
        and agrees on `batch` (and, for auto, is faster); else TensorFlow if only slower; else _Unfit."""
        try:
            runner = self._fastest_runner(batch)
        except ZooError as exc:
            raise _Unfit(str(exc)) from None
        except Exception as exc:  # converted, yet the interpreter cannot run it
            raise _Unfit(f"the TFLite model does not run: {tflite.reason(exc)}") from None
        expected = np.asarray(tf_forward(batch))  # the first call traces
        got = runner(batch)
        gap = relative_gap(got, expected)
        if gap > TOLERANCE:
            raise _Unfit(f"TFLite features differ by {gap:.1e} relative")
        if self._settings.runtime == "tflite":
            return "tflite", runner, got, "--runtime tflite"
        tf_seconds = lite_seconds = float("inf")
        for _ in range(TIMINGS):  # alternating, the best of each: a busy machine slows both alike
            seconds, expected = _timed(tf_forward, batch)
            tf_seconds = min(tf_seconds, seconds)
            seconds, got = _timed(runner, batch)
            lite_seconds = min(lite_seconds, seconds)
        speed = f"TFLite {tf_seconds / lite_seconds:.2f}x TensorFlow's speed (in batches of {runner.batch_size})"
        if tf_seconds >= MARGIN * lite_seconds:
            return "tflite", runner, got, speed
        return "tf", tf_forward, expected, speed

    def _use(self, runtime: str, forward: Callable, first: np.ndarray, why: str) -> np.ndarray:
        self.runtime, self._forward, self.note = runtime, forward, "; ".join([*self._notes, why])
        return first

    def _fastest_runner(self, batch: np.ndarray) -> tflite.Runner:
        """The extractor in the interpreter (zoo.tflite.Runner), running the batch size (of
        PIECES or `batch`'s own) fastest on `batch`: timed once per extractor and machine."""
        runner = self._runner()
        key = self._machine_key
        size = features.recall("tflite-batch", key) if key else None
        if size is None:
            fastest = float("inf")
            for piece in sorted({min(piece, len(batch)) for piece in (*PIECES, len(batch))}):
                runner.batch_size = piece
                runner(batch)  # allocates
                seconds = min(_timed(runner, batch)[0] for _ in range(TIMINGS))
                if seconds < fastest:
                    size, fastest = piece, seconds
            if key:
                features.remember("tflite-batch", key, size)
        runner.batch_size = size
        return runner

    def _runner(self) -> tflite.Runner:
        """The extractor in the TFLite interpreter, from the cache or converted now (and kept); a
        damaged cache entry is converted again, with a note."""
        if self._identity is None:
            return tflite.Runner(self._convert())
        key = model_key(self._identity)
        try:
            content = features.load_model(self._backbone, key)
        except features.DamagedEntry as exc:
            content = None
            self._notes.append(str(exc))
        if content is not None:
            try:
                return tflite.Runner(content)
            except ZooError:  # the checksum holds but the interpreter refuses it
                features.discard_model(self._backbone, key)
                self._notes.append(f"the cached TFLite model of {self._backbone} did not load; converted again")
        return tflite.Runner(_kept(self._backbone, key, self._convert))

    def _convert(self) -> bytes:
        """The extractor as TFLite bytes, the conversion reported as a step: it takes seconds."""
        self._progress(CONVERTING, 0, 1)
        content = tflite.convert(self._extractor)
        self._progress(CONVERTING, 1, 1)
        return content


def tensorflow_only(settings: Any) -> str | None:
    """Why these settings mean TensorFlow without trying TFLite, or None."""
    import tensorflow as tf

    if settings.runtime == "tf":
        return "--runtime tf"
    if settings.runtime == "auto" and settings.strategy != "default":
        return f"auto with --strategy {settings.strategy}"
    if settings.runtime == "auto" and tf.config.list_physical_devices("GPU"):
        return "auto on a GPU"
    return None


def model_key(identity: dict) -> str:
    """Where the extractor of `identity` converted to TFLite is kept (zoo.features.store_model)."""
    import tensorflow as tf

    return features.key(identity, converter=f"tensorflow {tf.__version__}")


def _kept(backbone: str, key: str, convert: Callable[[], bytes]) -> bytes:
    """`convert()`'s TFLite bytes, kept in the cache under `key` with how long it took."""
    import tensorflow as tf

    start = time.perf_counter()
    content = convert()
    meta = {"convert_seconds": round(time.perf_counter() - start, 2), "tensorflow": tf.__version__}
    features.store_model(backbone, key, content, meta)
    return content


def _ahead_key(name: str, weights_mode: str, seed: int) -> str:
    """Where `convert_ahead`'s outcome for a backbone is recorded: what it knows before building it."""
    return features.key({"backbone": name, "weights": weights_mode, "seed": seed})


def convert_ahead(specs: list, settings: Any, progress: Progress = no_progress) -> None:
    """Convert the backbones of `specs` the bench may extract through TFLite, each in a new
    process (`python -m zoo.runtime`) that builds it as the bench will, converts it and keeps it
    where the bench's row looks (`model_key`), before any row runs, while this process is small.

    Skipped for a backbone converted ahead before (with the same weights and seed) whose model
    is still cached, or found unconvertible: a bench that needs none pays nothing. Whatever is
    missed here (a failure, a plugin changed since, weights that must be downloaded first, which
    the row does where the download shows) the row converts itself, and says why not.
    """
    if not settings.cache or settings.augment or tensorflow_only(settings):
        return
    converted = {entry["backbone"] for entry in features.models()}
    for spec in specs:
        outcome = features.recall(AHEAD, _ahead_key(spec.name, settings.weights, settings.seed))
        if outcome == "unconvertible" or (outcome == "converted" and spec.name in converted):
            continue
        step = prefixed(progress, spec.name)
        step(CONVERTING, 0, 1)
        command = [sys.executable, "-m", "zoo.runtime", spec.name, settings.weights, str(settings.seed)]
        environment = plugin_manager.child_environment()  # plugins given by --plugin too
        subprocess.run(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        step(CONVERTING, 1, 1)


class _Download(Exception):
    """A download `_convert_for_bench` does not make: the row makes it, in sight."""


def _no_download(step: str, done: int, total: int) -> None:
    raise _Download(step)


def _convert_for_bench(name: str, weights_mode: str, seed: int) -> None:
    """`convert_ahead`'s child: the backbone `name` built as `zoo bench` builds it (weights
    `weights_mode`, random ones drawn from `seed`), converted and kept unless it is already."""
    from zoo.models import seeded_feature_extractor
    from zoo.weights import resolve

    spec = plugin_manager.catalog().get(name)
    try:
        weights = resolve(spec, weights_mode, _no_download)  # progress is only reported by a download
    except _Download:
        return
    extractor = seeded_feature_extractor(spec, weights, seed)
    key = model_key(features.identity(spec, extractor, weights, seed))
    try:
        cached = features.load_model(name, key)
    except features.DamagedEntry:
        cached = None  # converted again
    outcome = "converted"
    if cached is None:
        try:
            _kept(name, key, lambda: tflite.convert_here(extractor))
        except ZooError:
            outcome = "unconvertible"
    features.remember(AHEAD, _ahead_key(name, weights_mode, seed), outcome)


if __name__ == "__main__":  # convert_ahead's child: python -m zoo.runtime NAME WEIGHTS SEED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _convert_for_bench(sys.argv[1], sys.argv[2], int(sys.argv[3]))
