"""EfficientNet-Lite: the Keras network matches the PyTorch checkpoints, tensor for tensor, and
the port classifies real food photos the way the original does."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from zoo.errors import ZooError
from zoo.preprocessing import normalize
from zoo.pth import load_state_dict
from zoo import get_backbone
from zoo.weights import locate
from zoo_plugins import efficientnet_lite

REPO = Path(__file__).resolve().parents[2]
FOOD = REPO.parent / "shared/data/10_food_classes_10_percent"

PIZZA, CHEESEBURGER, ICE_CREAM = 963, 933, 928
LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def weights_path(name: str) -> str:
    path, origin = locate(get_backbone(name).weights)
    if path is None:
        pytest.skip(f"weights of {name} not installed: {origin}")
    return str(path)


@pytest.fixture(scope="module")
def lite0_state():
    return load_state_dict(weights_path("efficientnet_lite0"))


def test_import_does_not_import_tensorflow():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('m', {efficientnet_lite.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['m'] = module\n"
        "spec.loader.exec_module(module)\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_preprocessing_maps_0_255_to_about_minus_1_plus_1_as_constants():
    spec = get_backbone("efficientnet_lite0")
    assert spec.preprocessing is efficientnet_lite.NORMALIZATION and spec.preprocessing_name == "(x-127)/128"
    out = normalize(np.array([[0, 127, 255]] * 3, dtype=np.float32).T, spec.normalization)
    np.testing.assert_allclose(out[:, 0], [-127 / 128, 0.0, 1.0])


def test_layer_names_are_scope_safe_and_map_back_to_the_state_dict():
    model = efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 32, None)
    names = [layer.name for layer in model.layers]
    assert "blocks.14._bn0" in names and not any(name.startswith("_") for name in names)
    for module in ("_blocks.14._bn0", "_conv_stem", "_fc"):
        assert efficientnet_lite.torch_name(efficientnet_lite.keras_name(module)) == module


def test_feature_extractor_shape_without_weights():
    model = efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 64, None)
    features = model.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    assert features.shape == (2, 1280)


def test_unknown_variant():
    with pytest.raises(ZooError, match="efficientnet_lite9"):
        efficientnet_lite.build_efficientnet_lite("efficientnet_lite9", 64, None)


@pytest.mark.parametrize("name", list(efficientnet_lite.LITE_SCALING))
def test_architecture_matches_the_checkpoint_exactly(name):
    # assign_state_dict fails on any missing, extra or misshaped tensor, so loading with the
    # classifier proves the network has exactly the checkpoint's tensors and shapes.
    model = efficientnet_lite.build_efficientnet_lite(name, 64, weights_path(name), include_top=True)
    assert model.output_shape == (None, 1000)
    blocks = {layer.name.split(".")[1] for layer in model.layers if layer.name.startswith("blocks.")}
    assert len(blocks) == {"efficientnet_lite0": 16}.get(name, 21)


def test_weights_land_where_they_belong(lite0_state):
    model = efficientnet_lite.build_efficientnet_lite(
        "efficientnet_lite0", 64, weights_path("efficientnet_lite0")
    )
    kernel = model.get_layer("conv_stem").kernel.numpy()  # (kh, kw, in, out)
    np.testing.assert_array_equal(kernel[1, 2, 0, 5], lite0_state["_conv_stem.weight"][5, 0, 1, 2])
    depthwise = model.get_layer("blocks.3._depthwise_conv").kernel.numpy()  # (kh, kw, C, 1)
    np.testing.assert_array_equal(depthwise[4, 0, 7, 0], lite0_state["_blocks.3._depthwise_conv.weight"][7, 0, 4, 0])
    bn = model.get_layer("blocks.3._bn1")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), lite0_state["_blocks.3._bn1.running_var"])
    np.testing.assert_array_equal(bn.gamma.numpy(), lite0_state["_blocks.3._bn1.weight"])
    assert bn.epsilon == pytest.approx(1e-3)


@pytest.fixture(scope="module")
def lite0_features_model():
    return efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 32, None)


def test_missing_tensor_is_named(lite0_state, lite0_features_model):
    state = dict(lite0_state)
    del state["_blocks.7._bn1.running_mean"]
    with pytest.raises(ZooError, match=r"'_blocks\.7\._bn1\.running_mean' is missing"):
        efficientnet_lite.assign_state_dict(lite0_features_model, state, "x.pth")


def test_misshaped_tensor_is_named(lite0_state, lite0_features_model):
    state = dict(lite0_state)
    state["_blocks.2._project_conv.weight"] = np.zeros((24, 144, 3, 3), np.float32)
    with pytest.raises(ZooError, match=r"'_blocks\.2\._project_conv\.weight' has shape \(24, 144, 3, 3\)"):
        efficientnet_lite.assign_state_dict(lite0_features_model, state, "x.pth")


def test_extra_tensor_is_named(lite0_state, lite0_features_model):
    state = dict(lite0_state)
    state["_blocks.16._expand_conv.weight"] = np.zeros((1152, 320, 1, 1), np.float32)
    with pytest.raises(ZooError, match=r"unexpected tensor '_blocks\.16\._expand_conv\.weight'"):
        efficientnet_lite.assign_state_dict(lite0_features_model, state, "x.pth")


def test_larger_variant_weights_into_smaller_model_fail_by_name(lite0_features_model):
    with pytest.raises(ZooError, match=r"lite2\.pth: tensor '_blocks\.3\._depthwise_conv\.weight' has shape \(144, 1, 3, 3\)"):
        efficientnet_lite.assign_state_dict(
            lite0_features_model, load_state_dict(weights_path("efficientnet_lite2")), "lite2.pth"
        )


def test_nothing_is_assigned_when_a_tensor_is_wrong(lite0_state):
    model = efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 32, None)
    before = model.get_layer("conv_stem").kernel.numpy().copy()
    state = dict(lite0_state)
    state["_conv_head.weight"] = state["_conv_head.weight"][:10]
    with pytest.raises(ZooError, match="_conv_head.weight"):
        efficientnet_lite.assign_state_dict(model, state, "x.pth")
    np.testing.assert_array_equal(model.get_layer("conv_stem").kernel.numpy(), before)


def test_classifier_is_skipped_by_the_feature_extractor_and_features_match(lite0_state):
    path = weights_path("efficientnet_lite0")
    features = efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 64, path)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    pooled = features.predict(images, verbose=0)
    full = efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 64, path, include_top=True)
    probs = full.predict(images, verbose=0)
    logits = pooled @ lite0_state["_fc.weight"].T + lite0_state["_fc.bias"]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_keras_weights_file_loads_too(tmp_path):
    model = efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 32, weights_path("efficientnet_lite0"))
    saved = tmp_path / "lite0.weights.h5"
    model.save_weights(saved)
    again = efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 32, saved)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = efficientnet_lite.build_efficientnet_lite("efficientnet_lite1", 32, None)
    other.save_weights(tmp_path / "lite1.weights.h5")
    with pytest.raises(ZooError, match="lite1.weights.h5"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns about each block it cannot match first
        efficientnet_lite.build_efficientnet_lite("efficientnet_lite0", 32, tmp_path / "lite1.weights.h5")


# --- the port on real photos -------------------------------------------------------------

#: Share of each test class whose ImageNet prediction is right: top-1 pizza, top-1
#: cheeseburger, top-5 ice cream. Measured with PIL bilinear resizing on the 50 test images:
#: lite0 .80/.74/.82, lite1 .86/.80/.90, lite2 .84/.84/.88; thresholds sit below.
THRESHOLDS = {
    "efficientnet_lite0": (0.70, 0.60, 0.70),
    "efficientnet_lite1": (0.76, 0.70, 0.80),
    "efficientnet_lite2": (0.74, 0.74, 0.78),
}


def load_images(folder: Path, size: int) -> np.ndarray:
    """0..255 RGB float32, resized to size² with PIL's (antialiased) bilinear filter."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    images = []
    for file in files:
        with Image.open(file) as image:
            image = image.convert("RGB").resize((size, size), Image.BILINEAR)
            images.append(np.asarray(image, dtype=np.float32))
    return np.stack(images)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(THRESHOLDS))
def test_imagenet_predictions_on_food_photos(name):
    if not (FOOD / "test").is_dir():
        pytest.skip(f"food photos not found at {FOOD} (the shared data set is not on this machine)")
    size = get_backbone(name).input_size
    model = efficientnet_lite.build_efficientnet_lite(name, size, weights_path(name), include_top=True)
    rates = []
    for folder, wanted, k in (("pizza", PIZZA, 1), ("hamburger", CHEESEBURGER, 1), ("ice_cream", ICE_CREAM, 5)):
        images = normalize(load_images(FOOD / "test" / folder, size), efficientnet_lite.NORMALIZATION)
        probs = model.predict(images, batch_size=25, verbose=0)
        top_k = np.argsort(-probs, axis=1)[:, :k]
        rates.append(float(np.mean((top_k == wanted).any(axis=1))))
    minimum = THRESHOLDS[name]
    assert all(r >= m for r, m in zip(rates, minimum)), f"{name}: rates {rates}, want at least {minimum}"


#: The issue's targets for `zoo bench`'s default settings on the food photos (the seed's best,
#: TF Hub EfficientNetB0 on a GPU, reached 0.8636).
BENCH_TARGETS = {"efficientnet_lite0": 0.82, "efficientnet_lite2": 0.865}


@pytest.mark.slow
def test_zoo_bench_with_default_settings_beats_the_seed(food, tmp_path):
    import json

    from typer.testing import CliRunner

    from zoo.cli import app

    result = CliRunner().invoke(app, ["bench", *LITE, "--data", str(food), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {row["backbone"]: row for row in json.loads((tmp_path / "results.json").read_text())["backbones"]}
    assert {row["weights"] for row in rows.values()} == {"imagenet"}
    for name, target in BENCH_TARGETS.items():
        assert rows[name]["top1"] >= target, f"{name}: top-1 {rows[name]['top1']:.3f} < {target}"
    assert rows["efficientnet_lite1"]["top1"] >= 0.82
