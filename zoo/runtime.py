"""What extracts a frozen base's features: TensorFlow's traced graph, or the same extractor
converted to TFLite and run by LiteRT (zoo.tflite: XNNPACK, one thread per core), which on CPU
is often much faster for the same features (benchmarks/results/bench_floor.json, `tflite_probe`).

`--runtime auto` (the default) decides while it extracts: TFLite where the extractor converts,
its features on the first batch agree with TensorFlow's within TOLERANCE (relative: the largest
|tflite - tf| over the largest |tf|, so the error is judged at the scale of the features), and it
is at least MARGIN times as fast; else TensorFlow, with a note saying why. The timings are made
on the batches extraction runs anyway, each through one candidate (TensorFlow, or the interpreter
in pieces of some size), their features kept (_Trial): choosing costs the difference in speed of
a few batches, not extra passes. On a GPU, or under `--strategy mirrored|multiworker`, auto is
TensorFlow. `tflite` insists (a row where TFLite cannot convert or agree fails, saying to use
`--runtime tf`); `tf` never converts.

The converted model is kept in zoo's cache beside the features, under the extractor's identity
(zoo.features), so conversion (seconds to tens of seconds) is paid once per backbone; so is auto's
choice, recorded under the same identity and this machine's CPU: a later bench (new data, say)
goes straight to the runtime chosen, without tracing TensorFlow's graph or timing either. `zoo
cache clear` forgets both. Nothing is decided, converted or loaded until a batch needs
extracting: a bench whose every split comes from the feature cache pays nothing here.

`zoo bench` converts before its first row (`convert_ahead`), in a child process: beside a bench
that has run TensorFlow (whose allocator keeps the high-water mark of the largest batch it ran,
hundreds of MB), the converter's gigabyte came on top, and `--all` peaked 1.35x the largest
backbone benched alone (benchmarks/results/bench_floor.json at d0342d5).
"""

from __future__ import annotations

import contextlib
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
#: Timed batches of each candidate in auto's trial (_Trial), after its warm-up; the fastest counts.
TIMINGS = 3
#: The batches the interpreter may run, tried in the trial (and the whole batch): XNNPACK
#: is often fastest on a few images at a time, whose activations stay in the CPU's caches (on 2
#: cores, none of the 7 backbones auto put on TFLite chose 32 over 4 and 8: benchmarks/results/bench_floor.json).
PIECES = (4, 8)


#: The progress step of a conversion.
CONVERTING = "converting to TFLite (once per backbone)"
#: Why the extractor of a model key (`model_key`) did not convert, as recorded (zoo.features.remember).
UNCONVERTIBLE = "unconvertible"
#: What `convert_ahead` recorded (zoo.features.remember) of a backbone: "converted" or "unconvertible".
AHEAD = "converted-ahead"


def relative_gap(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| / max |expected|: 0 for the same features, 1e-6 for float round-off;
    inf where either holds a NaN or an inf, which agrees with nothing."""
    if not (np.isfinite(got).all() and np.isfinite(expected).all()):
        return float("inf")
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    return float(np.max(np.abs(got - expected))) / max(scale, 1e-12) if expected.size else 0.0


def _timed(forward: Callable, batch: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    output = np.asarray(forward(batch))
    return time.perf_counter() - start, output


class _Unfit(Exception):
    """Why TFLite cannot extract this backbone's features, in a few words; `lasting` unless it
    may be otherwise next time (a converter that was killed), so auto records TensorFlow."""

    def __init__(self, why: str, lasting: bool = True):
        super().__init__(why)
        self.lasting = lasting


#: Why auto leaves TFLite for TensorFlow on a batch whose features only TFLite could not compute.
NOT_FINITE = "TFLite gave NaN or inf features where TensorFlow's are finite"


class _Trial:
    """auto's timings, made on the batches extraction runs anyway: each batch goes through the
    next candidate of the schedule and its features are kept, whichever candidate computed them
    (they agree within TOLERANCE, checked on the first batch), so choosing wastes no pass.

    The schedule: TensorFlow and the interpreter in pieces of `sizes[0]` alternating, TIMINGS
    batches each (a busy machine slows both alike); then each other piece size, a warm-up batch
    (the interpreter allocates for it) and TIMINGS timed ones. Without `tf` (--runtime tflite)
    only the piece sizes are timed. Only batches of the full `batch_size` are timed and move the
    schedule on; a candidate's fastest batch is its speed.
    """

    def __init__(self, tf: Callable | None, runner: tflite.Runner, sizes: list[int], batch_size: int):
        self.tf, self.runner, self._sizes, self._batch_size = tf, runner, sizes, batch_size
        first: list[tuple[str | int, bool]] = [(sizes[0], True)] * TIMINGS
        if tf is not None:
            first = [("tf", True), (sizes[0], True)] * TIMINGS
        self._schedule = first + [(size, timed) for size in sizes[1:] for timed in (False, *[True] * TIMINGS)]
        self.seconds: dict[str | int, list[float]] = {}
        self.calls = 0
        self.through_tflite = 0  # batches the interpreter computed
        self.last: str | int = sizes[0]  # the piece size the interpreter is allocated for

    @property
    def done(self) -> bool:
        return not self._schedule

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        candidate, timed = self._schedule[0]
        if candidate != "tf":
            self.runner.batch_size = self.last = int(candidate)
            self.through_tflite += 1
        seconds, output = _timed(self.tf if candidate == "tf" else self.runner, batch)  # type: ignore[arg-type]
        if len(batch) == self._batch_size:
            self._schedule.pop(0)
            if timed:
                self.seconds.setdefault(candidate, []).append(seconds)
        return output

    def best(self, candidate: str | int) -> float | None:
        """The candidate's fastest timed batch, in seconds (None: never timed)."""
        return min(self.seconds[candidate]) if candidate in self.seconds else None

    def fastest_piece(self) -> int:
        """The piece size the interpreter ran fastest (the first, if none was timed)."""
        timed = [size for size in self._sizes if size in self.seconds]
        return min(timed, key=lambda size: min(self.seconds[size])) if timed else self._sizes[0]


class Extraction:
    """images (uint8 or float32 batches) → features through the runtime `settings.runtime`
    chooses, which auto times on the batches it extracts (_Trial).

    `runtime` says what was chosen ("tf" or "tflite") and `note` why (and any damaged cache
    entry replaced on the way); both stay None/"" while nothing was extracted. Read while the
    trial is under way (a dataset of few batches), they end it on the timings made so far,
    which are then not recorded. `images_per_sec` is the chosen runtime's speed on the full
    batches it ran. `identity` is the extractor's (zoo.features.identity); None keeps nothing in
    the cache. `progress` hears of a conversion, the one slow step here.
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
        self._trial: _Trial | None = None
        self._notes: list[str] = []
        self._runtime: str | None = None
        self._note = ""
        self._seconds: list[float] = []  # of the full batches the chosen runtime ran, warm
        self._warm = False  # the chosen forward has run once since it was set (traced, allocated)
        self.calls = 0

    @property
    def runtime(self) -> str | None:
        self._settle()
        return self._runtime

    @property
    def note(self) -> str:
        self._settle()
        return self._note

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        output = self._extract(batch)
        if self._settings.runtime != "tf" and not np.isfinite(output).all():
            return self._finite(batch, output)
        return output

    def _extract(self, batch: np.ndarray) -> np.ndarray:
        if self._trial is not None:
            output = self._trial(batch)
            if self._trial.done:
                self._settle()
            return output
        if self._forward is None:
            return self._first(batch)
        seconds, output = _timed(self._forward, batch)
        if self._warm and len(batch) == self._settings.batch_size:
            self._seconds.append(seconds)
        self._warm = True
        return output

    def images_per_sec(self) -> float | None:
        """Images per second of the chosen runtime over the full batches it ran, warm (its trial
        batches too); None with fewer than two."""
        self._settle()
        if len(self._seconds) < 2:
            return None
        return self._settings.batch_size * len(self._seconds) / sum(self._seconds)

    def settle_on(self, batch: np.ndarray) -> None:
        """Choose the runtime, running `batch` through the trial as long as it needs: for speed
        figures measured apart from extraction (when there was little or none)."""
        if self.calls == 0:
            self(batch)
        while self._trial is not None and len(batch) == self._settings.batch_size:
            self(batch)
        self._settle()

    def _finite(self, batch: np.ndarray, output: np.ndarray) -> np.ndarray:
        """TensorFlow's features of `batch`, whose features through the runtime in use were not all
        finite: from here on TensorFlow's where only TFLite gave NaN or inf (recorded as auto's
        choice; a failed row with --runtime tflite), else `output` (the model's own fault:
        zoo.features.extract fails the row)."""
        if self._runtime == "tf":
            return output
        expected = self._tf_forward(batch)
        if not np.isfinite(expected).all():
            return output
        if self._settings.runtime == "tflite":
            raise ZooError(f"--runtime tflite: {NOT_FINITE}; use --runtime tf for this backbone")
        self._trial = None
        if self._machine_key:
            features.remember("runtime", self._machine_key, {"runtime": "tf", "note": NOT_FINITE}, self._backbone)
        self._use("tf", self._tf_forward, NOT_FINITE)
        self._seconds = []
        return expected

    @functools.cached_property
    def _tf_forward(self) -> Callable[[np.ndarray], np.ndarray]:
        """TensorFlow's traced graph of the extractor (traced on its first call), numpy in and out."""
        compiled = distributed.split_over_devices(self._strategy, metrics.compiled_forward(self._extractor))
        return lambda images: np.asarray(compiled(np.asarray(images, np.float32)))

    def _first(self, batch: np.ndarray) -> np.ndarray:
        """The first batch's features; the runtime chosen (recorded, or not to try) or its trial begun."""
        tf_forward = self._tf_forward
        why = tensorflow_only(self._settings)
        if why is not None:
            return self._start("tf", tf_forward, why, batch)
        choice = self._machine_key if self._settings.runtime == "auto" else None
        recorded = features.recall("runtime", choice) if choice else None
        if choice and recorded is not None:
            note = f"{recorded['note']} (chosen on an earlier bench)"
            if recorded["runtime"] == "tf":
                return self._start("tf", tf_forward, note, batch)
            runner = self._runner()
            runner.batch_size = features.recall("tflite-batch", choice, PIECES[0])
            return self._start("tflite", runner, note, batch)
        try:
            return self._begin_trial(batch, tf_forward)
        except _Unfit as exc:
            if self._settings.runtime == "tflite":
                raise ZooError(f"--runtime tflite: {exc}; use --runtime tf for this backbone") from None
            if choice and exc.lasting:  # conversion failures too: no use trying again on every bench
                features.remember("runtime", choice, {"runtime": "tf", "note": str(exc)}, self._backbone)
            return self._start("tf", tf_forward, str(exc), batch)

    def _begin_trial(self, batch: np.ndarray, tf_forward: Callable) -> np.ndarray:
        """TensorFlow's features of `batch` (TFLite's with --runtime tflite), once the converted
        extractor has run it and agreed with them; the trial goes on over the batches to come.
        _Unfit where TFLite cannot convert, run or agree."""
        try:
            runner = self._runner()
        except ZooError as exc:
            raise _Unfit(str(exc), lasting=not isinstance(exc, tflite.ConversionStopped)) from None
        batch_size = self._settings.batch_size
        sizes = sorted({min(piece, batch_size) for piece in (*PIECES, batch_size)})
        runner.batch_size = sizes[0]
        try:
            got = runner(batch)
        except Exception as exc:  # converted, yet the interpreter cannot run it
            raise _Unfit(f"the TFLite model does not run: {tflite.reason(exc)}") from None
        expected = tf_forward(batch)  # the first call traces
        if not np.isfinite(got).all() and np.isfinite(expected).all():
            raise _Unfit(NOT_FINITE)
        gap = relative_gap(got, expected)
        if gap > TOLERANCE:
            raise _Unfit(f"TFLite features differ by {gap:.1e} relative")
        insist = self._settings.runtime == "tflite"
        self._trial = _Trial(None if insist else tf_forward, runner, sizes, batch_size)
        return got if insist else expected

    def _settle(self) -> None:
        """End the trial under way: the interpreter in its fastest pieces and, for auto, TFLite
        where that was at least MARGIN times TensorFlow's speed; recorded if the trial ran through."""
        trial, self._trial = self._trial, None
        if trial is None:
            return
        piece = trial.fastest_piece()
        trial.runner.batch_size = piece  # the interpreter allocates for it on the next batch, if it changed
        key = self._machine_key if trial.done else None
        if key:
            features.remember("tflite-batch", key, piece, self._backbone)
        lite, tf_seconds = trial.best(piece), trial.best("tf")
        if trial.tf is None:
            runtime, note = "tflite", "--runtime tflite"
        elif lite is None or tf_seconds is None:
            runtime, note = "tf", "too few batches to time TFLite against TensorFlow"
            if trial.through_tflite:  # the row's runtime is what the rest would run; say what ran
                note += f" ({trial.through_tflite} of {trial.calls + 1} batches ran through TFLite, agreeing)"
        else:
            runtime = "tflite" if tf_seconds >= MARGIN * lite else "tf"
            note = f"TFLite {tf_seconds / lite:.2f}x TensorFlow's speed (in batches of {piece})"
            if key:
                features.remember("runtime", key, {"runtime": runtime, "note": note}, self._backbone)
        forward = trial.runner if runtime == "tflite" else trial.tf
        self._use(runtime, forward, note)  # type: ignore[arg-type]
        self._seconds = list(trial.seconds.get(piece if runtime == "tflite" else "tf", []))
        self._warm = runtime == "tf" or trial.last == piece

    def _use(self, runtime: str, forward: Callable, why: str) -> None:
        """`forward`, from now on the way images go (its first call warms it up: not timed)."""
        self._runtime, self._forward, self._note = runtime, forward, "; ".join([*self._notes, why])
        self._warm = False

    def _start(self, runtime: str, forward: Callable, why: str, batch: np.ndarray) -> np.ndarray:
        """`_use`, and `batch` run through `forward` as its warm-up."""
        self._use(runtime, forward, why)
        output = np.asarray(forward(batch))
        self._warm = True
        return output

    @functools.cached_property
    def _machine_key(self) -> str | None:
        """Where what was timed of this extractor on this machine is recorded: auto's choice and
        the interpreter's fastest batch (None: nothing kept)."""
        import tensorflow as tf

        if self._identity is None:
            return None
        machine = {"cpu": metrics.cpu_model(), "cpus": os.cpu_count(), "batch_size": self._settings.batch_size}
        return features.key(self._identity, converter=f"tensorflow {tf.__version__}", **machine)

    def _runner(self) -> tflite.Runner:
        """The extractor in the TFLite interpreter, from the cache or converted now (and kept); a
        damaged cache entry is converted again, with a note."""
        if self._identity is None:
            return tflite.Runner(self._convert())
        key = model_key(self._identity)
        failed = features.recall(UNCONVERTIBLE, key)
        if failed:  # no use converting again what failed (ahead of the row, say)
            raise ZooError(failed)
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
    """`convert()`'s TFLite bytes, kept in the cache under `key` with how long it took; a
    conversion that fails (a ZooError, not a converter killed on the way) is recorded there as
    UNCONVERTIBLE, with why."""
    import tensorflow as tf

    start = time.perf_counter()
    try:
        content = convert()
    except tflite.ConversionStopped:
        raise
    except ZooError as exc:
        features.remember(UNCONVERTIBLE, key, str(exc), backbone)
        raise
    meta = {"convert_seconds": round(time.perf_counter() - start, 2), "tensorflow": tf.__version__}
    features.store_model(backbone, key, content, meta)
    return content


def _ahead_key(name: str, weights_mode: str, seed: int) -> str:
    """Where `convert_ahead`'s outcome for a backbone is recorded: what it knows before building it."""
    return features.key({"backbone": name, "weights": weights_mode, "seed": seed})


#: How far the conversion child's resident memory may grow beyond its start (what the converter
#: keeps, 100-200 MB a backbone) before it hands the backbones left to a new child.
CHILD_GROWTH_MB = 400


def convert_ahead(specs: list, settings: Any, progress: Progress = no_progress) -> None:
    """Convert the backbones of `specs` the bench may extract through TFLite before any row runs,
    while this process is small, in a child process (`python -m zoo.runtime`) that builds each as
    the bench will, converts it and keeps it where the row looks (`model_key`).

    One child converts one backbone after another, paying TensorFlow's import once, until its
    memory has grown by CHILD_GROWTH_MB; a new child goes on from there. Skipped for a backbone
    converted ahead before (with the same weights and seed) whose model is still cached, or found
    unconvertible: a bench that needs none pays nothing. Whatever is missed here (a failure, a
    plugin changed since, weights that must be downloaded first, which the row does where the
    download shows) the row converts itself, and says why not.
    """
    if not settings.cache or settings.augment or tensorflow_only(settings):
        return
    converted = {entry["backbone"] for entry in features.models()}
    pending = []
    for spec in specs:
        outcome = features.recall(AHEAD, _ahead_key(spec.name, settings.weights, settings.seed))
        if outcome != "unconvertible" and not (outcome == "converted" and spec.name in converted):
            pending.append(spec.name)
    while pending:
        started, finished = _convert_in_child(pending, settings, progress)
        # A child that died converting one leaves it to its row; one that stopped to shed memory, none.
        pending = pending[max(len(finished), len(started)) :] if started else []


def _convert_in_child(names: list[str], settings: Any, progress: Progress) -> tuple[list[str], list[str]]:
    """One conversion child over `names`, in order: (the names it started, those it finished),
    each reported to `progress` as it goes."""
    command = [sys.executable, "-m", "zoo.runtime", settings.weights, str(settings.seed), *names]
    environment = plugin_manager.child_environment()  # plugins given by --plugin too
    started: list[str] = []
    finished: list[str] = []
    with subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as child:
        for line in child.stdout or ():
            event, _, name = line.strip().partition(" ")
            if name not in names:
                continue
            (started if event == "start" else finished).append(name)
            prefixed(progress, name)(CONVERTING, int(event == "done"), 1)
    for name in started[len(finished) :]:  # the child died on it
        prefixed(progress, name)(CONVERTING, 1, 1)
    return started, finished


class _Download(Exception):
    """A download `_convert_for_bench` does not make: the row makes it, in sight."""


def _no_download(step: str, done: int, total: int) -> None:
    raise _Download(step)


def _convert_for_bench(weights_mode: str, seed: int, names: list[str]) -> None:
    """`convert_ahead`'s child: each backbone of `names` in turn, "start NAME" and "done NAME" on
    stdout around it; an early end once its memory has grown by CHILD_GROWTH_MB."""
    import ctypes

    import keras
    import psutil

    process = psutil.Process()
    limit = process.memory_info().rss + CHILD_GROWTH_MB * 2**20
    for name in names:
        print("start", name, flush=True)
        _convert_one(name, weights_mode, seed)
        print("done", name, flush=True)
        keras.backend.clear_session(free_memory=True)
        with contextlib.suppress(OSError, AttributeError):  # glibc only: freed heap back to the system
            ctypes.CDLL(None).malloc_trim(0)
        if process.memory_info().rss > limit:
            return


def _convert_one(name: str, weights_mode: str, seed: int) -> None:
    """The backbone `name` built as `zoo bench` builds it (weights `weights_mode`, random ones
    drawn from `seed`), converted and kept unless it is already; none whose weights must be
    downloaded first."""
    from zoo.models import seeded_feature_extractor
    from zoo.weights import resolve

    spec = plugin_manager.catalog().get(name)
    try:
        weights = resolve(spec, weights_mode, _no_download)  # progress is only reported by a download
    except _Download:
        return
    extractor = seeded_feature_extractor(spec, weights, seed)
    key = model_key(features.identity(spec, extractor))
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
    features.remember(AHEAD, _ahead_key(name, weights_mode, seed), outcome, name)


if __name__ == "__main__":  # convert_ahead's child: python -m zoo.runtime WEIGHTS SEED NAME...
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _convert_for_bench(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
