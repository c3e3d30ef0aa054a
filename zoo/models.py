"""Keras models from specs: the frozen feature extractor, the head, both together, and an
ensemble of such classifiers as one model.

The seed's recipe: Input → preprocessing → frozen base → global average pooling → Dense softmax.
"""

from __future__ import annotations

import warnings

from zoo.errors import ZooError, one_line
from zoo.plugin_manager import build_backbone, catalog
from zoo.preprocessing import preprocessing_layer
from zoo.spec import BackboneSpec
from zoo.weights import ResolvedWeights, resolve

#: The interpolations a Keras Resizing layer does, of those a spec may name (zoo.spec.INTERPOLATIONS).
RESIZABLE = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")


def feature_extractor(spec: BackboneSpec, weights: ResolvedWeights):
    """0..255 RGB images → pooled features, with the base frozen (BatchNorm in inference mode)."""
    import keras

    try:
        base = build_backbone(spec, weights.path)
    except Exception as exc:
        if weights.label == "file":
            # The user's own file: what is wrong is the file, whatever the loader said of it.
            raise ZooError(
                f"--weights {weights.path}: {spec.name} cannot load it ({one_line(exc)}); give weights saved "
                f"from {spec.name}'s architecture"
            ) from exc
        if weights.path is not None and spec.source == "keras.applications" and not isinstance(exc, ZooError):
            # A file zoo found, past its pins (some pin only a size), that Keras' loader still refuses.
            raise ZooError(
                f"weights file {weights.path} for {spec.name} does not load ({one_line(exc)}): it is corrupt "
                "or not the right file; replace it, or use --weights none"
            ) from exc
        raise
    if not isinstance(base, keras.layers.Layer):  # a keras.Model is one
        raise ZooError(
            f"plugin {spec.plugin}'s zoo_build_backbone returned a {type(base).__name__} for {spec.name}, "
            "not a Keras model"
        )
    base.trainable = False
    _try_preprocessing(spec)
    inputs = keras.Input((spec.input_size, spec.input_size, 3), name="image")
    x = inputs if spec.preprocessing == "none" else preprocessing_layer(spec)(inputs)
    _check_input_size(spec, base)
    features = base(x, training=False)
    if not hasattr(features, "shape"):  # several outputs: a list or a dict of them
        raise ZooError(
            f"{spec.name} outputs a {type(features).__name__} of tensors, not one tensor of features; "
            f"plugin {spec.plugin} must build a model with a single ({spec.feature_dim},) output"
        )
    if tuple(features.shape[1:]) != (spec.feature_dim,):
        raise ZooError(
            f"{spec.name} outputs features of shape {tuple(features.shape[1:])}, but its spec "
            f"says ({spec.feature_dim},); plugin {spec.plugin} must fix feature_dim or its model"
        )
    return keras.Model(inputs, features, name=f"{spec.name.replace(':', '_')}_features")


def _check_input_size(spec: BackboneSpec, base) -> None:
    """A base built for other images than its spec's input_size (or RGB), said as the plugin's mistake
    (Keras would say `Input 0 of layer 'functional' is incompatible`, naming neither)."""
    inputs = getattr(base, "inputs", None) or []
    size = tuple(inputs[0].shape[1:3]) if inputs and len(inputs[0].shape) == 4 else ()
    if None not in size and size not in ((), (spec.input_size, spec.input_size)):
        raise ZooError(
            f"{spec.name} builds a model for {size[0]}x{size[1]} images, but its spec says input_size="
            f"{spec.input_size}; plugin {spec.plugin} must build for spec.input_size or fix input_size"
        )
    channels = inputs[0].shape[-1] if inputs and len(inputs[0].shape) == 4 else None
    if channels not in (None, 3):
        raise ZooError(
            f"{spec.name} builds a model for images of {channels} channels; zoo feeds RGB images (3): "
            f"plugin {spec.plugin} must build its model for 3"
        )


def seeded_feature_extractor(spec: BackboneSpec, weights: ResolvedWeights, seed: int):
    """`feature_extractor` as `zoo bench` builds it: random-init weights drawn from `seed`, so
    every process (the bench, its converter child) builds the same model, and what one caches
    under its identity fits the other."""
    import keras

    keras.utils.set_random_seed(seed)
    return feature_extractor(spec, weights)


def _try_preprocessing(spec: BackboneSpec) -> None:
    """Run a plugin's preprocessing callable on one black image first: inside a Keras Lambda
    layer its exception would surface as Keras' NotImplementedError, hiding the real cause."""
    import keras

    function = spec.preprocessing
    if not callable(function):
        return
    images = keras.ops.zeros((1, spec.input_size, spec.input_size, 3))
    try:
        problem = preprocessing_problem(function(images), images.shape)
    except Exception as exc:
        raise ZooError(
            f"plugin {spec.plugin}: the preprocessing of {spec.name} ({spec.preprocessing_name}) "
            f"raised {one_line(exc)}; fix that function"
        ) from exc
    if problem:
        raise ZooError(
            f"plugin {spec.plugin}: the preprocessing of {spec.name} ({spec.preprocessing_name}) {problem}; "
            "fix that function"
        )


def preprocessing_problem(output, images_shape: tuple) -> str:
    """Why what a preprocessing made of images of `images_shape` cannot feed a backbone, or ''.

    It must stay floating point and keep the batch, height and width: Keras takes the layer's
    output to be the input's shape and dtype, so an int32 or resized batch would go on unsaid.
    """
    import keras

    if not hasattr(output, "shape") or not hasattr(output, "dtype"):
        return f"returns {type(output).__name__}, not a batch of images"
    dtype = keras.backend.standardize_dtype(output.dtype)
    if not dtype.startswith(("float", "bfloat")):
        return f"returns {dtype} values; return floating point ones (keras.ops.cast(x, 'float32'))"
    if tuple(output.shape[:3]) != tuple(images_shape[:3]):
        return (
            f"turns images of shape {tuple(images_shape)} into shape {tuple(output.shape)}; it must keep "
            "the batch, height and width (zoo resizes to input_size before it)"
        )
    return ""


def classification_head(feature_dim: int, num_classes: int):
    """The new head trained on the features: one Dense softmax layer, as in the seed."""
    import keras

    return keras.Sequential(
        [keras.Input((feature_dim,)), keras.layers.Dense(num_classes, activation="softmax")],
        name="head",
    )


def classifier(spec: BackboneSpec, extractor, head):
    """The whole classifier: 0..255 RGB images → class probabilities, one Keras model."""
    import keras

    return keras.Model(extractor.input, head(extractor.output), name=spec.name.replace(":", "_"))


def ensemble_classifier(members, weights, input_size: int, interpolation: str):
    """Several classifiers as one model: one 0..255 RGB input of `input_size` px, resized inside
    once per other member input size (with that member's interpolation), and the members'
    probabilities averaged with `weights` (summing to 1). Standard Keras layers only, so it
    saves, exports and converts to TFLite as a single classifier does.

    `members`: (classifier, interpolation) pairs; a member of `input_size` px takes the input as
    it is, resized outside as `interpolation` says (its resize, zoo.data.image_batches).
    """
    import keras

    image = keras.Input((input_size, input_size, 3), name="image")
    views = {(input_size, interpolation): image}
    probabilities = []
    for (model, resize), weight in zip(members, weights):
        size = int(model.input_shape[1])
        key = (input_size, interpolation) if size == input_size else (size, resize)
        if key not in views:
            if resize not in RESIZABLE:
                raise ZooError(
                    f"{model.name} resizes images with {resize}, which Keras' Resizing layer cannot do "
                    f"({', '.join(RESIZABLE)} it can): it cannot be an ensemble member"
                )
            views[key] = keras.layers.Resizing(size, size, interpolation=resize, name=f"resize_{size}_{resize}")(image)
        probabilities.append(keras.layers.Rescaling(weight, name=f"{model.name}_weight")(model(views[key])))
    return keras.Model(image, keras.layers.Add(name="average")(probabilities), name="ensemble")


def create_model(name: str, num_classes: int, weights: str = "auto"):
    """A ready-to-train classifier: backbone `name`, frozen, with a new `num_classes` head.

    With `weights="auto"` a backbone whose pretrained weights cannot be had is built with
    random weights, and a warning says so and why.
    """
    spec = catalog().get(name)
    resolved = resolve(spec, weights)
    if weights == "auto" and not resolved.pretrained:
        warnings.warn(f"{name} uses RANDOM weights: {resolved.note}", stacklevel=3)
    extractor = feature_extractor(spec, resolved)
    return classifier(spec, extractor, classification_head(spec.feature_dim, num_classes))
