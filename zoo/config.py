"""User settings: each declared once here, set in the user config file or by its environment variable.

The file is TOML at the platform's config location (`zoo config` prints it; `ZOO_CONFIG`
gives another path), with one table per section:

    [weights]
    mirror = "https://mirror.example.org/keras-weights"

    [bench]
    epochs = 10

An environment variable beats the file, the file beats the default. The package itself holds
no user settings, so nothing a user sets is lost on upgrade. `zoo config` shows every
setting's effective value and where it came from.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from zoo.errors import ZooError

CONFIG_ENV = "ZOO_CONFIG"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value.strip()


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in _TRUE + _FALSE:
        raise ValueError
    return word in _TRUE


#: How `zoo bench` may extract features (zoo.runtime says what each means).
RUNTIMES = ("auto", "tf", "tflite")


def _choice(words: tuple[str, ...]) -> Callable[[Any], str]:
    """A parser of one of `words`, in any case."""

    def parse(value: Any) -> str:
        word = _text(value).lower()
        if word not in words:
            raise ValueError
        return word

    return parse


def _names(value: Any) -> list[str]:
    """Comma-separated text (environment) or a list of strings (file)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError
    return [item.strip() for item in items if item.strip()]


def _number(minimum: float, above: bool = False, whole: bool = False) -> Callable[[Any], float | int]:
    """A parser of numbers at (or, with `above`, above) `minimum`; whole numbers only with `whole`."""

    def parse(value: Any) -> float | int:
        if isinstance(value, bool):
            raise ValueError
        number = value if isinstance(value, (int, float)) else float(str(value).strip())
        if not math.isfinite(number) or (whole and number != int(number)):
            raise ValueError
        if number < minimum or (above and number == minimum):
            raise ValueError
        return int(number) if whole else float(number)

    return parse


@dataclass(frozen=True)
class Setting:
    """One user setting: `name` is `section.key` in the file; `expects` says what a valid value is."""

    name: str
    default: Any
    env: str
    doc: str
    parse: Callable[[Any], Any]
    expects: str
    #: Whether a set-but-empty environment variable is a value (an empty list) or means unset.
    empty_env_is_value: bool = False


SETTINGS: dict[str, Setting] = {
    setting.name: setting
    for setting in (
        Setting(
            "weights.mirror",
            "",
            "ZOO_MIRROR",
            "Base URL of a mirror serving weight files under their Keras names, tried before the "
            "pinned URLs (file:// or a folder path works too); empty: no mirror.",
            _text,
            'a URL or a folder, or "" for none',
        ),
        Setting(
            "weights.timeout_seconds",
            20.0,
            "ZOO_DOWNLOAD_TIMEOUT",
            "How long a download may wait on a silent server before it gives up.",
            _number(0, above=True),
            "a number of seconds above 0",
        ),
        Setting(
            "bench.epochs",
            20,
            "ZOO_BENCH_EPOCHS",
            "Head training epochs (the course's 5, longer: benchmarks/results/tune_head.json).",
            _number(0, whole=True),
            "a whole number, 0 or more",
        ),
        Setting(
            "bench.batch_size",
            32,
            "ZOO_BENCH_BATCH_SIZE",
            "Batch size of extraction and training.",
            _number(1, whole=True),
            "a whole number, 1 or more",
        ),
        Setting(
            "bench.learning_rate",
            0.001,
            "ZOO_BENCH_LEARNING_RATE",
            "Adam's learning rate for the head.",
            _number(0, above=True),
            "a number above 0",
        ),
        Setting(
            "bench.seed",
            42,
            "ZOO_BENCH_SEED",
            "Random seed of the head's initialisation and shuffling.",
            _number(0, whole=True),
            "a whole number, 0 or more",
        ),
        Setting(
            "bench.mirror",
            True,
            "ZOO_BENCH_MIRROR",
            "Train on mirrored images too and score each test image with its mirror "
            "(benchmarks/results/tune_head.json).",
            _flag,
            "true or false",
        ),
        Setting(
            "bench.runtime",
            "auto",
            "ZOO_BENCH_RUNTIME",
            "What extracts features: tf (TensorFlow), tflite (the model converted to TFLite, run by "
            "LiteRT) or auto (TFLite on CPU where it converts, computes the same features and is faster).",
            _choice(RUNTIMES),
            "auto, tf or tflite",
        ),
        Setting(
            "plugins.load",
            None,
            "ZOO_LOAD_PLUGINS",
            "Load only these plugins, by name (unset: all; empty: none).",
            _names,
            "a list of plugin names",
            empty_env_is_value=True,
        ),
        Setting(
            "plugins.disable",
            [],
            "ZOO_DISABLE_PLUGINS",
            "Load every plugin but these, by name.",
            _names,
            "a list of plugin names",
            empty_env_is_value=True,
        ),
    )
}


def path() -> Path:
    """Where the user config file is: $ZOO_CONFIG, else the platform's config folder."""
    given = os.environ.get(CONFIG_ENV)
    if given:
        return Path(given).expanduser()
    return platformdirs.user_config_path("zoo", appauthor=False) / "config.toml"


def _read_file(file: Path) -> dict[str, Any]:
    """The file's settings by `section.key`; {} when there is no file."""
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(f"config file {file} cannot be read ({exc}); fix or remove it") from None
    except tomllib.TOMLDecodeError as exc:
        raise ZooError(f"config file {file} is not valid TOML ({exc}); fix that line") from None
    found = {}
    for section, table in data.items():
        keys = table.items() if isinstance(table, dict) else [(None, table)]
        for key, value in keys:
            name = f"{section}.{key}" if key is not None else section
            if name not in SETTINGS:
                close = difflib.get_close_matches(name, SETTINGS, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ZooError(
                    f"config file {file} has unknown setting {name}; {hint}the settings are "
                    f"{', '.join(SETTINGS)} (`zoo config` lists them)"
                )
            found[name] = value
    return found


def lookup(name: str) -> tuple[Any, str]:
    """(effective value, where it came from: `env VAR`, the file's path, or `default`)."""
    setting = SETTINGS[name]
    raw = os.environ.get(setting.env)
    if raw is not None and (raw.strip() or setting.empty_env_is_value):
        origin = f"env {setting.env}"
        return _parsed(setting, raw, origin, "correct or unset that environment variable"), origin
    file = path()
    in_file = _read_file(file)
    if name in in_file:
        return _parsed(setting, in_file[name], str(file), f"edit {name} in that file"), str(file)
    return setting.default, "default"


def get(name: str) -> Any:
    """The effective value of setting `name` (a key of SETTINGS)."""
    return lookup(name)[0]


def _parsed(setting: Setting, raw: Any, source: str, fix: str) -> Any:
    try:
        return setting.parse(raw)
    except (ValueError, TypeError):
        raise ZooError(f"setting {setting.name} = {raw!r} from {source} is not {setting.expects}; {fix}") from None


def effective() -> list[dict[str, Any]]:
    """Every setting as `zoo config` shows it: name, value, origin, environment variable, doc."""
    rows = []
    for name, setting in SETTINGS.items():
        value, origin = lookup(name)
        rows.append({"name": name, "value": value, "origin": origin, "env": setting.env, "doc": setting.doc})
    return rows


def bench_defaults() -> dict[str, Any]:
    """The effective bench settings: epochs, batch size, learning rate, seed, mirror, runtime."""
    return {name.split(".", 1)[1]: get(name) for name in SETTINGS if name.startswith("bench.")}
