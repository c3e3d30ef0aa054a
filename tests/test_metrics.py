"""zoo.metrics against numbers worked out by hand."""

import os

import numpy as np
import pytest

from zoo import metrics


def test_top_k_confusion_and_per_class_accuracy():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.2, 0.35, 0.45]])
    labels = np.array([0, 1, 1, 0])
    assert metrics.top_k_accuracy(probabilities, labels, 1) == 0.5
    assert metrics.top_k_accuracy(probabilities, labels, 2) == 0.75
    assert metrics.top_k_accuracy(probabilities, labels, 5) == 1.0  # k above the class count
    confusion = metrics.confusion_matrix(labels, probabilities.argmax(axis=1), 3)
    assert confusion.tolist() == [[1, 0, 1], [0, 1, 1], [0, 0, 0]]
    assert metrics.per_class_accuracy(confusion) == [0.5, 0.5, None]


@pytest.mark.parametrize("layer, shape, expected", [
    # Dense 100 -> 10: 100*10 multiply-adds (2 FLOPs each) plus 10 bias adds.
    ("dense", (100,), 2 * 100 * 10 + 10),
    # Conv 3x3, 3 -> 4 channels, 'same' on 8x8, no bias: 8*8 outputs * 4 filters * 27 multiply-adds.
    ("conv", (8, 8, 3), 2 * 8 * 8 * 4 * 3 * 3 * 3),
])
def test_flops_match_the_analytic_count(layer, shape, expected):
    import keras

    made = keras.layers.Dense(10) if layer == "dense" else keras.layers.Conv2D(4, 3, padding="same", use_bias=False)
    model = keras.Sequential([keras.Input(shape), made])
    assert metrics.flops_per_image(model) == expected


def test_throughput_latency_and_peak_memory_are_measured():
    import keras

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)])
    forward = metrics.compiled_forward(model)
    steps = []
    batch = np.zeros((8, 16), np.float32)
    assert metrics.throughput(forward, batch, 3, lambda *step: steps.append(step)) > 0
    p50, p95 = metrics.latency_ms(forward, batch[:1], 5, lambda *step: steps.append(step))
    assert 0 < p50 <= p95
    assert ("throughput", 3, 3) in steps and ("latency", 5, 5) in steps
    with metrics.PeakMemory() as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block.sum()
    assert memory.peak_bytes > 64 * 2**20
    del block


def test_environment_names_versions_and_threads():
    import platform

    import keras
    import tensorflow as tf

    environment = metrics.environment()
    assert environment["tensorflow"] == tf.__version__ and environment["keras"] == keras.__version__
    assert environment["python"] == platform.python_version() and environment["numpy"] == np.__version__
    assert environment["cpu_count"] == os.cpu_count() and environment["cpu"]
    # one name per GPU TensorFlow sees (none on a CPU-only build)
    gpus = environment["gpus"]
    assert len(gpus) == len(tf.config.list_physical_devices("GPU")) and all(isinstance(g, str) and g for g in gpus)
    for key in ("intra_op_threads", "inter_op_threads"):
        assert environment[key] == "auto" or environment[key] >= 1, environment[key]
