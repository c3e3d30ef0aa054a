"""examples/zoo-densenet, a separate package that `make install` pip-installs beside zoo."""

import json
from importlib import metadata

import pytest
from typer.testing import CliRunner

from zoo import testing
from zoo.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def densenet_installed():
    try:
        metadata.distribution("zoo-densenet")
    except metadata.PackageNotFoundError:
        pytest.fail("examples/zoo-densenet is not installed: run `make install`")


def test_zoo_list_shows_the_example_plugin():
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    row = {row["name"]: row for row in json.loads(result.stdout)}["densenet121"]
    assert (row["plugin"], row["source"], row["preprocessing"]) == ("densenet", "keras.applications", "torch")


def test_the_example_meets_the_contract():
    [spec] = testing.check_plugin("densenet", input_size=64)
    assert spec.feature_dim == 1024


@pytest.mark.slow  # DenseNet121 at 224 px with the bench's speed measurements: ~30 s on 2 cores
def test_zoo_bench_runs_the_example(tiny_dataset, tmp_path):
    result = runner.invoke(app, [
        "bench", "densenet121", "--data", str(tiny_dataset), "--weights", "none",
        "--epochs", "1", "--out", str(tmp_path), "--json",
    ])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["backbones"]
    assert (row["backbone"], row["plugin"], row["status"]) == ("densenet121", "densenet", "ok")
