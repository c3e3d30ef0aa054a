"""Turning 0..255 RGB pixels into what a backbone expects, as its spec declares."""

from __future__ import annotations

from zoo.spec import PREPROCESSING, BackboneSpec, Normalization


def normalize(images, kind: str | Normalization):
    """Apply a named or given normalization to a batch of 0..255 RGB images (NumPy or tensor)."""
    norm = PREPROCESSING[kind] if isinstance(kind, str) else kind
    if norm.bgr:
        images = images[..., ::-1]
        mean, std = norm.mean[::-1], norm.std[::-1]
    else:
        mean, std = norm.mean, norm.std
    return (images - list(mean)) / list(std)


def preprocessing_layer(spec: BackboneSpec):
    """A saveable Keras layer applying the spec's preprocessing inside the model, so saved and exported models
    carry it: the normalization's constants, or the name of the plugin's callable."""
    from zoo.layers import Preprocess

    norm = spec.normalization
    if norm is None:
        return Preprocess(function=spec.preprocessing, backbone=spec.name, name="preprocess")
    return Preprocess(norm.mean, norm.std, norm.bgr, name="preprocess")
