"""Declaring backbones as data: specs from a TOML file a plugin ships, or from a Python mapping.

The public path every plugin may use, zoo's built-ins included (registry.toml):

    [densenet121]                      # the backbone's name
    family = "densenet"
    source = "keras.applications"
    reference = "DenseNet121"
    input_size = 224
    preprocessing = "torch"
    feature_dim = 1024
    params = 7037504
    hub = "https://tfhub.dev/..."      # optional: also declares `densenet121:hub`

    [densenet121.weights]              # optional: zoo.Weights fields
    dataset = "imagenet"               # what they were trained on, as bench rows record them
    file = "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    url = "https://storage.googleapis.com/..."
    md5 = "30ee3e1110167f948a6b9946edeeb738"

Every other key is a `zoo.BackboneSpec` field. What TOML cannot hold (a preprocessing
callable) is given as a keyword override, applied to every backbone of the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.spec import BackboneSpec, Weights

#: The keys of a backbone table that are not BackboneSpec fields.
_HUB_KEY = "hub"
_SPEC_FIELDS = {field.name for field in dataclasses.fields(BackboneSpec)} - {"name", "plugin"}
_WEIGHTS_FIELDS = {field.name for field in dataclasses.fields(Weights)}


def specs_from_toml(path: str | Path, table: str = "", **overrides: Any) -> list[BackboneSpec]:
    """The backbones declared in the TOML file at `path`: one table per backbone.

    `table` names the table (dotted) whose sub-tables are the backbones, when they are not at
    the top level: several plugins may share one file, each reading its own table.
    `overrides` replace a field in every spec (e.g. `preprocessing=my_function`).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(f"cannot read backbone declarations {path}: {exc}; reinstall the plugin") from None
    except tomllib.TOMLDecodeError as exc:
        raise ZooError(f"{path} is not valid TOML ({exc}); fix that line") from None
    backbones: Any = data
    for key in filter(None, table.split(".")):
        backbones = backbones.get(key)
        if not isinstance(backbones, dict):
            raise ZooError(f"{path} has no table [{table}] of backbones")
    return specs_from_mapping(backbones, origin=str(path), **overrides)


def specs_from_mapping(
    backbones: Mapping[str, Mapping[str, Any]], origin: str = "declaration", **overrides: Any
) -> list[BackboneSpec]:
    """The backbones of a mapping {name: {field: value}} laid out as the TOML file is.

    `origin` says in errors where the mapping came from.
    """
    specs = []
    for name, entry in backbones.items():
        if not isinstance(entry, Mapping):
            raise ZooError(f"{origin}: backbone {name!r} must be a table of fields, not {entry!r}")
        fields = dict(entry)
        hub_handle = fields.pop(_HUB_KEY, None)
        unknown = sorted(set(fields) - _SPEC_FIELDS)
        if unknown:
            raise ZooError(
                f"{origin}: backbone {name!r} has unknown field {', '.join(unknown)}; "
                f"the fields are {', '.join(sorted(_SPEC_FIELDS | {_HUB_KEY}))}"
            )
        weights = fields.get("weights")
        if isinstance(weights, Mapping):
            bad = sorted(set(weights) - _WEIGHTS_FIELDS)
            if bad:
                raise ZooError(
                    f"{origin}: backbone {name!r} weights have unknown field {', '.join(bad)}; "
                    f"the fields are {', '.join(sorted(_WEIGHTS_FIELDS))}"
                )
            fields["weights"] = Weights(**weights)
        try:
            spec = BackboneSpec(name=name, **{**fields, **overrides})
        except TypeError as exc:  # a required field is missing
            raise ZooError(f"{origin}: backbone {name!r}: {exc}") from None
        specs.append(spec)
        if hub_handle is not None:
            from zoo.sources.hub import hub_variant

            specs.append(hub_variant(spec, hub_handle))
    return specs
