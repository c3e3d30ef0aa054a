"""The training recipe on real (small) Keras models: the head learns, fine-tuning unfreezes."""

import numpy as np

from zoo import recipe
from zoo.settings import BenchSettings


def separable(count: int = 90, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    return (np.eye(classes)[labels] * 4 + rng.normal(0, 0.3, (count, classes))).astype(np.float32), labels


def test_the_head_learns_separable_features_and_reports_every_epoch_as_fit_does():
    import keras

    features, labels = separable()
    settings = BenchSettings.from_config(epochs=30, batch_size=16, learning_rate=0.05)
    logs = []
    reporter = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, log: logs.append((epoch, log)))
    head = recipe.train_head([features], labels, 3, settings, [reporter], validation=(features[:30], labels[:30]))
    probabilities = np.asarray(head(features))
    assert probabilities.shape == (90, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert np.mean(probabilities.argmax(axis=1) == labels) == 1.0
    assert head.loss == "sparse_categorical_crossentropy"  # compiled as fit would have it, to save or fine-tune
    assert [epoch for epoch, _ in logs] == list(range(30))
    assert set(logs[0][1]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert logs[-1][1]["loss"] < logs[0][1]["loss"] / 4 and logs[-1][1]["val_accuracy"] == 1.0


def test_the_numpy_loop_takes_the_steps_keras_fit_takes():
    """Full batches (so the shuffle order cannot matter) from the same initial weights: the loop's
    Adam steps on the cross-entropy are Keras' to float precision."""
    import keras

    from zoo.models import classification_head

    features, labels = separable(count=40)
    start = recipe.train_head([features], labels, 3, BenchSettings.from_config(epochs=0), seed=7).get_weights()
    settings = BenchSettings.from_config(epochs=6, batch_size=40, learning_rate=0.01)
    ours = recipe.train_head([features], labels, 3, settings, seed=7).get_weights()
    theirs = classification_head(3, 3)
    theirs.set_weights(start)
    recipe.compile_model(theirs, settings.learning_rate)
    theirs.fit(features, labels, epochs=6, batch_size=40, shuffle=False, verbose=0)
    for mine, keras_weights in zip(ours, theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_weights, rtol=1e-4, atol=1e-6)
    assert not np.allclose(ours[0], start[0])
    keras.utils.set_random_seed(0)  # the loop draws from its own seed, not from Keras' global one
    again = recipe.train_head([features], labels, 3, settings, seed=7).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(ours, again))
    other = recipe.train_head([features], labels, 3, settings, seed=8).get_weights()
    assert not np.allclose(ours[0], other[0])


def test_a_fold_trained_by_its_row_indices_is_the_fold_trained_on_a_copy_of_its_rows():
    """Cross-validation names a fold's images instead of copying their features; the head must
    be the one the copied, stacked views give (each view's rows, the mirror's after the plain's)."""
    features, labels = separable(count=60)
    mirrored = features[:, ::-1] + 0.1
    fold = np.flatnonzero(np.arange(60) % 5 != 2)
    settings = BenchSettings.from_config(epochs=3, batch_size=7, learning_rate=0.01)
    by_index = recipe.train_head([features, mirrored], labels, 3, settings, seed=3, images=fold).get_weights()
    copied = recipe.train_head([features[fold], mirrored[fold]], labels[fold], 3, settings, seed=3).get_weights()
    for a, b in zip(by_index, copied):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    stacked = np.concatenate([features[fold], mirrored[fold]])
    single = recipe.train_head([stacked], np.tile(labels[fold], 2), 3, settings, seed=3).get_weights()
    for a, b in zip(by_index, single):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_unfreeze_keeps_batchnorm_frozen():
    import keras

    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    assert recipe.unfreeze_top(base, 10) == sum(
        not isinstance(layer, keras.layers.BatchNormalization) for layer in base.layers[-10:]
    )
    assert not any(layer.trainable for layer in base.layers[:-10])
    assert not any(layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert recipe.unfreeze_top(base, 0) == 0


def test_softmax_views_scores_as_the_keras_head_with_the_same_weights_does():
    features, labels = separable()
    mirrored = features[:, ::-1].copy()
    settings = BenchSettings.from_config(epochs=3, batch_size=16)
    head = recipe.train_head([features, mirrored], labels, 3, settings, seed=5)
    kernel, bias = recipe.head_weights([features, mirrored], labels, np.arange(90), 3, settings, 5)
    np.testing.assert_array_equal(head.get_weights()[0], kernel)
    np.testing.assert_allclose(
        recipe.softmax_views(kernel, bias, [features, mirrored]),
        recipe.predict_views(head, [features, mirrored]),
        rtol=1e-5,
        atol=1e-7,
    )
