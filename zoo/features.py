"""The feature cache: a frozen base's pooled features over one split, computed once, kept on disk.

A frozen base maps the same image to the same features every epoch and every bench, so zoo runs
it once per split and streams the result, batch by batch, into a `.npy` file under
`cache_dir("features")`. The key names what the features are, not where they came from: the
built extractor's architecture (and the code and attributes of its layers that are not Keras'
own), the values of its weights (whatever file or code put them there), the preprocessing as it
computes (a callable by its code and what that reads), the versions of zoo, the plugin and the
libraries that compute (TensorFlow, Keras, NumPy, a package the code calls), the image size and
resize method, and each data file's real path, size and mtime. Editing a builder, a
custom layer, a preprocessing callable, a constant or helper it reads, or a weights file is a
miss; nothing else is. Each entry records a checksum of its array, so a damaged one is found on
load and recomputed rather than served. Converted TFLite extractors (zoo.runtime) are kept here
too, in `tflite/`, under the same identity, and listed and cleared with the features.

Nothing here imports TensorFlow: `zoo cache list|clear` stays instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import os
import re
import sys
import time
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from zoo import atomic
from zoo.cache import cache_dir
from zoo.errors import ZooError
from zoo.hub import SAVED_MODEL_FILE
from zoo.progress import Progress, no_progress
from zoo.spec import PREPROCESSING, Normalization, Preprocessing

#: Bump when the layout or the meaning of cached arrays changes: old entries stop matching.
FORMAT = 2


class DamagedEntry(Exception):
    """A cache entry that exists but cannot be trusted; the message says why in a few words."""


class Unwritable(Exception):
    """The cache could not take an entry (a read-only folder, a full disk); the message says
    why in a few words. The features are still wanted: extract them without the cache."""


def files_fingerprint(files: Iterable[str]) -> str:
    """A cheap hash of a list of files: real path, size and mtime of each, in order. The real
    path: `--data ds` names another folder from another working directory, and the same folder
    reached by a symlink or an absolute path is the same data."""
    digest = hashlib.sha256()
    for name in files:
        stat = os.stat(name)
        digest.update(
            f"{os.path.realpath(name)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode(errors="surrogateescape")
        )
    return digest.hexdigest()


def weights_digest(model) -> str:
    """What a built model's weights are: the sha256 of its variables' values, in order.
    Whatever filled them (a pinned file, --weights PATH, a SavedModel, a file the builder reads
    itself, random init from the bench's seed), the features depend on these values alone; a
    weights file's path, size or dates say nothing of them. 0.1 s for ResNet50V2's 94 MB."""
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(variable.numpy()).data)
    return digest.hexdigest()


def _layers(model) -> list:
    """Every layer of `model` and of the models nested in it, in a stable order."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found += _layers(layer)
    return found


def architecture_digest(model) -> str:
    """A hash of what `model` computes as configured: its (nested) config and its weights'
    shapes, with layer names replaced by their position, so Keras' automatic names
    (`conv2d_7` on the second build in a process) do not change it; the code, class attributes
    and instance attributes of its layers that are not Keras' own (a plugin's custom layer, zoo's
    EfficientNet-Lite port), a Lambda's function and the graph of a SavedModel layer, of which a
    config says nothing (or nothing at all, when a custom layer's get_config fails)."""
    return _architecture_digest(model, set())


def _architecture_digest(model, seen: set[int]) -> str:
    """architecture_digest, not following again what `seen` holds (a layer whose code reads it)."""
    layers = _layers(model)
    positions = {layer.name: f"#{index}" for index, layer in enumerate(layers)}
    positions[model.name] = "#model"

    def canonical(value: Any) -> Any:
        if isinstance(value, dict) and value.get("class_name") == "__lambda__":
            return "lambda"  # marshalled with its file's path and lines; its code is hashed below
        if isinstance(value, dict):
            return {key: canonical(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [canonical(item) for item in value]
        if isinstance(value, str):
            return positions.get(value, value)
        return value

    try:
        config: Any = canonical(model.get_config())
    except Exception:  # a model that cannot describe itself: its layers' kinds and order
        config = [type(layer).__qualname__ for layer in layers]
    shapes = [[str(weight.dtype), list(weight.shape)] for weight in model.weights]
    graphs = [graph for graph in map(_saved_model_graph, layers) if graph]
    code = hashlib.sha256()
    for layer in [model, *layers]:
        _class_digest(type(layer), code, seen)
        for value in vars(layer).values():
            if inspect.isfunction(value) and _package(value) not in _LIBRARIES:
                _function_digest(value, code, seen)
        if _package(type(layer)) not in _LIBRARIES:  # a layer of one's own: what it keeps but its name
            own = _names_in_code(type(layer))  # `self._factor`: private, yet its own
            kept = {
                key: value
                for key, value in vars(layer).items()
                if key != "name" and (not key.startswith("_") or key in own)
            }
            _value_digest(kept, code, _package(type(layer)), seen)
    text = json.dumps([config, shapes, graphs, code.hexdigest()], sort_keys=True, default=repr)
    text = _ADDRESS.sub("", text)
    return hashlib.sha256(text.encode()).hexdigest()


def _parts(member: Any) -> list:
    """What a class attribute holds: a property's functions, a static or class method's function,
    or the value itself."""
    if isinstance(member, property):
        return [member.fget, member.fset, member.fdel]
    return [getattr(member, "__func__", member)]


def _names_in_code(cls: type) -> set[str]:
    """The names the code of `cls` and its bases, those not of a library, reads or sets
    (`self._factor` gives `_factor`): of a layer's private attributes, those its own code keeps
    rather than Keras'."""
    codes = [
        part.__code__
        for klass in cls.__mro__
        if _package(klass) not in _LIBRARIES
        for member in vars(klass).values()
        for part in _parts(member)
        if inspect.isfunction(part)
    ]
    names: set[str] = set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes += [constant for constant in code.co_consts if hasattr(constant, "co_code")]
    return names


def _saved_model_graph(layer) -> str | None:
    """The sha256 of the graph a layer loaded from a SavedModel folder runs (a TFSMLayer's
    saved_model.pb), of which its config names only the folder; None for other layers."""
    folder = getattr(layer, "filepath", None)
    graph = Path(folder) / SAVED_MODEL_FILE if isinstance(folder, str) else None
    return hashlib.sha256(graph.read_bytes()).hexdigest() if graph is not None and graph.is_file() else None


#: An object's address in its repr: it changes from run to run.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: Packages whose code is not hashed: it changes only with their version.
_LIBRARIES = frozenset({"builtins", "keras", "tf_keras", "tensorflow", "tensorflow_hub", "numpy"})
_KERAS = frozenset({"keras", "tf_keras"})
_PLAIN = (int, float, complex, str, bytes, type(None))  # bool is an int


def _package(thing: Any) -> str:
    return (getattr(thing, "__module__", None) or "").partition(".")[0]


def _code_digest(code, digest, docstring: str | None = None) -> list[str]:
    """Feed what a code object computes (its bytecode, constants and names, nested code too)
    into `digest`; file names, line numbers and the function's `docstring` are left out (the
    first constant is the docstring, or None in its place), so moving a function or adding,
    rewording or removing its docstring is no change.
    Returns the names it (and the code nested in it) may look up among its globals."""
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    names = list(code.co_names)
    constants = list(code.co_consts)
    if constants and (constants[0] is None or constants[0] is docstring):
        constants = constants[1:]
    for constant in constants:
        if hasattr(constant, "co_code"):
            names += _code_digest(constant, digest)
        else:
            digest.update(repr(constant).encode())
    return names


def _function_digest(function, digest, seen: set[int]) -> None:
    """Feed what a Python function computes into `digest`: its code, defaults and closure, and
    the globals it reads (a module constant, a helper of its own package, followed the same
    way), so editing any of them is a change."""
    if id(function) in seen:
        return
    seen.add(id(function))
    names = _code_digest(function.__code__, digest, function.__doc__)
    values = [*(function.__defaults__ or ()), *(function.__kwdefaults__ or {}).values()]
    for cell in function.__closure__ or ():
        with contextlib.suppress(ValueError):  # a cell not yet filled
            values.append(cell.cell_contents)
    scope, package, read = function.__globals__, _package(function), dict.fromkeys(names)
    found = [scope[name] for name in read if name in scope]
    modules = set[int]()
    for value in found:  # a module of its package: the names read of it too (constants.MEAN, sub.consts.SCALE)
        if _is_own_module(value, package) and id(value) not in modules:
            modules.add(id(value))
            found += [getattr(value, name) for name in read if hasattr(value, name)]
    for value in values + found:
        _value_digest(value, digest, package, seen)


def _is_keras_layer(value: Any) -> bool:
    """A Keras layer or model (found without importing Keras, which may not be loaded), not
    another Keras object with a config (an initializer: no weights, nothing it computes here)."""
    keras = any(_package(klass) in _KERAS for klass in type(value).__mro__)
    return keras and callable(getattr(value, "get_config", None)) and hasattr(value, "weights")


@functools.cache
def _version(package: str) -> str:
    """The version of the distribution that installs the top-level `package` ("" if none does:
    the standard library's modules); a library's code changes with it."""
    from importlib.metadata import packages_distributions, version

    names = packages_distributions().get(package, [])
    with contextlib.suppress(Exception):
        return " ".join(f"{name} {version(name)}" for name in sorted(set(names)))
    return ""


def _named(thing: Any) -> str:
    """A library's function or object by its module, name and version: which one it is, not
    what it computes."""
    name = getattr(thing, "__qualname__", None) or getattr(thing, "__name__", type(thing).__qualname__)
    module = getattr(thing, "__module__", None) or _package(type(thing))
    return f"{module}.{name} {_version(module.partition('.')[0])}"


def _is_own_module(value: Any, package: str) -> bool:
    return inspect.ismodule(value) and _own(value.__name__.partition(".")[0], package)


@functools.cache
def _own(other: str, package: str) -> bool:
    """Whether the code of the top-level package `other` is known by its code when `package`'s
    reads it: it is `package`, or a module of the same distribution (a plugin's second module)
    or of none that is not the standard library's (a helper module beside it on sys.path), of
    which no version says anything; else its version does."""
    if other == package:
        return True
    if not other or other in _LIBRARIES or other in sys.stdlib_module_names:
        return False
    return _version(other) in ("", _version(package))


def _value_digest(value: Any, digest, package: str, seen: set[int]) -> None:
    """Feed a value some code reads: plain values, arrays and tensors by value, containers item
    by item, functions and classes of `package` by their code, another's function by its name,
    a Keras layer as a backbone is (architecture and weights), objects of `package` by their
    class and attributes, another package's module by its version."""
    if isinstance(value, (*_PLAIN, np.generic)):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, np.ndarray):
        digest.update(f"array:{value.dtype}:{value.shape};".encode() + np.ascontiguousarray(value).tobytes())
    elif _package(type(value)) in ("tensorflow", "keras") and callable(getattr(value, "numpy", None)):
        _value_digest(np.asarray(value.numpy()), digest, package, seen)  # a tf.constant, a Variable
    elif isinstance(value, (tuple, list, dict, set, frozenset)) and id(value) not in seen:
        seen.add(id(value))  # while inside it only: a container that holds itself ends there
        items = list(value.items() if isinstance(value, dict) else value)
        if not isinstance(value, (tuple, list)):
            items.sort(key=lambda item: _ADDRESS.sub("", repr(item)))  # no order of their own
        digest.update(f"{type(value).__name__}:{len(items)}(".encode())
        for item in items:
            _value_digest(item, digest, package, seen)
        digest.update(b")")
        seen.discard(id(value))
    elif inspect.isfunction(value) and _own(_package(value), package):
        _function_digest(value, digest, seen)
    elif isinstance(value, type) and _own(_package(value), package):
        _class_digest(value, digest, seen)
    elif _wrapped(value) is not None and _own(_package(_wrapped(value)), package):  # @functools.cache
        _function_digest(_wrapped(value), digest, seen)
    elif inspect.isroutine(value) or isinstance(value, np.ufunc):  # another's function: which one
        digest.update(f"{_named(value)};".encode())
    elif inspect.ismodule(value):  # another package's module (helpers.normalize): by its version
        digest.update(f"module:{value.__name__} {_version(value.__name__.partition('.')[0])};".encode())
    elif _is_keras_layer(value) and id(value) not in seen:  # Keras' own or one's own subclass
        seen.add(id(value))
        computes = f"{type(value).__qualname__}:{_architecture_digest(value, seen)}:{weights_digest(value)};"
        digest.update(computes.encode())
    elif id(value) not in seen and (_own(_package(type(value)), package) or _is_record(value)):  # a config object
        seen.add(id(value))
        _class_digest(type(value), digest, seen)
        fields = {**getattr(value, "__dict__", {}), **_slotted(value)}
        digest.update(f"{_named(type(value))}:".encode())
        _value_digest(fields, digest, package, seen)


def _slotted(value: Any) -> dict:
    """The attributes an object keeps in `__slots__` (a dataclass(slots=True), a class that
    declares them), which have no `__dict__`."""
    names = []
    for klass in type(value).__mro__:
        slots = vars(klass).get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    kept = [name for name in names if name not in ("__dict__", "__weakref__") and hasattr(value, name)]
    return {name: getattr(value, name) for name in kept}


def _wrapped(value: Any) -> Any:
    """The function under another package's wrapper object (tf.function, functools.cache), which
    adds nothing to what it computes; None for anything else. A decorator's plain function is not
    one: its own code and closure (what it wraps, its arguments) say what it computes."""
    inner = getattr(value, "__wrapped__", None)
    if inspect.isfunction(value) or not inspect.isfunction(inner) or _package(type(value)) == _package(inner):
        return None
    return inner


def _is_record(value: Any) -> bool:
    """An object that only holds values (a SimpleNamespace, a dataclass of another package), read
    by its fields; another package's other objects are left to its version."""
    return isinstance(value, types.SimpleNamespace) or (dataclasses.is_dataclass(value) and not isinstance(value, type))


def _class_digest(cls: type, digest, seen: set[int]) -> None:
    """Feed what `cls` and its bases, those not of a library (_LIBRARIES), define: methods and
    properties by their code, class attributes (`FACTOR = 3.0`) by value; not what Python keeps
    of a class (`__module__`, `__doc__`, ...)."""
    for klass in cls.__mro__:
        if id(klass) in seen or _package(klass) in _LIBRARIES:
            continue
        seen.add(id(klass))
        for name, member in sorted(vars(klass).items()):
            parts = _parts(member)
            if name.startswith("__") and name.endswith("__") and not inspect.isfunction(parts[0]):
                continue
            digest.update(f"{klass.__qualname__}.{name};".encode())
            for part in parts:
                if inspect.isfunction(part):
                    _function_digest(part, digest, seen)
                else:
                    _value_digest(part, digest, _package(klass), seen)


def preprocessing_identity(preprocessing: Preprocessing) -> str:
    """The preprocessing as it computes: a named kind or a Normalization by its constants, a
    callable by its code and what that reads (_function_digest), so editing its body, a constant
    or a helper of its module is a miss."""
    if isinstance(preprocessing, str):
        preprocessing = PREPROCESSING[preprocessing]
    if isinstance(preprocessing, Normalization):
        return f"normalize:mean={preprocessing.mean!r}:std={preprocessing.std!r}:bgr={preprocessing.bgr}"
    function: Any = preprocessing
    digest, seen, arguments = hashlib.sha256(), set[int](), list[Any]()
    while True:  # down to the code: through partials, bound methods and a library's wrapper (tf.function)
        if isinstance(function, functools.partial):
            arguments += [function.args, function.keywords]
            function = function.func
        elif inspect.ismethod(function):
            arguments.append(function.__self__)  # its object: the class attributes `self.X` reads, and its own
            function = function.__func__
        elif _wrapped(function) is not None:
            function = _wrapped(function)
        else:
            break
    if inspect.isfunction(function):
        _function_digest(function, digest, seen)
    elif _package(type(function)) not in _LIBRARIES or _is_keras_layer(function):  # an object, called
        _value_digest(function, digest, _package(type(function)), seen)
    else:  # a library's function or object, by its name
        digest.update(_named(function).encode())
    _value_digest(arguments, digest, _package(function), seen)
    return "callable:" + digest.hexdigest()


def identity(spec, extractor) -> dict:
    """Everything besides the image files that the features of `extractor`, built from `spec`,
    depend on (see the module docstring)."""
    from zoo import plugin_manager

    versions = {info.name: info.version for info in plugin_manager.plugin_manager()[1]}
    return {
        "backbone": spec.name,
        "source": spec.source,
        "reference": spec.reference,
        "plugin": f"{spec.plugin} {versions.get(spec.plugin, '')}",
        "zoo": _version("zoo"),
        # What decodes, resizes and runs the model: an upgrade may change their numbers.
        "libraries": [_version(package) for package in ("tensorflow", "keras", "numpy")],
        "architecture": architecture_digest(extractor),
        "weights": weights_digest(extractor),
        "preprocessing": preprocessing_identity(spec.preprocessing),
        "input_size": spec.input_size,
        "interpolation": spec.interpolation,
    }


_UNKNOWN = object()


def _measure_path(what: str, key: str) -> Path:
    return cache_dir("features", "measures") / f"{what}-{key[:24]}.json"


def recall(what: str, key: str, default: Any = None) -> Any:
    """A measurement kept beside the features under `key` (see `remember`), or `default`."""
    try:
        return json.loads(_measure_path(what, key).read_text(encoding="utf-8"))["value"]
    except (OSError, ValueError, KeyError, TypeError):  # not measured yet, or a damaged record
        return default


def remember(what: str, key: str, value: Any, backbone: str) -> None:
    """Keep a measurement that depends only on what `key` names (e.g. a model's FLOPs on its
    architecture digest) beside the features, as JSON, with the backbone it was made for (`zoo
    cache clear --backbone` forgets it too); where the cache cannot be written, it is measured
    again next time."""
    with contextlib.suppress(OSError):
        atomic.write_text(_measure_path(what, key), json.dumps({"value": value, "backbone": backbone}))


def remembered(what: str, key: str, compute: Callable[[], Any], backbone: str) -> Any:
    """The measurement kept under `key`, computed and kept first if there is none."""
    value = recall(what, key, _UNKNOWN)
    if value is _UNKNOWN:
        value = compute()
        remember(what, key, value, backbone)
    return value


def _measures_of(backbone: str) -> list[dict]:
    """The measurements kept for `backbone` (see `remember`), as records `clear` can filter."""
    found = []
    for path in cache_dir("features", "measures", create=False).glob("*.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads(path.read_text(encoding="utf-8")).get("backbone") == backbone:
                found.append({"backbone": backbone, "created": path.stat().st_mtime, "files": [str(path)]})
    return found


def key(identity: dict, **parts: Any) -> str:
    """A cache key: the backbone's identity (see identity()) plus what else the entry depends on."""
    named = {"format": FORMAT, **identity, **parts}
    return hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()[:24]


def feature_key(identity: dict, files: Iterable[str]) -> str:
    """The cache key of one split's features: the backbone's identity plus the files' fingerprint."""
    return key(identity, files=files_fingerprint(files))


def _paths(backbone: str, split: str, key: str) -> tuple[Path, Path]:
    stem = f"{backbone.replace(':', '_')}-{split}-{key}"
    folder = cache_dir("features")
    return folder / f"{stem}.npy", folder / f"{stem}.json"


#: Where converted extractors (zoo.runtime) are kept, a subfolder listed and cleared with the features.
MODELS = "tflite"


def _model_paths(backbone: str, key: str) -> tuple[Path, Path]:
    stem = f"{backbone.replace(':', '_')}-{key}"
    folder = cache_dir("features", MODELS)
    return folder / f"{stem}.tflite", folder / f"{stem}.json"


def load_model(backbone: str, key: str) -> bytes | None:
    """The converted TFLite extractor kept under `key`, or None when there is none. Raises
    DamagedEntry (and deletes the entry) when it is unreadable or not what was written."""
    model_path, meta_path = _model_paths(backbone, key)
    if not (model_path.is_file() and meta_path.is_file()):
        return None
    try:
        content = model_path.read_bytes()
        if _read_meta(meta_path).get("checksum") != hashlib.sha256(content).hexdigest():
            raise ValueError("its checksum does not match: the file was overwritten or garbled")
    except (OSError, ValueError) as exc:
        discard_model(backbone, key)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DamagedEntry(f"damaged TFLite cache entry {model_path.name} ({reason}); converted again") from None
    return content


def store_model(backbone: str, key: str, content: bytes, meta: dict) -> None:
    """Keep a converted TFLite extractor under `key`, with its checksum; where the cache cannot
    be written, it is converted again next time."""
    model_path, meta_path = _model_paths(backbone, key)
    record = {"backbone": backbone, "kind": "tflite", "key": key, "created": time.time(), **meta}
    record["checksum"] = hashlib.sha256(content).hexdigest()
    with contextlib.suppress(OSError):
        with atomic.atomic_path(model_path) as temporary:
            temporary.write_bytes(content)
        atomic.write_text(meta_path, json.dumps(record, indent=1))


def discard_model(backbone: str, key: str) -> None:
    """Delete a converted extractor's entry (one the interpreter could not load, say)."""
    for path in _model_paths(backbone, key):
        path.unlink(missing_ok=True)


def checksum(array: np.ndarray) -> str:
    """The sha256 of an array's float32 rows, read a block of rows at a time."""
    digest = hashlib.sha256()
    step = max(1, (1 << 24) // max(1, array[0].nbytes if len(array) else 1))
    for start in range(0, len(array), step):
        digest.update(np.ascontiguousarray(array[start : start + step], dtype=np.float32).tobytes())
    return digest.hexdigest()


def _read_meta(path: Path) -> dict:
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError(f"its record is {type(record).__name__}, not an object")
    return record


def load(backbone: str, split: str, key: str, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """The cached features for this key, memory-mapped read-only, or None when there are none.

    Raises DamagedEntry (and deletes the entry, so the next store replaces it) when the entry is
    unreadable, not of `shape`, or not what was written (its checksum differs).
    """
    array_path, meta_path = _paths(backbone, split, key)
    if not (array_path.is_file() and meta_path.is_file()):
        return None
    try:
        record = _read_meta(meta_path)
        array = np.load(array_path, mmap_mode="r")
        if array.ndim != 2 or (shape is not None and array.shape != tuple(shape)):
            expected = f"({shape[0]}, {shape[1]})" if shape is not None else "2 dimensions"
            raise ValueError(f"it holds features of shape {array.shape}, expected {expected}")
        if [record.get("count"), record.get("dim")] != list(array.shape):  # what `zoo cache list` shows
            raise ValueError(f"its record says {record.get('count')}x{record.get('dim')}, the file holds {array.shape}")
        if record.get("checksum") != checksum(array):
            raise ValueError("its checksum does not match: the file was overwritten or garbled")
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
        array_path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DamagedEntry(f"damaged feature cache entry {array_path.name} ({reason}); recomputed") from None
    return array


def _partial_path(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}.{os.getpid()}.partial")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def partials() -> list[dict]:
    """The files in the cache that belong to one process while it runs: half-written entries
    (`.NAME.PID.partial`) and decoded images too many for memory (`decoded/KEY.PID.npy`, zoo.data).
    Each with its path, size, process and whether that still runs (one that is gone was killed)."""
    found = []
    own = [*cache_dir("features", create=False).glob(".*.partial"), *cache_dir("decoded", create=False).glob("*.npy")]
    for path in own:
        pid_text = path.name.rsplit(".", 2)[-2]
        pid = int(pid_text) if pid_text.isdigit() else 0
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append(
            {
                "path": str(path),
                "pid": pid,
                "running": pid > 0 and _pid_alive(pid),
                "bytes": stat.st_size,
                "created": stat.st_mtime,
            }
        )
    return found


def remove_stale_partials() -> int:
    """Delete the files of `partials()` whose process is gone; returns how many."""
    stale = [Path(item["path"]) for item in partials() if not item["running"]]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def extract(
    batches: Iterable,
    forward: Callable,
    count: int,
    dim: int,
    destination: Path,
    progress: Progress = no_progress,
    step: str = "features",
) -> np.ndarray:
    """Run `forward` over `batches` and stream the rows into a new .npy file at `destination`.

    Memory holds one batch at a time. The file appears only when complete (temp + rename), so an
    interrupted extraction never leaves a cache entry that looks valid.
    """
    partial = _partial_path(destination)
    try:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(count, dim))
        done = 0
        for batch in batches:
            rows = np.asarray(forward(batch), dtype=np.float32)
            if not np.isfinite(rows).all():  # a head trained on them learns nothing, yet scores
                raise ZooError(
                    f"the backbone gives NaN or inf features for images {done + 1}-{done + len(rows)} of "
                    f"{count}; its model or preprocessing must compute finite numbers (a division by zero?)"
                )
            array[done : done + len(rows)] = rows
            done += len(rows)
            progress(step, done, count)
        if done != count:
            raise RuntimeError(f"extracted {done} feature rows, expected {count}")
        array.flush()
        del array
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return np.load(destination, mmap_mode="r")


def store(backbone: str, split: str, key: str, meta: dict, run: Callable[[Path], np.ndarray]) -> np.ndarray:
    """Extract into the cache entry for `key` with `run(destination)`, then record its meta data
    and checksum. Half-written entries of killed runs are cleared away first. Unwritable where
    the cache cannot take the entry (an error reading the images is raised as it is)."""
    array_path, meta_path = _paths(backbone, split, key)
    try:
        remove_stale_partials()
        features = run(array_path)
        record = {"backbone": backbone, "split": split, "key": key, "created": time.time(), **meta}
        record.update(count=int(features.shape[0]), dim=int(features.shape[1]), checksum=checksum(features))
        atomic.write_text(meta_path, json.dumps(record, indent=1))
    except OSError as exc:
        folder = array_path.parent.resolve()
        names = [name for name in (exc.filename, exc.filename2) if isinstance(name, str)]
        if not any(Path(name).resolve().is_relative_to(folder) for name in names):
            raise
        reason = exc.strerror or type(exc).__name__
        raise Unwritable(f"cannot write the feature cache in {folder} ({reason}); extracted without it") from None
    return features


#: An entry's file name (_paths, _model_paths): backbone, split (none for a model), key.
_STEM = re.compile(r"^(?P<backbone>.+?)(?:-(?P<split>(?:train|test)(?:-mirrored)?))?-(?P<key>[0-9a-f]+)$")


def _records(folder: Path, suffix: str) -> list[dict]:
    """The meta data of every entry in `folder` (its data file ends in `suffix`) plus its size in
    bytes and its files, newest first. A record that cannot be read, or a data file without one,
    is listed as damaged (so `clear` can remove it; the next bench recomputes it); a `created`
    that is not a time is replaced by the record file's mtime."""
    found = []
    for meta_path in folder.glob("*.json"):
        data_path = meta_path.with_suffix(suffix)
        try:
            record = _read_meta(meta_path)
        except (OSError, ValueError) as exc:
            record = {"backbone": "?", "split": "?", "damaged": str(exc).splitlines()[0] if str(exc) else "unreadable"}
        try:
            stat = meta_path.stat()
        except OSError:
            continue
        created = record.get("created")
        if not isinstance(created, (int, float)) or isinstance(created, bool):
            record["created"] = stat.st_mtime
        record["bytes"] = data_path.stat().st_size if data_path.is_file() else 0
        record["files"] = [str(data_path), str(meta_path)]
        found.append(record)
    for data_path in folder.glob(f"*{suffix}"):  # a data file whose record is gone: listed, so clear finds it
        parts = _STEM.match(data_path.stem)
        if data_path.with_suffix(".json").exists() or parts is None:
            continue
        with contextlib.suppress(OSError):
            stat = data_path.stat()
            record = {"backbone": parts["backbone"], "split": parts["split"] or "?", "damaged": "no record"}
            found.append({**record, "created": stat.st_mtime, "bytes": stat.st_size, "files": [str(data_path)]})
    return sorted(found, key=lambda record: -record["created"])


def entries() -> list[dict]:
    """Every cached split's features: meta data, size in bytes and files, newest first."""
    return _records(cache_dir("features", create=False), ".npy")


def models() -> list[dict]:
    """Every converted TFLite extractor kept by zoo.runtime, the same way."""
    return _records(cache_dir("features", MODELS, create=False), ".tflite")


def dataset_name(folder: str | Path) -> str:
    """How an entry names the dataset folder it is for (its `dataset`): the folder resolved."""
    return str(Path(folder).expanduser().resolve())


def clear(
    backbone: str | None = None, dataset: str | Path | None = None, older_than: float | None = None
) -> tuple[int, int]:
    """Delete cached features and converted extractors: all, or those of one backbone, one dataset
    folder (converted extractors belong to none), or older than `older_than` seconds (the filters
    combine); returns (files removed, bytes freed). Half-written
    files of killed runs go too; those of a run in progress stay."""
    folder = dataset and dataset_name(dataset)
    now = time.time()
    doomed = []
    measures = _measures_of(backbone) if backbone is not None and not folder else []  # they are of no dataset
    for record in entries() + models() + measures:
        if backbone is not None and record.get("backbone") != backbone:
            continue
        if folder and record.get("dataset") != folder:
            continue
        if older_than is not None and now - record["created"] < older_than:
            continue
        doomed += record["files"]
    doomed += [item["path"] for item in partials() if not item["running"]]
    if backbone is None and not folder and older_than is None:  # everything: arrays without a record too
        root = cache_dir("features", create=False)
        leftovers = [*root.glob("*.npy"), *root.glob("measures/*.json"), *root.glob(f"{MODELS}/*.tflite")]
        doomed += [str(path) for path in leftovers]
    removed = freed = 0
    for name in dict.fromkeys(doomed):
        path = Path(name)
        if path.is_file():
            freed += path.stat().st_size
            path.unlink()
            removed += 1
    return removed, freed
