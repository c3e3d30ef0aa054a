"""What the bench measures besides training: accuracy breakdowns, speed, size, FLOPs, memory.

Accuracy helpers work on NumPy arrays; the speed and FLOPs helpers take a Keras model and
import TensorFlow only when called.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

from zoo.progress import Progress


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the `k` most probable."""
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the true class (clipped at 1e-7, so never infinite)."""
    true = probabilities[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(true, 1e-7, 1.0))))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true class, predicted class]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def per_class_accuracy(confusion: np.ndarray) -> list[float | None]:
    """Recall of each class (its diagonal over its row); None for a class with no test images."""
    totals = confusion.sum(axis=1)
    return [float(confusion[i, i] / total) if total else None for i, total in enumerate(totals)]


def size_mb(path: str | None) -> float | None:
    """The size on disk of a file, or of every file under a folder (a SavedModel), in MiB."""
    if path is None:
        return None
    target = Path(path)
    files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def compiled_forward(model):
    """The model's inference pass as one traced graph, as deployed (not eager op by op), for
    batches of any size: traced once, so the last, smaller batch of a split and a single image
    for latency do not trace it again."""
    import tensorflow as tf

    signature = tf.TensorSpec((None, *model.input_shape[1:]), model.inputs[0].dtype)
    return tf.function(lambda images: model(images, training=False), input_signature=[signature])


def throughput(forward, batch, batches: int, progress: Progress) -> float:
    """Images per second through `forward` at the batch's size, after one warm-up pass."""
    forward(batch)
    start = time.perf_counter()
    for done in range(1, batches + 1):
        np.asarray(forward(batch))
        progress("throughput", done, batches)
    return batches * len(batch) / (time.perf_counter() - start)


def latency_ms(forward, image, runs: int, progress: Progress, warmup: int = 3) -> tuple[float, float]:
    """Single-image latency (p50, p95) in milliseconds over `runs` calls, after `warmup` calls."""
    for _ in range(warmup):
        np.asarray(forward(image))
    times = []
    for done in range(1, runs + 1):
        start = time.perf_counter()
        np.asarray(forward(image))
        times.append((time.perf_counter() - start) * 1000)
        progress("latency", done, runs)
    p50, p95 = np.percentile(times, [50, 95])
    return float(p50), float(p95)


def flops_per_image(model) -> int | None:
    """Floating-point operations of one forward pass on one image, counted by TF's profiler
    on the traced graph (a multiply-add counts 2); None when the model cannot be profiled.

    The profiler does not look inside function calls, so a graph that has them (a TF Hub
    layer's) is frozen first, which inlines them; a Keras model's layers trace inline, and
    freezing its weights into the graph would only cost time."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    signature = tf.TensorSpec((1, *model.input_shape[1:]), model.inputs[0].dtype)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the v1 profiler warns that it is v1
    try:
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(signature)
        graph = concrete.graph
        if any(op.type in ("PartitionedCall", "StatefulPartitionedCall") for op in graph.get_operations()):
            graph = convert_variables_to_constants_v2(concrete).graph
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        profile = tf.compat.v1.profiler.profile(
            graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
        )
        return int(profile.total_float_ops) or None
    except Exception:  # a custom layer the profiler cannot freeze: no FLOPs, not a failed row
        return None
    finally:
        logger.setLevel(level)


class PeakMemory:
    """The highest resident set size of this process while the block runs, sampled by a thread.

    ru_maxrss is the peak of the whole process so far and never goes down; sampling gives the
    peak of one backbone's run even when an earlier, bigger backbone ran first.
    """

    def __init__(self, interval: float = 0.02):
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak_bytes = 0

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)


def cpu_model() -> str:
    """The CPU's model name, as the machine reports it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Where the numbers were measured: versions, CPU, GPUs, threads."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "auto",
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "auto",
    }
