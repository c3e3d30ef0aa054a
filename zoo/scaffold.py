"""`zoo new-plugin`: write a complete, installable backbone plugin package to start from.

The files are templates in zoo/templates/plugin/ (shipped in the wheel), filled in with
`string.Template`, so they read as the files they become.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from zoo.errors import ZooError

#: Template file → where it goes in the new package ($module is filled in too).
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "plugin.py.tmpl": "$module.py",
    "test_plugin.py.tmpl": "tests/test_$module.py",
}

_NAME = re.compile(r"[a-z][a-z0-9_]*(-[a-z0-9_]+)*")


def identifier(name: str) -> str:
    """The one spelling zoo uses for a new plugin and its backbone: `my-net` becomes `my_net`."""
    if not _NAME.fullmatch(name):
        raise ZooError(f"plugin name {name!r}: use lower case letters, digits, '_' and '-', starting with a letter")
    return name.replace("-", "_")


def new_plugin(name: str, parent: Path) -> list[Path]:
    """Write the plugin package `zoo-NAME` under `parent`; returns the files written.

    The package is `zoo-my-net`, its module `zoo_my_net`; the plugin and its backbone are `my_net`.
    """
    name = identifier(name)
    root = parent / f"zoo-{name.replace('_', '-')}"
    if root.exists() and any(root.iterdir()):
        raise ZooError(f"{root} already exists and is not empty; choose another name or --dir")
    values = {"name": name, "backbone": name, "module": f"zoo_{name}", "dist": root.name}
    templates = resources.files("zoo") / "templates" / "plugin"
    written = []
    for template, target in FILES.items():
        path = root / Template(target).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = templates.joinpath(template).read_text(encoding="utf-8")
        path.write_text(Template(text).substitute(values), encoding="utf-8")
        written.append(path)
    return written
