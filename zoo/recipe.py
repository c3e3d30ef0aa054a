"""The training recipe, the one place it lives: how the head is trained (on cached features or
end to end with augmentation) and how the top of the base is fine-tuned.

The seed's protocol: Adam, sparse categorical cross-entropy (labels are class indices), a Dense
softmax head on the pooled features; fine-tuning unfreezes the top of the base, BatchNorm
excepted, and goes on at a tenth of the learning rate. The bench and benchmarks/tune_head.py
both train through here, so a tuning result is a result about the bench's own recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.settings import BenchSettings
from zoo.spec import BackboneSpec


def augmentation() -> Any:
    """The seed's augmentation, as layers that are active only while training."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomRotation(0.2),
            keras.layers.RandomZoom(0.2),
        ],
        name="augmentation",
    )


def compile_model(model: Any, learning_rate: float) -> None:
    """The seed's optimizer and loss (labels as class indices)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    num_classes: int,
    settings: BenchSettings,
    callbacks: Sequence[Any] = (),
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    head: Any = None,
) -> Any:
    """Phase 1 on cached features: the new softmax head, trained on the arrays.

    Build it inside the strategy's scope. Given a `head` this function trained before, it
    trains that one again from new initial weights and a new optimizer state: the same as a
    new head, without Keras tracing its training step again (cross-validation trains k).
    """
    from zoo.models import classification_head

    fresh = classification_head(train_x.shape[1], num_classes)
    if head is None:
        head = fresh
        compile_model(head, settings.learning_rate)
    else:
        head.set_weights(fresh.get_weights())
        for variable in head.optimizer.variables:  # step count, moments and the learning rate
            variable.assign(np.zeros(variable.shape, variable.dtype))
        head.optimizer.learning_rate = settings.learning_rate
    head.fit(
        np.asarray(train_x),
        np.asarray(train_y),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=list(callbacks),
        validation_data=validation,
    )
    return head


def predict_views(head: Any, views: Sequence[np.ndarray]) -> np.ndarray:
    """Class probabilities of images given as the features of one or more views of them (plain,
    mirrored): the mean over the views. A direct call, not head.predict, which retraces its
    function for every new head."""
    return np.mean([np.asarray(head(np.asarray(view), training=False)) for view in views], axis=0)


def train_end_to_end(
    extractor: Any,
    num_classes: int,
    batches: Any,
    settings: BenchSettings,
    strategy: Any,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Phase 1 with augmentation: the frozen base sees new random variants of the images every
    epoch, inside model.fit; returns the whole classifier (augmentation, base and head)."""
    import keras

    from zoo.models import classification_head

    with strategy.scope():
        head = classification_head(extractor.output_shape[-1], num_classes)
        inputs = keras.Input(extractor.input_shape[1:], name="image")
        model = keras.Model(inputs, head(extractor(augmentation()(inputs))), name="classifier")
        compile_model(model, settings.learning_rate)
    model.fit(batches, epochs=settings.epochs, verbose=0, shuffle=False, callbacks=list(callbacks))
    return model


def base_model(spec: BackboneSpec, extractor: Any) -> Any:
    """The backbone inside the extractor (its one nested Keras model), whose layers fine-tuning unfreezes."""
    import keras

    base = next((layer for layer in extractor.layers if isinstance(layer, keras.Model)), None)
    if base is None:
        raise ZooError(
            f"{spec.name} cannot be fine-tuned: its base is not a Keras model with layers "
            "(e.g. a TF Hub SavedModel); bench it with --mode features"
        )
    return base


def unfreeze_top(base: Any, count: int) -> int:
    """Make the top `count` layers of `base` trainable, BatchNorm excepted (it stays in
    inference mode, as Keras recommends for fine-tuning); returns how many became trainable."""
    import keras

    base.trainable = True
    cut = len(base.layers) - count
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= cut and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(layer.trainable for layer in base.layers)


def fine_tune(
    model: Any,
    base: Any,
    batches: Any,
    settings: BenchSettings,
    strategy: Any,
    callbacks: Sequence[Any] = (),
) -> int:
    """Phase 2 (the seed's notebook 05): unfreeze the top of `base` and keep training the whole
    model at a tenth of the learning rate, numbering epochs on from phase 1; returns how many
    layers became trainable."""
    with strategy.scope():
        unfrozen = unfreeze_top(base, settings.unfreeze)
        compile_model(model, settings.learning_rate / 10)
    model.fit(
        batches,
        initial_epoch=settings.epochs,
        epochs=settings.epochs + settings.finetune_epochs,
        verbose=0,
        shuffle=False,  # the pipeline shuffles
        callbacks=list(callbacks),
    )
    return unfrozen
