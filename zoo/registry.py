"""registry.toml: the catalog of pins the built-in plugins read, and the bench defaults."""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.spec import BackboneSpec, Weights


@functools.cache
def load() -> dict[str, Any]:
    """The parsed registry: installed as zoo/registry.toml, at the top of a source checkout."""
    installed = resources.files("zoo") / "registry.toml"
    path = installed if installed.is_file() else Path(__file__).parent.parent / "registry.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))


def bench_defaults() -> dict[str, Any]:
    """Default bench settings: epochs, batch size, learning rate, seed, mirror."""
    return dict(load()["bench"])


def catalog_spec(name: str, **overrides: Any) -> BackboneSpec:
    """The BackboneSpec that registry.toml pins for `name`; keyword arguments replace fields."""
    try:
        entry = dict(load()["backbones"][name])
    except KeyError:
        raise ZooError(f"registry.toml has no backbone {name!r}") from None
    entry.pop("plugin")
    entry.pop("hub", None)
    weights = entry.pop("weights", None)
    fields = {"name": name, **entry, **overrides}
    if weights is not None and "weights" not in overrides:
        fields["weights"] = Weights(**weights)
    return BackboneSpec(**fields)


def catalog_specs(plugin: str, **overrides: Any) -> list[BackboneSpec]:
    """Every backbone registry.toml assigns to the built-in `plugin`, fields overridden alike."""
    return [catalog_spec(name, **overrides) for name, entry in load()["backbones"].items() if entry["plugin"] == plugin]


def hub_specs(plugin: str) -> list[BackboneSpec]:
    """The TF Hub variant `NAME:hub` of every backbone of `plugin` that pins a `hub` handle.

    Same architecture and sizes, but built from the hub's SavedModel (which carries its own
    weights) and fed pixels in [0, 1], as hub image models expect.
    """
    return [
        dataclasses.replace(
            catalog_spec(name),
            name=f"{name}:hub",
            source="hub",
            reference=entry["hub"],
            preprocessing="unit",
            weights=None,
            description=f"{name} from TF Hub: {entry['hub']}",
        )
        for name, entry in load()["backbones"].items()
        if entry["plugin"] == plugin and "hub" in entry
    ]
