"""The hooks a zoo plugin can implement: the whole contract between zoo and its plugins.

A plugin is a module (or object) with functions decorated by `zoo.hookimpl` and named like the
specs below. The built-in backbones in `plugins/` use exactly these hooks, registered through the
same `zoo.backbones` entry-point group as anyone else's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from zoo.spec import BackboneSpec

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def zoo_backbones() -> list[BackboneSpec]:
    """Return the backbones this plugin provides, as a list of `zoo.BackboneSpec`.

    Called once per process, the first time zoo needs the catalog (`zoo list`, `zoo bench`, ...).
    It must be cheap and must not import TensorFlow: specs are plain data, and `zoo list` has to
    answer in a blink. zoo fills in each spec's `plugin` field and validates it; an invalid spec,
    or an exception raised here, marks this plugin as broken without affecting the others.
    """


@hookspec(firstresult=True)
def zoo_build_backbone(spec: BackboneSpec, weights: str | None) -> Any:
    """Build the Keras model for `spec`, or return None if this plugin does not build it.

    `weights` is the path of a verified local weights file, or None for random initialisation;
    zoo has already found, downloaded and checked it, so a builder only loads it.

    The model takes a batch of preprocessed images, shape (batch, input_size, input_size, 3), and
    returns pooled features, shape (batch, feature_dim). zoo adds the preprocessing in front,
    freezes the model, and puts the classification head on top.

    zoo itself implements this hook for the `keras.applications` and `hub` sources; a plugin
    implements it for its `custom` backbones. The first non-None result wins.
    """
