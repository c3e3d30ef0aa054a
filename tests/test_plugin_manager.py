"""Plugins loaded for real: local files and folders, entry points, broken ones, conflicts, env lists."""

import json
import re
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zoo import plugin_manager
from zoo.cli import app
from zoo.errors import ZooError

runner = CliRunner()


def plugin_source(name: str, **fields) -> str:
    """A plugin module providing one valid `custom` backbone `name`, fields overridable."""
    spec = {
        "name": name, "family": "test", "source": "custom", "reference": "in code",
        "input_size": 32, "preprocessing": "unit", "feature_dim": 8, "params": 1, **fields,
    }
    return textwrap.dedent(
        f"""
        from zoo import BackboneSpec, hookimpl

        @hookimpl
        def zoo_backbones():
            return [BackboneSpec(**{spec!r})]
        """
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def fake_distribution(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]):
    """An installed distribution as pip leaves it: a *.dist-info with entry_points.txt, and code."""
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    write(info / "METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    write(info / "entry_points.txt", "[zoo.backbones]\n" + lines)
    for module, text in modules.items():
        write(site / f"{module}.py", text)
    return site


def infos() -> dict[str, plugin_manager.PluginInfo]:
    return {info.name: info for info in plugin_manager.catalog().plugins}


def test_zoo_plugins_loads_a_file_and_a_package_folder(tmp_path, monkeypatch):
    single = write(tmp_path / "single.py", plugin_source("single_net"))
    folder = tmp_path / "folder_plugin"
    write(folder / "specs.py", plugin_source("folder_net"))
    write(folder / "__init__.py", "from .specs import zoo_backbones\n")
    monkeypatch.setenv("ZOO_PLUGINS", os.pathsep.join([str(single), str(folder)]))

    catalog = plugin_manager.catalog()
    assert catalog.get("single_net").plugin == "single"
    assert catalog.get("folder_net").plugin == "folder_plugin"
    assert infos()["single"].origin == str(single)
    assert infos()["single"].hooks == ["zoo_backbones"]
    assert "mobilenet_v2" in catalog.backbones  # the installed plugins are still there


def test_plugin_option_loads_a_file(tmp_path):
    path = write(tmp_path / "mine.py", plugin_source("my_net"))
    result = runner.invoke(app, ["--plugin", str(path), "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["my_net"]["plugin"] == "mine"


def test_entry_point_of_an_installed_distribution_is_discovered(tmp_path, monkeypatch):
    site = fake_distribution(
        tmp_path / "site", "zoo-demo", {"demo": "zoo_demo"}, {"zoo_demo": plugin_source("demo_net")}
    )
    monkeypatch.syspath_prepend(str(site))
    assert plugin_manager.catalog().get("demo_net").plugin == "demo"
    assert infos()["demo"].version == "1.2.3"
    assert infos()["demo"].origin == "zoo-demo (entry point)"


BROKEN = {
    "import_error": ("import no_such_module_anywhere\n", "ModuleNotFoundError: No module named"),
    "syntax_error": ("def broken(:\n", "SyntaxError"),
    "hook_raises": (
        "from zoo import hookimpl\n@hookimpl\ndef zoo_backbones():\n    raise RuntimeError('no specs today')\n",
        "RuntimeError: no specs today",
    ),
    "invalid_spec": (plugin_source("bad_net", preprocessing="sepia"), "unknown preprocessing 'sepia'"),
    "returns_none": (
        "from zoo import hookimpl\n@hookimpl\ndef zoo_backbones():\n    pass\n",
        "zoo_backbones returned None, not a list",
    ),
    "not_a_spec": (
        "from zoo import hookimpl\n@hookimpl\ndef zoo_backbones():\n    return [{'name': 'x'}]\n",
        "returned dict, not a zoo.BackboneSpec",
    ),
    "weights_a_string": (plugin_source("w_net", weights="w.h5"), "has weights='w.h5'; give a zoo.Weights(file="),
    "preprocessing_a_list": (plugin_source("l_net", preprocessing=["unit"]), "unknown preprocessing ['unit']"),
    "named_ensemble": (plugin_source("ensemble"), "the name of the bench's ensemble row; choose another name"),
    "build_args_zoo_ignores": (
        plugin_source("k_net", source="keras.applications", reference="MobileNetV2", build_args={"alpha": 0.5}),
        "has build_args, but zoo builds keras.applications backbones itself and reads none",
    ),
    "no_hookimpl": ("def zoo_backbones():\n    return []\n", "implements no hook"),
    "hook_argument": (
        "from zoo import hookimpl\n@hookimpl\ndef zoo_build_backbone(spec, weights_path):\n    pass\n",
        "Argument(s) {'weights_path'} are declared in the hookimpl but can not be found in the hookspec",
    ),
    "misspelt_hook": (
        "from zoo import hookimpl\n@hookimpl\ndef zoo_backbone():\n    return []\n",
        "has unknown hook zoo_backbone",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_plugin_is_reported_and_the_others_still_work(case, tmp_path, monkeypatch):
    text, reason = BROKEN[case]
    broken = write(tmp_path / f"{case}.py", text)
    good = write(tmp_path / "good.py", plugin_source("good_net"))
    monkeypatch.setenv("ZOO_PLUGINS", os.pathsep.join([str(broken), str(good)]))

    assert reason in infos()[case].error
    assert "\n" not in infos()[case].error
    assert {"good_net", "mobilenet_v2"} <= set(plugin_manager.catalog().backbones)
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0
    assert f"plugin {case} is broken" in listed.stderr
    assert f"fix {broken}, or take it out of ZOO_PLUGINS" in listed.stderr.replace("\n", "")
    shown = runner.invoke(app, ["plugins", "--json"])
    assert reason in {info["name"]: info for info in json.loads(shown.stdout)}[case]["error"]


def test_a_broken_plugin_file_is_named_by_its_path_and_the_fix_is_to_it_or_to_plugin(tmp_path):
    # not ZOO_DISABLE_PLUGINS, which is for installed plugins, nor the module name zoo imported it under
    broken = write(tmp_path / "half_done.py", "import sys\nsys.modules[__name__].not_written_yet\n")
    listed = runner.invoke(app, ["list", "--plugin", str(broken)])
    assert listed.exit_code == 0
    line = listed.stderr.replace("\n", "")
    assert (
        f"plugin half_done is broken: AttributeError: module '{broken}' has no attribute 'not_written_yet'; "
        f"fix {broken}, or drop --plugin {broken}"
    ) in line
    assert "ZOO_DISABLE_PLUGINS" not in line and "zoo_local_plugin" not in line


def test_a_plugin_path_that_is_not_there_or_not_python_says_which(tmp_path):
    """A typo in --plugin: 'no such file', not 'neither a .py file nor a package folder'."""
    text = write(tmp_path / "notes.txt", "not python")
    missing = tmp_path / "my_plugn.py"
    shown = runner.invoke(app, ["plugins", "--json", f"--plugin={missing}", f"--plugin={text}"])
    errors = {info["origin"]: info["error"] for info in json.loads(shown.stdout)}
    assert errors[str(missing)] == f"plugin path {missing}: no such file or folder"
    assert errors[str(text)] == f"plugin path {text} cannot be imported as Python; give a .py file or a package folder"


def test_a_plugin_file_named_like_another_plugin_is_told_to_rename_the_file(tmp_path):
    """A file has no entry point: the plugin takes its name from the file's."""
    first = write(tmp_path / "a/net.py", plugin_source("net_a"))
    second = write(tmp_path / "b/net.py", plugin_source("net_b"))
    built_in = write(tmp_path / "mobilenet_v2.py", plugin_source("net_c"))
    shown = runner.invoke(app, ["plugins", "--json", *(f"--plugin={path}" for path in (first, second, built_in))])
    errors = {info["origin"]: info["error"] for info in json.loads(shown.stdout)}
    assert errors[str(first)] == ""
    assert errors[str(second)] == (
        f"its name 'net' is taken by the plugin from {first}; rename {second} (a plugin file is named by its file)"
    )
    assert errors[str(built_in)] == (
        f"its name 'mobilenet_v2' is taken by the plugin from zoo (entry point); rename {built_in} "
        "(a plugin file is named by its file)"
    )


def test_a_package_cannot_take_a_built_in_plugins_name(tmp_path, monkeypatch):
    """Whatever the install order: the built-in keeps its name and works, the other one is left
    out, and the advice does not say to disable the name (that would disable both)."""
    site = fake_distribution(
        tmp_path / "site", "zoo-usurper", {"mobilenet_v2": "zoo_usurper"}, {"zoo_usurper": plugin_source("u_net")}
    )
    monkeypatch.syspath_prepend(str(site))
    [built_in, usurper] = [info for info in plugin_manager.catalog().plugins if info.name == "mobilenet_v2"]
    assert built_in.origin == "zoo (entry point)" and not built_in.error
    assert usurper.error == "its name 'mobilenet_v2' is taken by the plugin from zoo (entry point); rename this one's entry point"
    assert "mobilenet_v2" in plugin_manager.catalog().backbones and "u_net" not in plugin_manager.catalog().backbones
    listed = runner.invoke(app, ["list"])
    assert "plugin mobilenet_v2 is broken: its name" in listed.stderr and "ZOO_DISABLE_PLUGINS" not in listed.stderr


def test_a_broken_installed_package_is_reported_by_the_real_cli(tmp_path):
    """A pip-installed package whose module raises on import, found through its dist-info."""
    site = fake_distribution(
        tmp_path / "site", "zoo-broken", {"broken": "zoo_broken", "fine": "zoo_fine"},
        {"zoo_broken": "raise ImportError('needs torch')\n", "zoo_fine": plugin_source("fine_net")},
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    command = [sys.executable, "-c", "from zoo.cli import main; main()"]
    run = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True}  # the installed zoo
    plugins = subprocess.run(command + ["plugins", "--json"], **run)
    assert plugins.returncode == 0, plugins.stderr
    shown = {info["name"]: info for info in json.loads(plugins.stdout)}
    assert shown["broken"]["error"] == "ImportError: needs torch"
    assert shown["broken"]["origin"] == "zoo-broken (entry point)"
    listed = subprocess.run(command + ["list", "--json"], **run)
    assert listed.returncode == 0
    assert {"fine_net", "mobilenet_v2"} <= {row["name"] for row in json.loads(listed.stdout)}
    assert "plugin broken is broken: ImportError: needs torch" in listed.stderr
    assert "Traceback" not in listed.stderr


def test_two_plugins_declaring_one_name_leave_it_out_and_name_both(tmp_path, monkeypatch):
    first = write(tmp_path / "first.py", plugin_source("twin_net"))
    second = write(tmp_path / "second.py", plugin_source("twin_net"))
    monkeypatch.setenv("ZOO_PLUGINS", os.pathsep.join([str(first), str(second)]))

    catalog = plugin_manager.catalog()
    assert "twin_net" not in catalog.backbones
    with pytest.raises(ZooError, match="declared by both first and second; disable one"):
        catalog.get("twin_net")
    assert "declared by first and second" in runner.invoke(app, ["list"]).stderr

    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "second")
    plugin_manager.plugin_manager.cache_clear()
    plugin_manager.catalog.cache_clear()
    assert plugin_manager.catalog().get("twin_net").plugin == "first"


def test_zoo_load_plugins_is_an_allow_list(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_PLUGINS", str(write(tmp_path / "mine.py", plugin_source("my_net"))))
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "mine, mobilenet_v2")
    backbones = plugin_manager.catalog().backbones.values()
    assert {spec.plugin for spec in backbones} == {"mine", "mobilenet_v2"}
    assert set(infos()) == {"mine", "mobilenet_v2"}


def test_empty_zoo_load_plugins_loads_none(monkeypatch):
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "")
    assert plugin_manager.catalog().backbones == {}
    assert list(infos()) == []


def test_zoo_disable_plugins_is_a_deny_list(monkeypatch):
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "mobilenet_v2,resnet_v2")
    names = set(plugin_manager.catalog().backbones)
    assert not any(name.startswith(("mobilenet_v2", "resnet50_v2")) for name in names)
    assert "efficientnet_b0" in names
    assert "mobilenet_v2" not in infos()
    with pytest.raises(ZooError, match=r"plugins mobilenet_v2, resnet_v2 are not loaded .*: it may be one of theirs"):
        plugin_manager.catalog().get("mobilenet_v2")


def test_a_plugin_setting_naming_no_plugin_is_said(monkeypatch):
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "mobilenet_v3")  # a typo of mobilenet_v2
    assert "ZOO_DISABLE_PLUGINS names no installed plugin mobilenet_v3" in runner.invoke(app, ["list"]).stderr


CUSTOM = """
from zoo import BackboneSpec, hookimpl

def halve(images):
    return images / 127.5 - 1.0

SPEC = BackboneSpec(name="coded_net", family="test", source="custom", reference="in code",
                    input_size=32, preprocessing=halve, feature_dim=8, params=224)

@hookimpl
def zoo_backbones():
    return [SPEC]

@hookimpl
def zoo_build_backbone(spec, weights):
    if spec.name != SPEC.name:
        return None
    import keras

    inputs = keras.Input((spec.input_size, spec.input_size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    if weights is not None:
        model.load_weights(weights)
    return model
"""


def test_custom_builder_and_callable_preprocessing_are_benched(tmp_path, tiny_dataset):
    path = write(tmp_path / "coded.py", CUSTOM)
    result = runner.invoke(app, [
        "--plugin", str(path), "bench", "coded_net", "--data", str(tiny_dataset),
        "--weights", "none", "--epochs", "1", "--out", str(tmp_path / "out"), "--json",
    ])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["backbones"]
    assert (row["backbone"], row["status"], row["source"]) == ("coded_net", "ok", "custom")


def test_custom_builder_loads_a_weights_file(tmp_path, monkeypatch):
    import numpy as np

    from zoo.models import create_model

    monkeypatch.setenv("ZOO_PLUGINS", str(write(tmp_path / "coded.py", CUSTOM)))
    spec = plugin_manager.catalog().get("coded_net")
    trained = plugin_manager.build_backbone(spec, None)
    trained.get_layer("conv").set_weights([np.full((3, 3, 3, 8), 0.5), np.ones(8)])
    trained.save_weights(tmp_path / "coded.weights.h5")

    model = create_model("coded_net", 2, weights=str(tmp_path / "coded.weights.h5"))
    kernel = [w for w in model.weights if "conv" in w.path and "kernel" in w.path][0]
    assert np.allclose(np.asarray(kernel), 0.5)


def test_custom_backbone_without_a_builder_says_who_must_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_PLUGINS", str(write(tmp_path / "lazy.py", plugin_source("lazy_net"))))
    spec = plugin_manager.catalog().get("lazy_net")
    with pytest.raises(ZooError, match="plugin lazy must implement zoo_build_backbone"):
        plugin_manager.build_backbone(spec, None)


def test_weights_commands_take_plugin_after_them_and_say_a_plugin_is_broken(tmp_path):
    good = write(tmp_path / "mine.py", plugin_source("my_net"))
    broken = write(tmp_path / "raises.py", BROKEN["hook_raises"][0])
    for command in (["weights", "list", "--json"], ["weights", "verify", "--json"]):
        result = runner.invoke(app, [*command, "--plugin", str(good), "--plugin", str(broken)])
        assert "my_net" in result.stdout and "plugin raises is broken: RuntimeError: no specs today" in result.stderr


@pytest.mark.parametrize(
    ("built", "message"),
    [
        ("'not a model'", "plugin odd's zoo_build_backbone returned a str for odd_net, not a Keras model"),
        ("gray()", "odd_net builds a model for images of 1 channels; zoo feeds RGB images (3)"),
    ],
    ids=["not_a_model", "one_channel"],
)
def test_a_builder_that_returns_no_rgb_model_is_named(built, message, tmp_path, monkeypatch):
    from zoo.models import feature_extractor
    from zoo.weights import ResolvedWeights

    source = plugin_source("odd_net") + textwrap.dedent(
        f"""
        def gray():
            import keras
            inputs = keras.Input((32, 32, 1))
            return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs)))

        @hookimpl
        def zoo_build_backbone(spec, weights):
            return {built}
        """
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(write(tmp_path / "odd.py", source)))
    with pytest.raises(ZooError, match=re.escape(message)):
        feature_extractor(plugin_manager.catalog().get("odd_net"), ResolvedWeights(None, "random"))
