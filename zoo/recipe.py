"""The training recipe, the one place it lives: how the head is trained (on cached features or
end to end with augmentation) and how the top of the base is fine-tuned.

The seed's protocol: Adam, sparse categorical cross-entropy (labels are class indices), a Dense
softmax head on the pooled features; fine-tuning unfreezes the top of the base, BatchNorm
excepted, and goes on at a tenth of the learning rate. The bench and benchmarks/tune_head.py
both train through here, so a tuning result is a result about the bench's own recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


#: Keras' Adam defaults, which the seed's recipe uses.
ADAM_BETAS, ADAM_EPSILON = (0.9, 0.999), 1e-7


def head_weights(
    views: Sequence[np.ndarray],
    labels: np.ndarray,
    images: np.ndarray,
    num_classes: int,
    settings: BenchSettings,
    seed: int,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The Dense softmax head's (kernel, bias) after `settings.epochs` of mini-batch Adam on
    the sparse categorical cross-entropy, in NumPy, over `images` (indices of `labels`) seen
    through every view: sample k is image `images[k % n]` through view `k // n`, as if the
    views' rows were stacked, but without copying them (a fold is a list of indices).

    The same steps Keras' fit takes (Glorot-uniform kernel, zero bias, the samples reshuffled
    every epoch, the loss of a batch its mean, Keras' Adam update), without its per-step and
    per-epoch overhead, which cost more than the arithmetic on a 1,000-row feature array. The
    bias rides along as the last row of the kernel. Given `epoch_end`, it gets what fit logs
    after each epoch: the loss and accuracy over the epoch's batches and, given `validation`,
    `val_loss` and `val_accuracy`.
    """
    rng = np.random.default_rng(seed)
    dim, count = views[0].shape[1], len(images) * len(views)
    limit = np.sqrt(6.0 / (dim + num_classes))
    weights = np.zeros((dim + 1, num_classes), np.float32)
    weights[:dim] = rng.uniform(-limit, limit, (dim, num_classes))
    moment, square, gradient = np.zeros_like(weights), np.zeros_like(weights), np.empty_like(weights)
    (beta1, beta2), step = ADAM_BETAS, 0
    for epoch in range(settings.epochs):
        order = rng.permutation(count)
        loss = correct = 0.0
        for start in range(0, count, settings.batch_size):
            view, image = np.divmod(order[start : start + settings.batch_size], len(images))
            image = images[image]
            x, y = _gather(views, view, image, dim), labels[image]
            picked = (np.arange(len(y)), y)
            logits = x @ weights[:dim]
            logits += weights[dim]
            logits -= logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits)
            totals = probabilities.sum(axis=1, keepdims=True)
            probabilities /= totals
            if epoch_end is not None:
                loss += float(np.log(totals).sum() - logits[picked].sum())
                correct += float(np.sum(logits.argmax(axis=1) == y))
            probabilities[picked] -= 1  # d(batch loss)/d(logits) = (p - onehot) / rows
            np.matmul(x.T, probabilities, out=gradient[:dim])
            probabilities.sum(axis=0, out=gradient[dim])
            gradient /= len(y)
            step += 1
            rate = settings.learning_rate * float(np.sqrt(1 - beta2**step)) / (1 - beta1**step)
            moment += (gradient - moment) * (1 - beta1)
            square += (gradient * gradient - square) * (1 - beta2)
            weights -= rate * moment / (np.sqrt(square) + ADAM_EPSILON)
        if epoch_end is None:
            continue
        logs = {"loss": loss / count, "accuracy": correct / count}
        if validation is not None:
            scored = np.asarray(validation[0], np.float32) @ weights[:dim] + weights[dim]
            scored -= scored.max(axis=1, keepdims=True)
            truth = np.asarray(validation[1])
            log_p = scored[np.arange(len(truth)), truth] - np.log(np.exp(scored).sum(axis=1))
            logs["val_loss"] = float(-np.mean(log_p))
            logs["val_accuracy"] = float(np.mean(scored.argmax(axis=1) == truth))
        epoch_end(epoch, logs)
    return weights[:dim], weights[dim]


def _gather(views: Sequence[np.ndarray], view: np.ndarray, image: np.ndarray, dim: int) -> np.ndarray:
    """The feature rows of `image[i]` through `views[view[i]]`, as one float32 batch."""
    if len(views) == 1:
        return np.asarray(views[0][image], np.float32)
    rows = np.empty((len(image), dim), np.float32)
    for index, features in enumerate(views):
        chosen = view == index
        rows[chosen] = features[image[chosen]]
    return rows


def train_head(
    views: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    num_classes: int,
    settings: BenchSettings,
    callbacks: Sequence[Any] = (),
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int | None = None,
    images: np.ndarray | None = None,
) -> Any:
    """Phase 1 on cached features: the new softmax head (a compiled Keras model, as saved and
    fine-tuned), trained on the training images' features, one array per view (plain, and
    mirrored with `settings.mirror`), rows aligned with `labels`; only on the rows `images`
    when given (a cross-validation fold). Shuffling and initial weights are drawn from `seed`
    (default `settings.seed`). `callbacks` (Keras callbacks: TensorBoard, progress) see every
    epoch's logs as under fit; `validation` (features, labels) is scored after each epoch."""
    import keras

    from zoo.models import classification_head

    head = classification_head(views[0].shape[1], num_classes)
    compile_model(head, settings.learning_rate)
    head.optimizer.build(head.trainable_variables)  # saved and loaded as a head fit had trained
    epochs = keras.callbacks.CallbackList(list(callbacks), model=head)
    epochs.on_train_begin()

    def epoch_end(epoch: int, logs: dict[str, float]) -> None:
        epochs.on_epoch_begin(epoch)
        epochs.on_epoch_end(epoch, logs)

    truth = np.asarray(labels, np.int64)
    chosen = np.arange(len(truth)) if images is None else np.asarray(images)
    seed = settings.seed if seed is None else seed
    reported = epoch_end if callbacks else None
    head.set_weights(head_weights(views, truth, chosen, num_classes, settings, seed, validation, reported))
    epochs.on_train_end()
    return head


def softmax_views(kernel: np.ndarray, bias: np.ndarray, views: Sequence[np.ndarray]) -> np.ndarray:
    """Class probabilities of the head (`kernel`, `bias`) as `head_weights` gives them, in
    NumPy, for images given as the features of one or more views: the mean over the views.
    What `predict_views` computes with the Keras head, without building one (cross-validation
    trains k heads only to score them)."""
    scored = []
    for view in views:
        logits = np.asarray(view, np.float32) @ kernel + bias
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        scored.append(probabilities / probabilities.sum(axis=1, keepdims=True))
    return np.mean(scored, axis=0)


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
