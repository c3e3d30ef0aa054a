"""zoo's own Keras layers, registered so a saved classifier loads with plain `keras.saving.load_model`
once zoo is imported (`zoo.load` does it for you): no `safe_mode=False`, no custom objects.

Importing this module imports Keras; the rest of zoo imports it only when it builds or loads a model.
"""

from __future__ import annotations

import keras

from zoo.errors import ZooError
from zoo.spec import callable_name


@keras.saving.register_keras_serializable(package="zoo")
class Preprocess(keras.layers.Layer):
    """0..255 RGB images → what a backbone expects, saved as constants, not as code.

    Either a per-channel `(x - mean) / std` (optionally after reordering RGB to BGR), or a
    plugin's preprocessing `function`, saved by its qualified name with the `backbone` it is
    for, and found again on load among the installed plugins' specs (never imported from an
    arbitrary name in the file). The backbone, because a name may not be unique: the lambdas of
    one module, or the functions one factory makes, share theirs.
    """

    def __init__(self, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), bgr=False, function=None, backbone="", **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std, self.bgr = [float(v) for v in mean], [float(v) for v in std], bool(bgr)
        self.backbone = backbone
        if callable(function):
            self._callable, self.function = function, callable_name(function)
        else:
            found = _plugin_callable(function, backbone) if function else None
            self._callable, self.function = found, function

    def call(self, images):
        images = keras.ops.cast(images, "float32")
        if self._callable is not None:
            return self._callable(images)
        if self.bgr:
            images = keras.ops.flip(images, axis=-1)
            mean, std = self.mean[::-1], self.std[::-1]
        else:
            mean, std = self.mean, self.std
        return (images - keras.ops.convert_to_tensor(mean)) / keras.ops.convert_to_tensor(std)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        if self.function:
            config.update(function=self.function, backbone=self.backbone)
        else:
            config.update(mean=self.mean, std=self.std, bgr=self.bgr)
        return config


def _plugin_callable(name: str, backbone: str):
    """The preprocessing callable named `name` of the installed spec of `backbone`; else (the
    backbone renamed, or a model saved before models named theirs) the one callable of that name."""
    from zoo.plugin_manager import catalog

    specs = catalog().backbones
    own = specs.get(backbone)
    if own is not None and callable(own.preprocessing) and own.preprocessing_name == name:
        return own.preprocessing
    named = {
        id(spec.preprocessing): spec.preprocessing
        for spec in specs.values()
        if callable(spec.preprocessing) and spec.normalization is None and spec.preprocessing_name == name
    }
    if len(named) == 1:
        return next(iter(named.values()))
    if named:
        raise ZooError(
            f"this model's preprocessing {name} names {len(named)} different functions of the installed "
            f"plugins, and its backbone {backbone or '(not recorded)'} is not one of theirs; export it again"
        )
    raise ZooError(
        f"this model's preprocessing {name} comes from a plugin that is not loaded now; install the "
        "plugin that provides it, or pass --plugin FILE with its file"
    )
