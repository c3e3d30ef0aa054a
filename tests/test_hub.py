"""TF Hub sources in Keras 3 models, with SavedModels exported here and served from 127.0.0.1."""

import hashlib
import io
import json
import tarfile
import tomllib
import textwrap
from pathlib import Path

import numpy as np
import pytest
from local_server import LocalServer, closed_port_url
from typer.testing import CliRunner

from zoo import get_backbone, hub, plugin_manager, weights
from zoo.sources import hub as hub_source
from zoo_plugins import REGISTRY
from zoo.cli import app
from zoo.errors import ZooError
from zoo.report import read_results
from zoo.spec import BackboneSpec

runner = CliRunner()


@pytest.fixture(autouse=True)
def private_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "2")
    return tmp_path / "tfhub"


@pytest.fixture(scope="session")
def module_saved_model(tmp_path_factory) -> Path:
    """A hub-style TF2 SavedModel: a tf.Module whose __call__ has a serving signature."""
    import tensorflow as tf

    class Features(tf.Module):
        def __init__(self):
            self.kernel = tf.Variable(np.arange(24, dtype="float32").reshape(3, 8) / 24)

        @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
        def __call__(self, images):
            return tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.kernel)

    path = tmp_path_factory.mktemp("module") / "saved_model"
    tf.saved_model.save(Features(), str(path))
    return path


@pytest.fixture(scope="session")
def keras_model_and_export(tmp_path_factory):
    """A small Keras 3 model and its `model.export` SavedModel (a dict-valued signature)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
    ])
    path = tmp_path_factory.mktemp("keras-export") / "saved_model"
    model.export(str(path), verbose=False)
    return model, path


def tarball(folder: Path) -> bytes:
    """The SavedModel as the TF Hub protocol serves it: a .tar.gz of the folder's contents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in folder.iterdir():
            tar.add(item, arcname=item.name)
    return buffer.getvalue()


def test_built_in_backbones_come_in_a_hub_variant_too():
    catalog = tomllib.loads(REGISTRY.read_text())
    hub_handles = {name: entry["hub"] for table in catalog.values() for name, entry in table.items()
                   if "hub" in entry}
    assert set(hub_handles) == {"efficientnet_b0", "efficientnet_v2_b0", "mobilenet_v2", "resnet50_v2"}
    for name in hub_handles:
        keras_spec, hub_spec = get_backbone(name), get_backbone(f"{name}:hub")
        assert keras_spec.source == "keras.applications" and hub_spec.source == "hub"
        assert hub_spec.reference == hub_handles[name]
        assert hub_spec.preprocessing == "unit" and hub_spec.weights is None
        assert hub_spec.feature_dim == keras_spec.feature_dim
        assert weights.status(hub_spec) == "download"


def test_source_picks_variants():
    assert hub_source.variant_name("mobilenet_v2", "hub") == "mobilenet_v2:hub"
    assert hub_source.variant_name("mobilenet_v2:hub", "keras") == "mobilenet_v2"
    assert hub_source.variant_name("mobilenet_v2:hub", None) == "mobilenet_v2:hub"
    specs = [get_backbone(name) for name in ("mobilenet_v2", "mobilenet_v2:hub", "efficientnet_lite0")]
    assert [s.name for s in hub_source.select(specs, None)] == ["mobilenet_v2", "efficientnet_lite0"]
    assert [s.name for s in hub_source.select(specs, "hub")] == ["mobilenet_v2:hub"]
    assert [s.name for s in hub_source.select(specs, "keras")] == ["mobilenet_v2", "efficientnet_lite0"]


def test_tfhub_and_kaggle_handles_resolve_to_the_compressed_format(private_hub_cache):
    tfhub = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/4"
    assert hub.compressed_url(tfhub) == tfhub + "?tf-hub-format=compressed"
    kaggle = "kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224-feature-vector/1"
    assert hub.compressed_url(kaggle) == "https://" + kaggle + "?tf-hub-format=compressed"
    # Cached where tensorflow_hub caches it: $TFHUB_CACHE_DIR/<sha1 of the handle>.
    assert hub.cached_path(tfhub) == private_hub_cache / hashlib.sha1(tfhub.encode()).hexdigest()


def spec_for(reference: str, name: str = "module:hub", dim: int = 8, size: int = 32) -> BackboneSpec:
    return BackboneSpec(name=name, family="test", source="hub", reference=reference,
                        input_size=size, preprocessing="unit", feature_dim=dim, params=24,
                        plugin="test")


def test_a_local_saved_model_runs_in_a_keras_3_model_on_unit_range_pixels(module_saved_model):
    from zoo.models import feature_extractor

    spec = spec_for(str(module_saved_model))
    resolved = weights.resolve(spec, "auto")
    assert resolved.label == "hub" and resolved.note.startswith("local SavedModel")
    extractor = feature_extractor(spec, resolved)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    kernel = np.arange(24, dtype="float32").reshape(3, 8) / 24
    expected = (images / 255).mean(axis=(1, 2)) @ kernel
    np.testing.assert_allclose(np.asarray(extractor(images)), expected, rtol=1e-5)
    assert extractor.trainable_weights == []


def test_a_keras_exported_saved_model_works_as_a_hub_source(keras_model_and_export):
    from zoo.models import feature_extractor

    model, path = keras_model_and_export
    spec = spec_for(str(path), name="exported:hub")
    extractor = feature_extractor(spec, weights.resolve(spec, "auto"))
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(extractor(images)), np.asarray(model(images / 255)), rtol=1e-5)


def test_the_flops_of_a_hub_layer_are_counted_inside_its_saved_model(keras_model_and_export):
    """The profiler does not look into function calls: the SavedModel's graph must be inlined."""
    from zoo import metrics
    from zoo.models import feature_extractor

    model, path = keras_model_and_export
    extractor = feature_extractor(spec_for(str(path), name="exported:hub"), weights.resolve(spec_for(str(path)), "auto"))
    convolution = 2 * 30 * 30 * 8 * 27  # multiply-adds of the 3x3 convolution, counted as 2 each
    assert convolution <= metrics.flops_per_image(model) <= metrics.flops_per_image(extractor)


def test_weights_modes_for_hub_backbones(module_saved_model):
    spec = spec_for("/nowhere/saved_model")
    with pytest.raises(ZooError, match="no random initialisation; bench module for that"):
        weights.resolve(spec, "none")
    with pytest.raises(ZooError, match="no random initialisation; use --weights auto or imagenet"):
        weights.resolve(spec_for("/nowhere/saved_model", name="own_hub"), "none")  # no keras variant to bench
    assert weights.resolve(spec, str(module_saved_model)).path == str(module_saved_model)
    with pytest.raises(ZooError, match="neither a URL .* nor a SavedModel folder"):
        weights.resolve(spec, "auto")


def test_offline_hub_is_one_line_and_leaves_nothing(private_hub_cache):
    handle = closed_port_url() + "/google/made/1"
    with pytest.raises(ZooError) as caught:
        weights.resolve(spec_for(handle), "auto")
    message = str(caught.value)
    assert "\n" not in message and handle in message and "--weights PATH" in message
    assert list(private_hub_cache.iterdir()) == []


PLUGIN = textwrap.dedent(
    """
    from zoo import BackboneSpec, hookimpl

    @hookimpl
    def zoo_backbones():
        made = dict(family="mobilenet_v2", input_size=32, params=2257984)
        return [
            BackboneSpec(name="made_mobilenet", source="keras.applications", feature_dim=1280,
                         reference="MobileNetV2", preprocessing="symmetric", **made),
            BackboneSpec(name="made_mobilenet:hub", source="hub", reference={handle!r},
                         feature_dim=8, preprocessing="unit", **made),
        ]
    """
)


def test_hub_and_keras_variants_bench_side_by_side(
    module_saved_model, tiny_dataset, tmp_path, monkeypatch, private_hub_cache
):
    """One Keras 3 run: an applications model and a hub one fetched over the TF Hub protocol.

    The hub SavedModel is a tiny one to keep this fast; the slow test below runs real families.
    """
    with LocalServer() as server:
        handle = server.url + "/google/made_mobilenet/feature_vector/1"
        server.files["/google/made_mobilenet/feature_vector/1?tf-hub-format=compressed"] = tarball(
            module_saved_model
        )
        plugin = tmp_path / "made_hub.py"
        plugin.write_text(PLUGIN.format(handle=handle))
        monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
        monkeypatch.setenv("ZOO_LOAD_PLUGINS", "made_hub")
        listed = {row["name"]: row for row in json.loads(runner.invoke(app, ["list", "--json"]).stdout)}
        assert set(listed) == {"made_mobilenet", "made_mobilenet:hub"}
        assert listed["made_mobilenet:hub"]["weights_status"] == "download"
        out = tmp_path / "both"
        result = runner.invoke(app, [
            "bench", "made_mobilenet", "made_mobilenet:hub", "--data", str(tiny_dataset),
            "--epochs", "1", "--batch-size", "4", "--out", str(out),
        ])
        assert result.exit_code == 0, result.output
    rows = {row["backbone"]: row for row in read_results(out)["backbones"]}
    hub_row, keras_row = rows["made_mobilenet:hub"], rows["made_mobilenet"]
    assert keras_row["status"] == "ok" and keras_row["source"] == "keras.applications"
    assert hub_row["status"] == "ok" and hub_row["source"] == "hub" and hub_row["weights"] == "hub"
    assert hub_row["weights_note"].startswith(f"downloaded from {handle}?tf-hub-format=compressed")
    assert 0 <= hub_row["top1"] <= 1 and hub_row["images_per_sec"] > 0
    cached = hub.cached_path(handle)
    assert (cached / "saved_model.pb").is_file()
    assert sorted(p.name for p in private_hub_cache.iterdir()) == [cached.name]  # no archive, no temp

    # The server is gone: `--source hub` benches the hub variant from the cache.
    out = tmp_path / "hub-only"
    result = runner.invoke(app, [
        "bench", "--all", "--source", "hub", "--data", str(tiny_dataset), "--epochs", "1",
        "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    [row] = read_results(out)["backbones"]
    assert row["backbone"] == "made_mobilenet:hub" and row["weights_note"].startswith("hub cache")
    assert "ok made_mobilenet:hub: SavedModel in hub cache" in runner.invoke(app, ["weights", "verify"]).stdout


FAMILIES_PLUGIN = textwrap.dedent(
    """
    import dataclasses, hashlib, json, os
    from pathlib import Path
    from zoo import hookimpl
    from zoo import specs_from_toml
    from zoo_plugins import REGISTRY

    MADE = json.loads(os.environ["MADE_MODELS"])

    @hookimpl
    def zoo_backbones():
        specs = []
        for plugin in ("efficientnet", "mobilenet_v2", "resnet_v2"):
            for spec in specs_from_toml(REGISTRY, table=plugin):
                base = spec.name.split(":")[0]
                if base not in MADE:
                    continue
                if spec.source == "hub":
                    specs.append(dataclasses.replace(spec, reference=MADE[base]["saved_model"]))
                else:
                    data = Path(MADE[base]["weights"]).read_bytes()
                    pinned = dataclasses.replace(spec.weights, sha256=hashlib.sha256(data).hexdigest(),
                                                 size=len(data))
                    specs.append(dataclasses.replace(spec, weights=pinned))
        return specs
    """
)


@pytest.mark.slow
def test_all_three_families_from_both_sources_in_one_run(tiny_dataset, tmp_path, monkeypatch):
    """The built-in specs, re-pinned to weights and SavedModels made here, bench side by side."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    made = {}
    for name in ("efficientnet_b0", "mobilenet_v2", "resnet50_v2"):
        spec = get_backbone(name)
        model = getattr(keras.applications, spec.reference)(
            include_top=False, weights=None, input_shape=(224, 224, 3), pooling="avg"
        )
        with h5py.File(weights_dir / spec.weights.file, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, model)
        model.export(str(tmp_path / name), verbose=False)
        made[name] = {"weights": str(weights_dir / spec.weights.file), "saved_model": str(tmp_path / name)}
    plugin = tmp_path / "made_families.py"
    plugin.write_text(FAMILIES_PLUGIN)
    monkeypatch.setenv("MADE_MODELS", json.dumps(made))
    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "made_families")
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(weights_dir))
    plugin_manager.plugin_manager.cache_clear()  # the catalog read above had the real pins
    plugin_manager.catalog.cache_clear()
    out = tmp_path / "results"
    names = [f"{name}{variant}" for name in made for variant in ("", ":hub")]
    result = runner.invoke(app, [
        "bench", *names, "--data", str(tiny_dataset), "--weights", "imagenet", "--epochs", "1",
        "--batch-size", "6", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    rows = {row["backbone"]: row for row in read_results(out)["backbones"]}
    assert set(rows) == set(names)
    for name in made:
        assert rows[name]["weights"] == "imagenet" and rows[name]["weights_note"].startswith("ZOO_WEIGHTS_DIR")
        assert rows[f"{name}:hub"]["weights"] == "hub" and rows[f"{name}:hub"]["source"] == "hub"
    assert all(row["status"] == "ok" and 0 <= row["top1"] <= 1 for row in rows.values())
