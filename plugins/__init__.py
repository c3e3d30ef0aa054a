"""zoo's built-in backbone plugins, installed as the `zoo_plugins` package.

Each module is one family, registered in pyproject.toml under the `zoo.backbones` entry-point
group exactly as a third-party plugin would be. They share one catalog, registry.toml, shipped
beside them: each declares the backbones of the table named after it, through the public
`zoo.specs_from_toml`.
"""

from pathlib import Path
from typing import Any

from zoo import BackboneSpec, specs_from_toml

#: The built-ins' catalog: what each backbone is and the weights it pins.
REGISTRY = Path(__file__).with_name("registry.toml")


def declared(module_file: str, **overrides: Any) -> list[BackboneSpec]:
    """The specs registry.toml declares for the plugin module at `module_file` (its `__file__`)."""
    return specs_from_toml(REGISTRY, table=Path(module_file).stem, **overrides)
