"""The training recipe on real (small) Keras models: the head learns, fine-tuning unfreezes."""

import numpy as np

from zoo import recipe
from zoo.settings import BenchSettings


def test_the_head_learns_separable_features():
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    features = np.eye(3)[labels] * 4 + rng.normal(0, 0.3, (90, 3))
    settings = BenchSettings.from_config(epochs=30, batch_size=16, learning_rate=0.05)
    head = recipe.train_head(features, labels, 3, settings)
    probabilities = np.asarray(head(features))
    assert probabilities.shape == (90, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert np.mean(probabilities.argmax(axis=1) == labels) > 0.95
    assert head.loss == "sparse_categorical_crossentropy"


def test_unfreeze_keeps_batchnorm_frozen():
    import keras

    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    assert recipe.unfreeze_top(base, 10) == sum(
        not isinstance(layer, keras.layers.BatchNormalization) for layer in base.layers[-10:]
    )
    assert not any(layer.trainable for layer in base.layers[:-10])
    assert not any(layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert recipe.unfreeze_top(base, 0) == 0
