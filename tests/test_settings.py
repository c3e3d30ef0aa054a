"""Bench settings: defaults from the user settings (zoo.config), one-line errors, and the --resume fingerprint."""

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from zoo import config
from zoo.cli import app
from zoo.data import load_dataset
from zoo.errors import ZooError
from zoo.settings import BenchSettings, settings_fingerprint
from zoo.spec import BackboneSpec

SPEC = BackboneSpec(
    name="net", family="test", source="custom", reference="net", input_size=32,
    preprocessing="unit", feature_dim=8, params=1,
)


def test_defaults_come_from_the_user_settings_and_none_overrides_nothing(monkeypatch):
    monkeypatch.setenv("ZOO_BENCH_LEARNING_RATE", "0.01")
    defaults = config.bench_defaults()
    assert defaults["learning_rate"] == 0.01
    settings = BenchSettings.from_config(epochs=None, batch_size=7)
    assert settings.epochs == defaults["epochs"] and settings.learning_rate == defaults["learning_rate"]
    assert settings.mirror == defaults["mirror"] and settings.batch_size == 7


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=0), "--batch-size 0: it must be 1 to 4096"),
    (dict(learning_rate=0.0), "--learning-rate 0.0: it must be above 0"),
    (dict(latency_runs=0), "latency_runs and throughput_batches must be 1 or more"),
])
def test_validate_names_the_bad_setting(change, message):
    with pytest.raises(ZooError, match=message):
        BenchSettings.from_config(**change).validate()


def test_the_fingerprint_follows_every_setting_but_cache(tiny_dataset):
    dataset, settings = load_dataset(tiny_dataset), BenchSettings.from_config()
    fingerprint = settings_fingerprint(SPEC, dataset, settings)
    assert settings_fingerprint(SPEC, dataset, replace(settings, cache=not settings.cache)) == fingerprint
    for change in (dict(epochs=settings.epochs + 1), dict(mirror=not settings.mirror), dict(mode="finetune")):
        assert settings_fingerprint(SPEC, dataset, replace(settings, **change)) != fingerprint, change
    assert settings_fingerprint(replace(SPEC, input_size=64), dataset, settings) != fingerprint


@pytest.mark.parametrize("arguments, message", [
    (["--mode", "transfer"], "--mode transfer: use one of features, finetune"),
    (["--strategy", "tpu"], "--strategy tpu: use one of default, mirrored, multiworker"),
    (["--unfreeze", "-1"], "--unfreeze -1: it must be 0 or more"),
    (["--finetune-epochs", "-2"], "--finetune-epochs -2: it must be 0 or more"),
    (["--epochs", "-3"], "--epochs -3: it must be 0 or more"),
])
def test_bad_bench_settings_are_one_line_errors(tiny_dataset, arguments, message):
    result = CliRunner().invoke(app, ["bench", "mobilenet_v2", "--data", str(tiny_dataset), *arguments])
    assert result.exit_code == 2 and message in result.stderr
