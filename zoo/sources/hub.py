"""`hub`: a TF Hub SavedModel (the handle in `reference`) inside a Keras 3 model, and the
`NAME:hub` variants through which a backbone is offered from TF Hub as well.

The SavedModel carries its own weights, so they are the SavedModel itself, fetched by
zoo.hub's download protocol. Keras 3's `TFSMLayer` calls it, frozen: with trainable=True,
Adam trips over the SavedModel's variable names, and zoo only trains a new head anyway.
Hub image models take pixels in [0, 1]: their specs say preprocessing "unit".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from zoo import hub
from zoo.errors import ZooError
from zoo.progress import Progress, no_progress
from zoo.sources.base import Source
from zoo.spec import BackboneSpec
from zoo.weights import MODES, ResolvedWeights

#: The spec-name suffix of a backbone's TF Hub variant, e.g. `mobilenet_v2:hub`.
VARIANT = "hub"


def hub_variant(spec: BackboneSpec, handle: str) -> BackboneSpec:
    """`spec` from TF Hub as `NAME:hub`: same architecture and sizes, built from the handle's
    SavedModel and fed pixels in [0, 1]."""
    return dataclasses.replace(
        spec,
        name=f"{spec.name}:{VARIANT}",
        source="hub",
        reference=handle,
        preprocessing="unit",
        weights=None,
        description=f"{spec.name} from TF Hub: {handle}",
        build_args={},  # a custom builder's settings: the SavedModel has no use for them
    )


def variant_name(name: str, source: str | None) -> str:
    """The backbone to bench for `name` under `--source`: hub → `NAME:hub`, keras → `NAME`."""
    base = name.split(":")[0]
    if source == "hub":
        return f"{base}:{VARIANT}"
    return base if source == "keras" else name


def select(specs: list[BackboneSpec], source: str | None) -> list[BackboneSpec]:
    """What `--all` benches: the default variants, or every hub / every non-hub backbone."""
    if source == "hub":
        return [spec for spec in specs if spec.source == "hub"]
    if source == "keras":
        return [spec for spec in specs if spec.source != "hub"]
    return [spec for spec in specs if not spec.name.endswith(f":{VARIANT}")]


class Hub(Source):
    name = "hub"
    random_init = False

    def has_pretrained(self, spec: BackboneSpec) -> bool:
        return True  # the SavedModel

    def resolve_weights(self, spec: BackboneSpec, mode: str, progress: Progress = no_progress) -> ResolvedWeights:
        """The SavedModel given with --weights PATH, or the handle's (downloaded if needed)."""
        if mode == "none":
            other = variant_name(spec.name, "keras")
            instead = f"bench {other} for that" if other != spec.name else "use --weights auto or imagenet"
            raise ZooError(
                f"{spec.name} is a TF Hub SavedModel with its own weights, it has no random initialisation; {instead}"
            )
        if mode not in MODES:
            path = hub.check_saved_model(Path(mode).expanduser().resolve(), f"--weights {mode}:")
            return ResolvedWeights(str(path), "hub", f"SavedModel {path}")
        path, origin = hub.resolve(spec.reference, progress)
        return ResolvedWeights(str(path), "hub", f"{origin}: {path}")

    def weights_status(self, spec: BackboneSpec) -> str:
        path, origin = hub.locate(spec.reference)
        return origin if path is None else f"ready ({origin})"

    def describe_weights(self, spec: BackboneSpec) -> dict[str, str]:
        path, _ = hub.locate(spec.reference)
        return {
            "weights": spec.reference,
            "check": "a saved_model.pb in its folder (no checksum)",
            "status": self.weights_status(spec),
            "path": str(path) if path else "",
            "fetch_from": hub.compressed_url(spec.reference) if path is None else "",
        }

    def verify_local(self, spec: BackboneSpec) -> tuple[bool | None, str]:
        path, origin = hub.locate(spec.reference)
        return (None, "not cached") if path is None else (True, f"SavedModel in {origin}: {path}")

    def build(self, spec: BackboneSpec, weights_path: str | None):
        """A Keras 3 model around the local SavedModel: unit-range images → pooled features."""
        import keras

        if weights_path is None:
            raise ZooError(
                f"{spec.name} is a TF Hub SavedModel, which carries its own weights: it cannot be "
                "built with random weights; use --weights auto, or bench the keras variant"
            )
        path = hub.check_saved_model(Path(weights_path), f"{spec.name}: SavedModel")
        layer = keras.layers.TFSMLayer(
            str(path), call_endpoint=_call_endpoint(path), trainable=False, name="hub_saved_model"
        )
        inputs = keras.Input((spec.input_size, spec.input_size, 3), name="images")
        features = _features(layer(inputs), spec)
        return keras.Model(inputs, features, name=f"{spec.name.replace(':', '_')}_hub")


def _call_endpoint(path: Path) -> str:
    """The SavedModel's `serving_default` signature when it has one, else its `__call__`."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((path / hub.SAVED_MODEL_FILE).read_bytes())
    signatures = {name for graph in saved_model.meta_graphs for name in graph.signature_def}
    return "serving_default" if "serving_default" in signatures else "__call__"


def _features(outputs, spec: BackboneSpec):
    """The feature tensor among a signature's named outputs: the one of width feature_dim."""
    if not isinstance(outputs, dict):
        return outputs
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    matching = [value for value in outputs.values() if tuple(value.shape[1:]) == (spec.feature_dim,)]
    if len(matching) != 1:
        shapes = ", ".join(f"{key} {tuple(value.shape)}" for key, value in outputs.items())
        raise ZooError(
            f"{spec.name}: cannot tell which SavedModel output holds the features ({shapes}); "
            f"exactly one should have shape (None, {spec.feature_dim})"
        )
    return matching[0]
