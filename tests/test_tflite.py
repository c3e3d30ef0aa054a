"""zoo.tflite and SavedModel export on real classifiers: EfficientNet-Lite (whose state-dict layer
names TensorFlow once refused as scope names) exports and converts, and every form agrees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zoo import get_backbone, tflite
from zoo.errors import ZooError


def small_classifier(name: str, size: int):
    """A random-weights classifier of 3 classes on backbone `name`, built at `size` pixels."""
    import keras

    from zoo.models import classification_head, classifier, feature_extractor
    from zoo.weights import ResolvedWeights

    keras.utils.set_random_seed(0)
    spec = dataclasses.replace(get_backbone(name), input_size=size)
    extractor = feature_extractor(spec, ResolvedWeights(None, "random"))
    return classifier(spec, extractor, classification_head(spec.feature_dim, 3))


def images(size: int, count: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (count, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def lite0():
    return small_classifier("efficientnet_lite0", 32)


def test_lite_exports_a_saved_model_that_gives_the_same_outputs(lite0, tmp_path):
    import tensorflow as tf

    lite0.export(str(tmp_path / "saved"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # kept: its variables die with it
    served = loaded.serve(images(32)).numpy()
    np.testing.assert_allclose(served, np.asarray(lite0(images(32))), atol=1e-5)


@pytest.fixture(scope="module")
def lite0_tflite(lite0):
    return tflite.convert(lite0)


def test_lite_converts_to_tflite_float32_and_runs_batches_of_any_size(lite0, lite0_tflite):
    runner = tflite.Runner(lite0_tflite, num_threads=1)
    assert runner.input_shape == (32, 32, 3)
    expected = np.asarray(lite0(images(32)))
    np.testing.assert_allclose(runner(images(32)), expected, atol=1e-4)
    np.testing.assert_allclose(runner(images(32)[:1]), expected[:1], atol=1e-4)


def test_runner_refuses_wrong_sizes_and_non_models(lite0_tflite, tmp_path):
    runner = tflite.Runner(lite0_tflite, num_threads=1)
    with pytest.raises(ZooError, match=r"takes images of shape \(32, 32, 3\), not \(40, 40, 3\)"):
        runner(images(40))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ZooError, match="junk.tflite is not a TFLite model"):
        tflite.Runner(junk)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_quantized_models_stay_close(name):
    model = small_classifier(name, 64)
    calibration = [images(64, 8)]
    expected = np.asarray(model(images(64)))
    half = tflite.Runner(tflite.convert(model, "float16"), num_threads=1)
    np.testing.assert_allclose(half(images(64)), expected, atol=1e-2)
    int8 = tflite.convert(model, "int8", calibration)
    full = tflite.convert(model)
    assert len(int8) < 0.35 * len(full)
    assert np.abs(tflite.Runner(int8, num_threads=1)(images(64)) - expected).max() < 0.1


def test_a_runner_with_a_batch_size_runs_larger_batches_in_pieces_to_the_same_outputs(lite0_tflite):
    batch = images(32, 11)
    whole = tflite.Runner(lite0_tflite, num_threads=1)(batch)
    pieces = tflite.Runner(lite0_tflite, num_threads=1, batch_size=4)
    np.testing.assert_allclose(pieces(batch), whole, rtol=1e-4, atol=1e-5)  # 4 + 4 + 3 padded to 4
    assert pieces(batch[:1]).shape == whole[:1].shape  # a single image runs alone


def test_a_runner_takes_uint8_images_as_the_float32_ones_they_are(lite0_tflite):
    pixels = images(32, 6).astype(np.uint8)
    runner = tflite.Runner(lite0_tflite, num_threads=1, batch_size=4)
    from_float = runner(pixels.astype(np.float32))
    np.testing.assert_array_equal(runner(pixels), from_float)  # the same numbers reach the model
    np.testing.assert_array_equal(runner(pixels[:, :, ::-1])[0], runner(pixels[:1, :, ::-1].astype(np.float32))[0])


def test_a_mixed_precision_model_that_does_not_convert_says_float16_is_why():
    """TFLite has Conv2D, but not on float16: the reason must not read as if the op were missing."""
    import keras

    inputs = keras.Input((16, 16, 3))
    halved = keras.layers.Conv2D(4, 3, dtype="mixed_float16")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(dtype="float32")(halved)
    with pytest.raises(ZooError, match=r"^TFLite conversion failed: tf\.Conv2D on float16 tensors is not a TFLite op"):
        tflite.convert(keras.Model(inputs, pooled))
