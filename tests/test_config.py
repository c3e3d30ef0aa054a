"""User settings: default < config file < environment, each shown with its origin, bad values
refused in one line naming the setting, where it came from and the fix."""

import json
import os

import pytest
from typer.testing import CliRunner

from zoo import config, download, plugin_manager, weights
from zoo.settings import BenchSettings
from zoo.cli import app
from zoo.errors import ZooError

runner = CliRunner()


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("ZOO_CONFIG", str(path))
    return path


def test_defaults_are_the_courses_recipe_but_longer_and_mirrored(config_file):
    settings = BenchSettings.from_config()
    assert (settings.epochs, settings.batch_size, settings.learning_rate) == (20, 32, 0.001)
    assert settings.seed == 42 and settings.mirror is True
    assert all(row["origin"] == "default" for row in config.effective())


def test_the_file_beats_the_default_and_the_environment_beats_the_file(config_file, monkeypatch):
    config_file.write_text('[bench]\nepochs = 7\nmirror = false\n[weights]\nmirror = "file:///m"\n')
    assert config.lookup("bench.epochs") == (7, str(config_file))
    assert BenchSettings.from_config(epochs=3).epochs == 3  # a command-line option beats both
    assert weights.mirror() == "file:///m"
    monkeypatch.setenv("ZOO_BENCH_EPOCHS", "9")
    monkeypatch.setenv("ZOO_BENCH_MIRROR", "yes")
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "2.5")
    assert config.bench_defaults() == {
        "epochs": 9, "batch_size": 32, "learning_rate": 0.001, "seed": 42, "mirror": True, "runtime": "auto",
    }
    assert download.timeout_seconds() == 2.5


def test_plugin_lists_from_the_file_choose_plugins(config_file, monkeypatch):
    config_file.write_text('[plugins]\ndisable = ["mobilenet_v2", "resnet_v2"]\n')
    names = set(plugin_manager.catalog().backbones)
    assert "efficientnet_b0" in names and "mobilenet_v2" not in names
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "")  # an empty variable is a value: disable none
    plugin_manager.plugin_manager.cache_clear()
    plugin_manager.catalog.cache_clear()
    assert "mobilenet_v2" in plugin_manager.catalog().backbones


def test_zoo_config_shows_every_setting_and_where_it_came_from(config_file, monkeypatch):
    config_file.write_text("[bench]\nbatch_size = 8\n")
    monkeypatch.setenv("ZOO_MIRROR", "https://mirror.example.org")
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["file"] == str(config_file)
    rows = {row["name"]: row for row in shown["settings"]}
    assert set(rows) == set(config.SETTINGS)
    assert (rows["bench.batch_size"]["value"], rows["bench.batch_size"]["origin"]) == (8, str(config_file))
    assert rows["weights.mirror"]["origin"] == "env ZOO_MIRROR"
    assert (rows["bench.epochs"]["value"], rows["bench.epochs"]["origin"]) == (20, "default")
    table = runner.invoke(app, ["config"]).stdout
    assert str(config_file) in table and "env ZOO_MIRROR" in table


@pytest.mark.parametrize(
    "text, env, words",
    [
        ("[bench]\nepochs = -1\n", {}, "setting bench.epochs = -1 from {file} is not a whole number, 0 or more; edit"),
        ("[bench]\nmirror = 3\n", {}, "setting bench.mirror = 3 from {file} is not true or false"),
        ("", {"ZOO_BENCH_LEARNING_RATE": "fast"}, "setting bench.learning_rate = 'fast' from env ZOO_BENCH_LEARNING_RATE"),
        ("", {"ZOO_DOWNLOAD_TIMEOUT": "0"}, "setting weights.timeout_seconds = '0' from env ZOO_DOWNLOAD_TIMEOUT"),
        ("[bench]\nepoch = 5\n", {}, "config file {file} has unknown setting bench.epoch; did you mean bench.epochs?"),
        ("[bench\n", {}, "config file {file} is not valid TOML"),
    ],
)
def test_a_bad_value_is_one_line_naming_setting_source_and_fix(config_file, monkeypatch, text, env, words):
    config_file.write_text(text)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert words.format(file=config_file) in message.replace("\n", "")
    with pytest.raises(ZooError):
        config.bench_defaults() if "bench" in words else download.timeout_seconds()


def test_the_config_file_lives_in_the_platform_config_folder(monkeypatch):
    monkeypatch.delenv("ZOO_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/somewhere/config")
    if os.name == "posix" and not os.uname().sysname == "Darwin":
        assert str(config.path()) == "/somewhere/config/zoo/config.toml"
