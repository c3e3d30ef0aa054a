"""A contract check for backbone plugins, ready to call from a plugin's own tests.

    from zoo.testing import check_plugin

    def test_my_plugin_meets_the_zoo_contract():
        check_plugin("my_plugin")   # the entry-point name (or the file stem of a ZOO_PLUGINS path)

Each check raises AssertionError saying what is wrong and how to fix it. They look at zoo's real
catalog and build models through zoo's real plugin manager, so what passes here is what
`zoo bench` will run. Models are built with random weights (nothing is downloaded).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from zoo import plugin_manager
from zoo.errors import ZooError, one_line
from zoo.plugin_manager import PluginInfo
from zoo.sources import source_of
from zoo.spec import BackboneSpec

#: How far a named preprocessing may stray outside its declared range (float32 rounding).
RANGE_TOLERANCE = 1e-3


def check_plugin(name: str, *, input_size: int | None = None) -> list[BackboneSpec]:
    """Every check, on every backbone of the installed plugin `name`; returns its specs."""
    catalog = plugin_manager.catalog()
    infos: dict[str, PluginInfo] = {}
    for info in catalog.plugins:  # of two plugins of one name, the one that works
        if info.name not in infos or infos[info.name].error:
            infos[info.name] = info
    if name not in infos:
        raise AssertionError(
            f"zoo has no plugin {name!r} (it has {', '.join(infos)}): install your package "
            "(pip install -e .) with a `zoo.backbones` entry point, or set ZOO_PLUGINS=path"
        )
    if infos[name].error:
        raise AssertionError(f"plugin {name} is broken: {infos[name].error}")
    for backbone, claimants in catalog.conflicts.items():
        if name in claimants:
            raise AssertionError(_conflict(backbone, claimants))
    specs = [spec for spec in catalog.backbones.values() if spec.plugin == name]
    if not specs:
        raise AssertionError(f"plugin {name} provides no backbones: its zoo_backbones hook returned []")
    for spec in specs:
        check_backbone(spec, input_size=input_size)
    return specs


def check_backbone(spec: BackboneSpec | str, *, input_size: int | None = None) -> BackboneSpec:
    """Every check on one backbone, given as a spec or by name; `input_size` builds it smaller.

    A `hub` backbone is built when its SavedModel is on disk (a local folder, or in the hub
    cache); otherwise it is not, since its weights come inside the SavedModel, from the network.
    """
    if isinstance(spec, str):
        try:
            spec = plugin_manager.catalog().get(spec)
        except ZooError as exc:
            raise AssertionError(str(exc)) from None
    check_spec(spec)
    check_unique_name(spec)
    check_preprocessing(spec)
    check_self_rescaling(spec)
    if source_of(spec).random_init:
        check_save_load(spec, check_model(spec, input_size=input_size))
    else:
        from zoo import hub

        saved_model, _ = hub.locate(spec.reference)
        if saved_model is not None:  # a SavedModel has one input size: build it at its own
            check_model(spec, saved_model=str(saved_model))
    return spec


def check_self_rescaling(spec: BackboneSpec) -> None:
    """A `keras.applications` model that rescales its own input (the EfficientNets, and every
    constructor with `include_preprocessing`) must declare preprocessing 'none'."""
    import inspect

    if spec.source != "keras.applications" or spec.preprocessing == "none":
        return
    from keras import applications

    constructor = getattr(applications, spec.reference, None)
    if constructor is None:
        return  # check_model says so, with a did-you-mean
    if (
        spec.reference.startswith("EfficientNetB")
        or "include_preprocessing" in inspect.signature(constructor).parameters
    ):
        raise AssertionError(
            f"{spec.name}: keras.applications.{spec.reference} rescales its input itself, so "
            f"preprocessing {spec.preprocessing_name!r} would preprocess twice; declare preprocessing='none'"
        )


def check_spec(spec: BackboneSpec) -> None:
    """The spec is a `zoo.BackboneSpec` whose fields can work (what zoo checks at load time)."""
    if not isinstance(spec, BackboneSpec):
        raise AssertionError(f"{spec!r} is a {type(spec).__name__}, not a zoo.BackboneSpec")
    try:
        spec.validate()
    except ZooError as exc:
        raise AssertionError(str(exc)) from None


def check_unique_name(spec: BackboneSpec) -> None:
    """No other installed plugin declares a backbone of the same name."""
    catalog = plugin_manager.catalog()
    if spec.name in catalog.conflicts:
        raise AssertionError(_conflict(spec.name, catalog.conflicts[spec.name]))
    other = catalog.backbones.get(spec.name)
    if other is not None and other.plugin != spec.plugin:
        raise AssertionError(_conflict(spec.name, [other.plugin, spec.plugin or "this spec"]))


def _conflict(name: str, claimants: list[str]) -> str:
    return (
        f"backbone {name!r} is declared by {' and '.join(claimants)}: zoo leaves it out; "
        "give yours a name of its own, e.g. prefixed with your plugin's name"
    )


def _test_images(size: int) -> np.ndarray:
    """Two uint8 RGB images holding pure black, pure white and noise, as zoo feeds them (float32)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    images[0, 0, 0] = 0
    images[0, 0, 1] = 255
    return images.astype("float32")


def check_preprocessing(spec: BackboneSpec) -> None:
    """The preprocessing, run as zoo runs it (a Keras layer in a traced model), maps 0..255
    pixels where it says.

    A named kind must land inside `Normalization.output_range()` and reach both ends of it;
    a callable must give finite floating point numbers for every image, keeping the batch,
    height and width.
    """
    import tensorflow as tf

    from zoo.models import preprocessing_problem
    from zoo.preprocessing import preprocessing_layer

    images = _test_images(8)
    signature = tf.TensorSpec((None, *images.shape[1:]), tf.float32)
    try:  # traced, as the bench runs it (NumPy in a callable works eagerly only); the layer's own
        # computation, outside Keras' call wrapper, which would bury the error under its own words
        traced = tf.function(preprocessing_layer(spec).call, input_signature=[signature])(images)
    except Exception as exc:
        raise AssertionError(
            f"{spec.name}: preprocessing {spec.preprocessing_name}, traced as the bench runs it, raised {one_line(exc)}"
        ) from exc
    problem = preprocessing_problem(traced, images.shape)
    if problem:
        raise AssertionError(f"{spec.name}: preprocessing {spec.preprocessing_name} {problem}")
    output = np.asarray(traced)
    if output.ndim == 0 or output.shape[0] != 2 or not np.all(np.isfinite(output)):
        raise AssertionError(
            f"{spec.name}: preprocessing {spec.preprocessing_name} must map a batch of 0..255 "
            f"images to finite numbers, one per image; it gave shape {output.shape}"
        )
    if spec.normalization is None:
        return
    low, high = spec.normalization.output_range()
    if abs(output.min() - low) > RANGE_TOLERANCE or abs(output.max() - high) > RANGE_TOLERANCE:
        raise AssertionError(
            f"{spec.name}: preprocessing {spec.preprocessing_name!r} mapped 0..255 to "
            f"[{output.min():.3f}, {output.max():.3f}], not its declared [{low:.3f}, {high:.3f}]"
        )


def check_model(spec: BackboneSpec, *, input_size: int | None = None, saved_model: str | None = None):
    """The plugins build the model with `weights=None` (a hub spec: from `saved_model`); it maps
    images to `feature_dim` features, and has the `params` the spec declares.

    `input_size` builds it at another (smaller, faster) size where the architecture allows.
    """
    from zoo.metrics import compiled_forward
    from zoo.models import feature_extractor
    from zoo.weights import ResolvedWeights

    if input_size is not None:
        spec = dataclasses.replace(spec, input_size=input_size)
    try:
        weights = ResolvedWeights(saved_model, "hub") if saved_model else ResolvedWeights(None, "random")
        extractor = feature_extractor(spec, weights)
    except Exception as exc:
        raise AssertionError(f"{spec.name}: building it with weights=None failed: {exc}") from exc
    try:  # traced, as the bench runs it: NumPy in a preprocessing callable works eagerly only
        features = np.asarray(compiled_forward(extractor)(_test_images(spec.input_size)))
    except Exception as exc:
        raise AssertionError(f"{spec.name}: traced, as the bench runs it, it failed: {one_line(exc)}") from exc
    if features.shape != (2, spec.feature_dim):
        raise AssertionError(
            f"{spec.name}: two images gave features of shape {features.shape}, "
            f"not (2, {spec.feature_dim}) as feature_dim declares"
        )
    if not np.all(np.isfinite(features)):
        raise AssertionError(f"{spec.name}: the model gave NaN or infinite features")
    built = extractor.count_params()
    if built != spec.params and input_size is None:  # a smaller build may have fewer (a dense layer's)
        raise AssertionError(
            f"{spec.name}: the spec declares params={spec.params:,}, the built model has {built:,}; set params={built}"
        )
    return extractor


def check_save_load(spec: BackboneSpec, extractor=None, *, input_size: int | None = None) -> None:
    """A classifier on the backbone saves as `.keras` and `keras.saving.load_model` loads it back
    (no `safe_mode=False`, no custom objects) giving the same outputs, so `zoo export` works.

    `extractor` is the feature extractor `check_model` returned; without it one is built.
    """
    import tempfile

    import keras

    from zoo.models import classification_head, classifier

    extractor = extractor if extractor is not None else check_model(spec, input_size=input_size)
    model = classifier(spec, extractor, classification_head(spec.feature_dim, 3))
    images = _test_images(extractor.input_shape[1])
    expected = np.asarray(model(images, training=False))
    with tempfile.TemporaryDirectory(prefix="zoo-check-") as folder:
        path = f"{folder}/classifier.keras"
        try:
            model.save(path)
            loaded = keras.saving.load_model(path)
        except Exception as exc:
            raise AssertionError(
                f"{spec.name}: the classifier does not survive a .keras save and load: {exc}. "
                "Use only serializable Keras layers in your model (custom ones registered with "
                "keras.saving.register_keras_serializable)"
            ) from exc
        outputs = np.asarray(loaded(images, training=False))
    if not np.allclose(outputs, expected, atol=1e-5):
        raise AssertionError(
            f"{spec.name}: after a .keras save and load the classifier's outputs differ by up to "
            f"{np.abs(outputs - expected).max():.2g}: some state is not saved"
        )
