"""--strategy multiworker for real: worker processes on localhost, each with its own TF_CONFIG.

MultiWorkerMirroredStrategy must be created before any other TensorFlow work in a process, so
every bench here runs as a `zoo` process of its own, as a cluster job would start it.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_PLUGIN

from zoo.distributed import local_cluster

ZOO = Path(sys.executable).with_name("zoo")
TIMEOUT = 20  # --worker-timeout for these tests: how long a worker waits for a dead peer


@pytest.fixture
def cluster(tmp_path, tiny_dataset):
    """Starts `zoo bench` of two tiny CNNs as worker `index` of two (or alone, without TF_CONFIG)."""
    plugin = tmp_path / "tiny_plugin.py"
    plugin.write_text(TINY_PLUGIN)
    configs = local_cluster(2)

    def start(name, index=None):
        env = {**os.environ, "ZOO_PLUGINS": str(plugin), "ZOO_CACHE_DIR": str(tmp_path / f"cache-{name}")}
        env.pop("TF_CONFIG", None)
        if index is not None:
            env["TF_CONFIG"] = configs[index]
        command = [
            str(ZOO), "bench", "tiny_cnn", "tiny_cnn_b", "--data", str(tiny_dataset), "--weights", "none",
            "--epochs", "3", "--batch-size", "4", "--strategy", "multiworker", "--worker-timeout", str(TIMEOUT),
            "--out", str(tmp_path / f"out-{name}"),
        ]  # fmt: skip
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    return start


def finish(process, timeout=240):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def cache_entries(folder):
    return {path.name: np.load(path) for path in (folder / "features").glob("*.npy")}


def test_two_workers_extract_their_shares_and_match_a_single_process(cluster, tmp_path):
    chief, other = cluster("chief", 0), cluster("other", 1)
    (chief_rc, _, chief_err), (other_rc, _, other_err) = finish(chief), finish(other)
    assert chief_rc == 0, chief_err
    assert other_rc == 0, other_err
    assert "Worker 1 done; the chief writes the results" in other_err
    assert not (tmp_path / "out-other").exists(), "a non-chief worker wrote into --out"
    alone_rc, _, alone_err = finish(cluster("alone"))
    assert alone_rc == 0, alone_err

    results = json.loads((tmp_path / "out-chief" / "results.json").read_text())
    single = json.loads((tmp_path / "out-alone" / "results.json").read_text())
    assert results["environment"]["workers"] == 2 and single["environment"]["workers"] == 1
    for row, alone in zip(results["backbones"], single["backbones"]):
        assert row["status"] == "ok", row["error"]
        assert (row["top1"], row["per_class_accuracy"]) == (
            alone["top1"],
            alone["per_class_accuracy"],
        )
        # 12 train and 6 test images, each also mirrored: 36 in all, 18 per worker
        assert row["worker_images"] == [18, 18] and alone["worker_images"] == [36]
    assert (tmp_path / "out-chief" / "tensorboard" / "tiny_cnn").is_dir()

    # Every worker ends with the same cache entries a single process makes.
    entries = [cache_entries(tmp_path / f"cache-{name}") for name in ("chief", "other", "alone")]
    assert set(entries[0]) == set(entries[1]) == set(entries[2]) and len(entries[0]) == 8
    for name, features in entries[2].items():
        np.testing.assert_allclose(entries[0][name], features, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(entries[1][name], features, rtol=1e-5, atol=1e-6)


def test_a_killed_worker_makes_the_other_stop_with_one_line(cluster, tmp_path):
    chief = cluster("chief", 0)
    other = cluster("other", 1)
    deadline = time.monotonic() + 120
    # Kill worker 1 once the chief has started its first backbone (its TensorBoard folder exists).
    while not (tmp_path / "out-chief" / "tensorboard").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    other.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    rc, _, err = finish(chief, timeout=TIMEOUT + 60)
    assert time.monotonic() - killed_at < TIMEOUT + 30
    assert rc == 2, err
    [line] = [line for line in err.splitlines() if line.startswith("Error:")]
    assert "another worker stopped answering" in line and "--resume" in line
    assert "Traceback" not in err


# Two logical CPU devices stand in for two GPUs; they must be made before TensorFlow starts.
SPLIT_OVER_DEVICES = """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from zoo import distributed, metrics
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
keras.utils.set_random_seed(0)
with strategy.scope():
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs)))
whole = metrics.compiled_forward(model)
seen = []
split = distributed.split_over_devices(strategy, lambda images: seen.append(len(images)) or whole(images))
images = np.random.default_rng(0).uniform(0, 255, (5, 16, 16, 3)).astype("float32")
print(json.dumps({
    "difference": max(float(np.abs(split(batch) - np.asarray(whole(batch))).max()) for batch in (images, images[:1])),
    "seen": seen,
}))
"""


def test_mirrored_extraction_splits_each_batch_over_the_local_devices():
    result = subprocess.run([sys.executable, "-c", SPLIT_OVER_DEVICES], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["difference"] < 1e-5
    assert sorted(report["seen"]) == [0, 1, 2, 3]  # 5 rows as 3 + 2, then 1 row as 1 + 0
