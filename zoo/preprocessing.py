"""Turning 0..255 RGB pixels into what a backbone expects, as its spec declares."""

from __future__ import annotations

from zoo.spec import PREPROCESSING, BackboneSpec


def normalize(images, kind: str):
    """Apply the named preprocessing to a batch of 0..255 RGB images (NumPy or tensor)."""
    norm = PREPROCESSING[kind]
    if norm.bgr:
        images = images[..., ::-1]
        mean, std = norm.mean[::-1], norm.std[::-1]
    else:
        mean, std = norm.mean, norm.std
    return (images - list(mean)) / list(std)


def preprocess(images, spec: BackboneSpec):
    """The spec's preprocessing applied to a batch of 0..255 RGB images."""
    if callable(spec.preprocessing):
        return spec.preprocessing(images)
    return normalize(images, spec.preprocessing)


def preprocessing_layer(spec: BackboneSpec):
    """A Keras layer doing `preprocess` inside the model, so exported models carry it too."""
    import keras

    return keras.layers.Lambda(lambda images: preprocess(images, spec), name="preprocess")
