"""zoo's built-in backbone plugins, installed as the `zoo_plugins` package.

Each module is one family, registered in pyproject.toml under the `zoo.backbones` entry-point
group exactly as a third-party plugin would be; their pins live in registry.toml.
"""
