"""The bench at the floor: `zoo bench --all` against the forward passes it cannot avoid.

One run, on the shared food photos (750 train / 500 test), every default backbone with random
weights (speed does not depend on the weights), the configured bench defaults (mirror on):

1. cold: `zoo bench --all` in a fresh process with an empty cache; its wall time from start to
   exit, and its peak RSS (the whole process) and each row's own peak;
2. warm: the same command again, features read back from the cache;
3. floor: for each backbone, the bare compiled `model(x)` forward passes over every image the
   bench must show it (train and test, each also mirrored), images decoded beforehand and not
   timed, the first (tracing) batch not timed either: the least any bench can cost;
4. TFLite probe: each extractor converted (zoo.tflite) and run by LiteRT (XNNPACK, 2 threads)
   against TensorFlow's graph on the same 8 train batches: img/s of both, largest relative gap.

`wall_over_floor` = cold wall / sum of floors. Writes benchmarks/results/bench_floor.json.
Heavy (about 15 minutes on 2 cores): run it under `flock /work/bench.lock`.

    .venv/bin/python benchmarks/bench_floor.py [--data DIR] [BACKBONE ...]   (default: --all)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DATA = Path(__file__).resolve().parents[2] / "shared/data/10_food_classes_10_percent"
RESULTS = Path(__file__).resolve().parent / "results"
ZOO = Path(sys.executable).parent / "zoo"


def sampled_run(command: list[str]) -> dict:
    """`command` in its own process: wall seconds, peak RSS (of it and its children, sampled
    every 0.1 s), exit code and the end of its stderr."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)]))
        time.sleep(0.1)
    stderr = process.stderr.read() if process.stderr else ""
    return {
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_mb": peak / 2**20,
        "returncode": process.returncode,
        "stderr": stderr[-3000:],
    }


def bench_all(data: Path, out: Path, names: list[str]) -> dict:
    """`zoo bench --all` (or the backbones `names`) in its own process: wall seconds, the
    process's peak RSS, its rows."""
    command = [str(ZOO), "bench", *(names or ["--all"]), "--weights", "none", "--data", str(data), "--out", str(out)]
    run = sampled_run(command)
    if not (out / "results.json").is_file():  # exit 1 with a failed row still has results
        raise SystemExit(f"zoo bench failed ({run['returncode']}):\n{run['stderr']}")
    rows = json.loads((out / "results.json").read_text())["backbones"]
    return {"wall_seconds": run["wall_seconds"], "peak_rss_mb": run["peak_rss_mb"], "rows": rows}


def floor_seconds(spec, dataset, batch_size: int, mirror: bool) -> float:
    """Seconds of bare compiled forward passes over every view of train and test."""
    import keras
    import numpy as np

    from zoo.data import decoded_batches
    from zoo.metrics import compiled_forward
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    forward = compiled_forward(feature_extractor(spec, resolve(spec, "none")))
    batches = []
    for split in (dataset.train, dataset.test):
        batches += list(decoded_batches(split.files, spec.input_size, batch_size, spec.interpolation))
    if mirror:
        batches += [batch[:, :, ::-1] for batch in batches]
    np.asarray(forward(batches[0].astype(np.float32)))  # tracing: not part of the floor
    total = 0.0
    for batch in batches:
        images = batch.astype(np.float32)
        start = time.perf_counter()
        np.asarray(forward(images))
        total += time.perf_counter() - start
    keras.backend.clear_session(free_memory=True)
    return total


def tflite_probe(spec, dataset, batch_size: int, batches: int = 8) -> dict:
    """The same extractor through TensorFlow's graph and through LiteRT (XNNPACK, 2 threads) on
    the first `batches` train batches: img/s of each and the features' largest relative gap."""
    import keras
    import numpy as np

    from zoo import tflite
    from zoo.data import decoded_batches
    from zoo.metrics import compiled_forward
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    extractor = feature_extractor(spec, resolve(spec, "none"))
    images = [
        batch.astype(np.float32)
        for _, batch in zip(
            range(batches), decoded_batches(dataset.train.files, spec.input_size, batch_size, spec.interpolation)
        )
    ]
    start = time.perf_counter()
    try:
        runner = tflite.Runner(tflite.convert(extractor), num_threads=2)
    except Exception as exc:  # a backbone that does not convert is a finding, not a crash
        return {"converts": False, "error": str(exc).splitlines()[0][:300]}
    convert_seconds = time.perf_counter() - start

    def rate(forward) -> tuple[float, list]:
        outputs = [np.asarray(forward(images[0]))]  # warm-up (tracing, tensor allocation)
        start = time.perf_counter()
        outputs = [np.asarray(forward(batch)) for batch in images]
        return sum(map(len, images)) / (time.perf_counter() - start), outputs

    tf_rate, tf_out = rate(compiled_forward(extractor))
    lite_rate, lite_out = rate(runner)
    gap = max(float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-12)) for a, b in zip(tf_out, lite_out))
    keras.backend.clear_session(free_memory=True)
    return {
        "converts": True,
        "convert_seconds": convert_seconds,
        "tf_images_per_sec": tf_rate,
        "tflite_images_per_sec": lite_rate,
        "speedup": lite_rate / tf_rate,
        "max_relative_gap": gap,
    }


def main() -> None:
    arguments = sys.argv[1:]
    data = Path(arguments.pop(arguments.index("--data") + 1)) if "--data" in arguments else DATA
    names = [name for name in arguments if name != "--data"]
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-floor-"))
    os.environ["ZOO_CACHE_DIR"] = str(work / "cache")  # a cold cache, for the children too
    load_before = os.getloadavg()[0]
    cold = bench_all(data, work / "cold", names)
    warm = bench_all(data, work / "warm", names)

    from zoo import config, hub
    from zoo.data import load_dataset
    from zoo.metrics import environment
    from zoo.plugin_manager import catalog

    defaults = config.bench_defaults()
    dataset = load_dataset(data)
    specs = [catalog().get(name) for name in names] or hub.select(list(catalog().backbones.values()), None)
    floors = {spec.name: floor_seconds(spec, dataset, defaults["batch_size"], defaults["mirror"]) for spec in specs}
    floor = sum(floors.values())
    warm_seconds = {row["backbone"]: row.get("total_seconds") for row in warm["rows"]}
    per_row = [
        {
            "backbone": row["backbone"],
            "status": row["status"],
            "floor_seconds": floors.get(row["backbone"]),
            "row_seconds": row.get("total_seconds"),
            "extract_seconds": row.get("extract_seconds"),
            "row_over_floor": row["total_seconds"] / floors[row["backbone"]] if row["backbone"] in floors else None,
            "peak_rss_mb": row.get("peak_rss_mb"),
            "warm_row_seconds": warm_seconds.get(row["backbone"]),
        }
        for row in cold["rows"]
    ]
    result = {
        "data": str(data),
        "backbones": names or "--all",
        "images": {"train": len(dataset.train), "test": len(dataset.test)},
        "settings": {"weights": "none", **defaults},
        "runtime": "tf",
        "cold_wall_seconds": cold["wall_seconds"],
        "warm_wall_seconds": warm["wall_seconds"],
        "floor_seconds": floor,
        "wall_over_floor": cold["wall_seconds"] / floor,
        "warm_over_cold": warm["wall_seconds"] / cold["wall_seconds"],
        "peak_rss_mb_whole_run": cold["peak_rss_mb"],
        "peak_rss_mb_largest_row": max((row["peak_rss_mb"] or 0) for row in per_row),
        "rows": per_row,
        "environment": environment(),
        "load_average_before_after": [load_before, os.getloadavg()[0]],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_floor.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: value for key, value in result.items() if key not in ("rows", "environment")}, indent=1))
    # Last, so the figures above are on disk even if this part is cut short.
    result["tflite_probe"] = {spec.name: tflite_probe(spec, dataset, defaults["batch_size"]) for spec in specs}
    (RESULTS / "bench_floor.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["tflite_probe"], indent=1))


if __name__ == "__main__":
    main()
