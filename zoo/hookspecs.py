"""The hooks a zoo plugin can implement: the whole contract between zoo and its plugins.

A plugin is a module (or object) with functions decorated by `zoo.hookimpl` and named like the
specs below. zoo finds it through the `zoo.backbones` entry-point group of an installed package,
or a path in `ZOO_PLUGINS` or `zoo --plugin PATH`. The built-in backbones in `plugins/` use
exactly these hooks, registered through the same entry-point group as anyone else's, and
declare their specs from a TOML file they ship with `zoo.specs_from_toml` (zoo/declare.py).
docs/plugins.md walks through writing one; `zoo.testing` checks one.
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

    Arguments: none. Returns: a list (possibly empty) of specs, written in Python or read from
    a TOML file the plugin ships with `zoo.specs_from_toml(path)` (docs/plugins.md).

    Called once per process, the first time zoo needs the catalog (`zoo list`, `zoo bench`,
    `zoo.get_backbone`, ...). It must be cheap and must not import TensorFlow: specs are plain
    data, and `zoo list` has to answer in a blink. zoo sets each spec's `plugin` field to this
    plugin's name (its entry-point name, or the file stem of a local plugin) and validates it.
    An exception raised here, a result that is not a list of specs, or an invalid spec marks
    this plugin as broken in `zoo plugins` / `zoo list`, with a one-line reason; the other
    plugins, and this plugin's valid specs, still work. A name two plugins both declare is left
    out of the catalog, and asking for it names both plugins.
    """


@hookspec
def zoo_build_backbone(spec: BackboneSpec, weights: str | None) -> Any:
    """Build the Keras model for `spec`, one of this plugin's own `custom` backbones.

    Arguments: `spec` is a spec from the catalog (its `plugin` filled in; `zoo.testing` may
    pass a copy with a smaller `input_size`). `weights` is a local path: the spec's pinned
    `Weights` file, found or downloaded and checked against its hash; or a file the user gave
    with `--weights PATH` (theirs, not checked); or, for a `hub` spec, its SavedModel folder.
    None means random initialisation. A builder only loads what it is given.

    Returns: a Keras model taking a batch of preprocessed images, shape
    (batch, input_size, input_size, 3), to pooled features, shape (batch, feature_dim).
    zoo adds the spec's preprocessing in front, freezes the model, and puts the classification
    head on top, so the model contains neither.

    Called each time zoo builds a backbone: by `zoo bench`, `zoo.create_model` and
    `zoo.testing`, and only then, so import TensorFlow/Keras inside this function. zoo calls
    the builder of the plugin that declared the spec, and no other; it is called only for
    `custom` specs (zoo builds `keras.applications` and `hub` ones itself, zoo/sources/). A
    builder that returns None, or a `custom` spec whose plugin has no builder, fails with an
    error naming the plugin. An exception raised here fails that backbone's bench row, not
    the bench.
    """
