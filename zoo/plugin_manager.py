"""Finding plugins and the backbones they provide.

Every backbone, built-in or not, arrives the same way: a module registered with one pluggy
PluginManager, found through the `zoo.backbones` entry-point group or a path in `ZOO_PLUGINS`.
A plugin that fails to import, raises (SystemExit included: only Ctrl-C gets through), or
returns a bad spec is recorded as broken with a one-line reason and its traceback; the others
are unaffected.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pluggy

from zoo import config, hookspecs
from zoo.errors import ZooError, one_line
from zoo.spec import BackboneSpec

ENTRY_POINT_GROUP = "zoo.backbones"


@dataclass
class PluginInfo:
    """One plugin as `zoo plugins` shows it; `error` is set when it is broken."""

    name: str
    version: str
    origin: str
    hooks: list[str] = field(default_factory=list)
    error: str = ""
    traceback: str = ""  # of the error, for --debug
    #: How a plugin file or folder was given ("--plugin" or "ZOO_PLUGINS"); "" for an entry point.
    given_by: str = ""
    #: The installed distribution an entry point comes from, as pip names it.
    distribution: str = ""

    def fail(self, exc: BaseException) -> None:
        """Mark this plugin broken by `exc`: a one-line reason, and the traceback for --debug.
        A file's module is named by its path: the name it was imported under is zoo's own."""
        self.error = one_line(exc)
        if self.given_by:
            self.error = self.error.replace(_module_name(Path(self.origin)), self.origin)
        self.traceback = "".join(traceback.format_exception(exc))

    def how_to_fix(self, name_works: bool) -> str:
        """What to do about this plugin being broken, for where it came from; `name_works` when
        another plugin of its name works (disabling the name would disable that one too)."""
        if self.given_by == "--plugin":
            return f"fix {self.origin}, or drop --plugin {self.origin}"
        if self.given_by:
            return f"fix {self.origin}, or take it out of {self.given_by}"
        return "fix or uninstall it" + ("" if name_works else f", or set ZOO_DISABLE_PLUGINS={self.name}")


@dataclass
class Catalog:
    """Every valid backbone by name, every plugin, and the names two plugins both claim."""

    backbones: dict[str, BackboneSpec]
    plugins: list[PluginInfo]
    conflicts: dict[str, list[str]]
    #: Installed plugins the settings leave out (plugins.load, plugins.disable).
    left_out: list[str] = field(default_factory=list)
    #: Names those settings give that no installed plugin has (a typo, say), by environment variable.
    unmatched: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> BackboneSpec:
        """The backbone called `name`, or a ZooError that says what to type instead."""
        if name in self.backbones:
            return self.backbones[name]
        if name in self.conflicts:
            claimants = " and ".join(self.conflicts[name])
            raise ZooError(
                f"backbone {name!r} is declared by both {claimants}; disable one with ZOO_DISABLE_PLUGINS=<plugin>"
            )
        close = difflib.get_close_matches(name, self.backbones, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `zoo list`"
        broken = [info for info in self.plugins if info.error]
        if broken:  # it may be one of theirs, whatever else the name is close to
            failed = "; ".join(f"plugin {info.name} failed to load: {info.error}" for info in broken)
            failed += " (it may declare this backbone: fix it, or see `zoo --debug list`)"
            hint = f"{hint}; {failed}" if close else failed
        if self.left_out:
            hint += (
                f"; plugins {', '.join(self.left_out)} are not loaded (ZOO_LOAD_PLUGINS, ZOO_DISABLE_PLUGINS): "
                "it may be one of theirs"
            )
        raise ZooError(f"unknown backbone {name!r}: {hint}")


def _module_name(path: Path) -> str:
    """The name a plugin file or folder is imported under: one of its own, clashing with no module."""
    return f"zoo_local_plugin_{path.stem}"


def _import_file(path: Path) -> ModuleType:
    """Import a plugin from a .py file or a package folder, under a name of its own."""
    target = path / "__init__.py" if path.is_dir() else path
    if not path.exists():
        raise ZooError(f"plugin path {path}: no such file or folder")
    if not target.is_file():
        raise ZooError(f"plugin path {path} is neither a .py file nor a package folder")
    module_name = _module_name(path)
    package_path = [str(path)] if path.is_dir() else None  # so a folder's relative imports work
    spec = importlib.util.spec_from_file_location(module_name, target, submodule_search_locations=package_path)
    if spec is None or spec.loader is None:
        raise ZooError(f"plugin path {path} cannot be imported as Python; give a .py file or a package folder")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


#: Plugin files or folders added for this process, e.g. by `zoo --plugin PATH`.
_extra_paths: list[str] = []


def _candidates() -> list[tuple[PluginInfo, Callable[[], object]]]:
    """Every plugin on offer, before any is imported, with what imports it."""
    found: list[tuple[PluginInfo, Callable[[], object]]] = []
    # zoo's own first: another package cannot take a built-in's name, whatever the install order
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=_not_zoo_own):
        dist = entry_point.dist
        version = dist.version if dist else ""
        origin = f"{dist.name} (entry point)" if dist else "entry point"
        info = PluginInfo(entry_point.name, version, origin, distribution=dist.name if dist else "")
        found.append((info, entry_point.load))
    given = [(raw, "ZOO_PLUGINS") for raw in os.environ.get("ZOO_PLUGINS", "").split(os.pathsep)]
    for raw, given_by in given + [(raw, "--plugin") for raw in _extra_paths]:
        if raw:
            path = Path(raw).expanduser()
            found.append(
                (PluginInfo(path.stem, "", str(path), given_by=given_by), functools.partial(_import_file, path))
            )
    return found


def _not_zoo_own(entry_point: metadata.EntryPoint) -> bool:
    return not (entry_point.dist and entry_point.dist.name == "zoo")


def add_plugin_path(path: str) -> None:
    """Load the plugin at `path` too (before the catalog is first built)."""
    _extra_paths.append(path)
    plugin_manager.cache_clear()
    catalog.cache_clear()


def child_environment() -> dict[str, str]:
    """This process's environment with the plugin paths added to it (`zoo --plugin PATH`) in
    ZOO_PLUGINS, so a child process of zoo's finds the same plugins."""
    paths = [path for path in os.environ.get("ZOO_PLUGINS", "").split(os.pathsep) if path] + _extra_paths
    return {**os.environ, "ZOO_PLUGINS": os.pathsep.join(paths)}


@functools.cache
def plugin_manager() -> tuple[pluggy.PluginManager, tuple[PluginInfo, ...]]:
    """The one PluginManager, with every allowed plugin registered, and what became of each."""
    manager = pluggy.PluginManager("zoo")
    manager.add_hookspecs(hookspecs)
    allowed = config.get("plugins.load")
    denied = config.get("plugins.disable")
    infos: list[PluginInfo] = []
    for info, load in _candidates():
        name = info.name
        if name in denied or (allowed is not None and name not in allowed):
            continue
        taken = next((other.origin for other in infos if other.name == name and not other.error), None)
        infos.append(info)
        try:
            if taken:  # the first keeps its name and works; this one is left out, and says why
                rename = (
                    f"{info.origin} (a plugin file is named by its file)" if info.given_by else "this one's entry point"
                )
                raise ZooError(f"its name {name!r} is taken by the plugin from {taken}; rename {rename}")
            _register(manager, load(), name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin, even one calling sys.exit, must not take the others down
            info.fail(exc)
    for info in infos:
        plugin = manager.get_plugin(info.name)
        if plugin is not None:
            info.hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or ())
    return manager, tuple(infos)


def _register(manager: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register `plugin`, refusing the two silent mistakes: no hook at all, or a misspelt one."""
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:  # its first line names the hook, its last says what is wrong
        lines = str(exc).splitlines()
        raise ZooError(f"{lines[0]}: {lines[-1]}" if len(lines) > 1 else str(exc)) from exc
    callers = manager.get_hookcallers(plugin) or []
    unknown = sorted(caller.name for caller in callers if caller.spec is None)
    if unknown or not callers:
        manager.unregister(plugin)
        hooks = ", ".join(hook for hook in dir(hookspecs) if hook.startswith("zoo_"))
        found = f"has unknown hook {', '.join(unknown)}" if unknown else "implements no hook"
        raise ZooError(f"{found}; zoo's hooks are {hooks}, each decorated with @zoo.hookimpl")


@functools.cache
def catalog() -> Catalog:
    """Call every plugin's `zoo_backbones` hook, one at a time, and validate what comes back."""
    manager, infos = plugin_manager()
    by_name = {info.name: info for info in infos}
    claims: dict[str, list[BackboneSpec]] = {}
    for impl in manager.hook.zoo_backbones.get_hookimpls():
        info = by_name[impl.plugin_name]
        try:
            specs = impl.function()
            if not isinstance(specs, (list, tuple)):
                raise ZooError(f"zoo_backbones returned {specs!r}, not a list of zoo.BackboneSpec")
            for spec in specs:
                if not isinstance(spec, BackboneSpec):
                    raise ZooError(f"returned {type(spec).__name__}, not a zoo.BackboneSpec")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            info.fail(exc)
            continue
        for spec in specs:
            spec = dataclasses.replace(spec, plugin=impl.plugin_name)
            try:
                spec.validate()
            except Exception as exc:  # validate's ZooError, or a field of a type it did not foresee
                info.fail(exc)
                continue
            claims.setdefault(spec.name, []).append(spec)
    backbones = {name: specs[0] for name, specs in claims.items() if len(specs) == 1}
    conflicts = {name: [spec.plugin for spec in specs] for name, specs in claims.items() if len(specs) > 1}
    installed = {info.name for info, _ in _candidates()}
    allowed, denied = config.get("plugins.load"), config.get("plugins.disable")
    left_out = sorted(name for name in installed if name in denied or (allowed is not None and name not in allowed))
    given = {"ZOO_LOAD_PLUGINS": allowed or [], "ZOO_DISABLE_PLUGINS": denied}
    unmatched = {variable: sorted(set(names) - installed) for variable, names in given.items()}
    unmatched = {variable: names for variable, names in unmatched.items() if names}
    return Catalog(backbones, list(infos), conflicts, left_out, unmatched)


def loaded_from(name: str) -> dict[str, str]:
    """Where the working plugin `name` was loaded from, as a saved classifier records it to say
    what to install where that plugin is missing: its distribution, or its file; {} if neither."""
    info = next((info for info in catalog().plugins if info.name == name and not info.error), None)
    if info is not None and info.given_by:
        return {"file": str(Path(info.origin).resolve())}
    return {"distribution": info.distribution} if info is not None and info.distribution else {}


def build_backbone(spec: BackboneSpec, weights: str | None):
    """Build `spec` with its source kind: zoo's own builder for `keras.applications` and `hub`,
    the declaring plugin's `zoo_build_backbone` for `custom` (zoo.sources)."""
    from zoo.sources import source_of

    return source_of(spec).build(spec, weights)


def call_plugin_builder(spec: BackboneSpec, weights: str | None):
    """Call the `zoo_build_backbone` of the plugin that declared `spec`, and only that one."""
    manager, _ = plugin_manager()
    impls = [impl for impl in manager.hook.zoo_build_backbone.get_hookimpls() if impl.plugin_name == spec.plugin]
    if not impls:
        raise ZooError(
            f"no plugin builds backbone {spec.name!r} (source {spec.source!r}); "
            f"plugin {spec.plugin} must implement zoo_build_backbone"
        )
    arguments = {"spec": spec, "weights": weights}
    try:
        model = impls[0].function(*(arguments[name] for name in impls[0].argnames))
    except (ZooError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # a plugin's bug: name the plugin, keep the cause for --debug
        raise ZooError(f"plugin {spec.plugin}'s zoo_build_backbone failed for {spec.name}: {one_line(exc)}") from exc
    if model is None:
        raise ZooError(
            f"plugin {spec.plugin} declares backbone {spec.name!r} but its zoo_build_backbone "
            "returned None for it; that builder must return the model"
        )
    return model
