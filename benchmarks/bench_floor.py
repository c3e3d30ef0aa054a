"""The bench at the floor: `zoo bench --all` against the forward passes it cannot avoid.

One run, on the shared food photos (750 train / 500 test), every default backbone with random
weights (speed does not depend on the weights), the configured bench defaults (mirror on):

1. cold: `zoo bench --all` in a fresh process with an empty cache; its wall time from start to
   exit, and its peak RSS (the whole process) and each row's own peak;
2. warm: the same command again, features read back from the cache;
3. floor: for each backbone, the bare compiled `model(x)` forward passes over every image the
   bench must show it (train and test, each also mirrored), images decoded beforehand and not
   timed, the first (tracing) batch not timed either: the least any bench can cost;
4. runtime probe (`tflite_probe`): what the bench extracts with (zoo.runtime, `--runtime auto`:
   TFLite by LiteRT where it converts, agrees and is faster) against TensorFlow's graph on the
   same 8 train batches: the chosen runtime, img/s of both, largest relative gap.

`wall_over_floor` = cold wall / sum of floors. Writes benchmarks/results/bench_floor.json.
Heavy (about 15 minutes on 2 cores): run it under `flock /work/bench.lock`. `--probe-only`
runs step 4 alone (a few minutes) and writes benchmarks/results/bench_runtime.json.

    .venv/bin/python benchmarks/bench_floor.py [--probe-only] [--data DIR] [BACKBONE ...]   (default: --all)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DATA = Path(__file__).resolve().parents[2] / "shared/data/10_food_classes_10_percent"
RESULTS = Path(__file__).resolve().parent / "results"
ZOO = Path(sys.executable).parent / "zoo"


def bench_all(data: Path, out: Path, names: list[str]) -> dict:
    """`zoo bench --all` (or the backbones `names`) in its own process: wall seconds, the
    process's peak RSS, its rows."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    command = [str(ZOO), "bench", *(names or ["--all"]), "--weights", "none", "--data", str(data), "--out", str(out)]
    finished = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if not (out / "results.json").is_file():  # exit 1 with a failed row still has results
        raise SystemExit(f"zoo bench failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rows = json.loads((out / "results.json").read_text())["backbones"]
    return {"wall_seconds": wall, "peak_rss_mb": peak_kb / 1024 if peak_kb > before else None, "rows": rows}


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


def runtime_probe(spec, dataset, settings, batches: int = 8) -> dict:
    """What the bench extracts with: `zoo.runtime.Extraction` as `zoo bench` builds it (the
    configured --runtime, default auto; converted model cached under the extractor's identity),
    against TensorFlow's traced graph, on the first `batches` train batches. The first batch
    (conversion or cache load, the choice, tracing) is timed apart; then each batch through
    both, alternating, so load on the machine falls on both alike: img/s of each, the chosen
    runtime and its note, and the features' largest relative gap (zoo.runtime.relative_gap)."""
    import keras
    import numpy as np

    from zoo import distributed, features, runtime
    from zoo.data import decoded_batches
    from zoo.metrics import compiled_forward
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    weights = resolve(spec, "none")
    extractor = feature_extractor(spec, weights)
    # Only the batches timed, read to the end: a tf.data iterator left half-way hung when freed.
    files = dataset.train.files[: (batches + 1) * settings.batch_size]
    decoded = decoded_batches(files, spec.input_size, settings.batch_size, spec.interpolation)
    images = [batch.astype(np.float32) for batch in decoded]
    identity = features.identity(spec, extractor, weights, settings.seed)
    extraction = runtime.Extraction(spec.name, extractor, settings, distributed.make_strategy("default"), identity)
    tf_forward = compiled_forward(extractor)
    start = time.perf_counter()
    extraction(images[0])
    first_batch_seconds = time.perf_counter() - start
    np.asarray(tf_forward(images[0]))  # traced already when the choice compared both; else now
    seconds = {"tf": 0.0, "chosen": 0.0}
    gap = 0.0
    for batch in images[1:]:
        outputs = {}
        for name, forward in (("tf", tf_forward), ("chosen", extraction)):
            start = time.perf_counter()
            outputs[name] = np.asarray(forward(batch))
            seconds[name] += time.perf_counter() - start
        gap = max(gap, runtime.relative_gap(outputs["chosen"], outputs["tf"]))
    models = [model for model in features.models() if model["backbone"] == spec.name]
    keras.backend.clear_session(free_memory=True)
    count = sum(map(len, images[1:]))
    return {
        "runtime": extraction.runtime,
        "note": extraction.note,
        "first_batch_seconds": first_batch_seconds,
        "convert_seconds": models[0].get("convert_seconds") if models else None,
        "tf_images_per_sec": count / seconds["tf"],
        "images_per_sec": count / seconds["chosen"],
        "speedup": seconds["tf"] / seconds["chosen"],
        "max_relative_gap": gap,
        "images_timed": count,
    }


def backbones(names: list[str]) -> list:
    """The backbones named, or those `zoo bench --all` benches."""
    from zoo.plugin_manager import catalog
    from zoo.sources import hub

    return [catalog().get(name) for name in names] or hub.select(list(catalog().backbones.values()), None)


def runtime_probes(specs, dataset) -> dict:
    """runtime_probe of every backbone, with the bench's configured settings (random weights)."""
    from zoo.settings import BenchSettings

    settings = BenchSettings.from_config(weights="none")
    probes = {}
    for spec in specs:
        probes[spec.name] = runtime_probe(spec, dataset, settings)
        print(spec.name, json.dumps(probes[spec.name]), flush=True)
    return probes


def probe_only(data: Path, names: list[str]) -> None:
    """`--probe-only`: the runtime probe alone (cold cache: conversions included), written to
    benchmarks/results/bench_runtime.json."""
    from zoo.data import load_dataset
    from zoo.metrics import environment

    load_before = os.getloadavg()[0]
    dataset = load_dataset(data)
    specs = backbones(names)
    result = {
        "data": str(data),
        "tflite_probe": runtime_probes(specs, dataset),
        "environment": environment(),
        "load_average_before_after": [load_before, os.getloadavg()[0]],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_runtime.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["tflite_probe"], indent=1))


def main() -> None:
    arguments = sys.argv[1:]
    data = Path(arguments.pop(arguments.index("--data") + 1)) if "--data" in arguments else DATA
    names = [name for name in arguments if name not in ("--data", "--probe-only")]
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-floor-"))
    os.environ["ZOO_CACHE_DIR"] = str(work / "cache")  # a cold cache, for the children too
    if "--probe-only" in arguments:
        return probe_only(data, names)
    load_before = os.getloadavg()[0]
    cold = bench_all(data, work / "cold", names)
    warm = bench_all(data, work / "warm", names)

    from zoo import config
    from zoo.data import load_dataset
    from zoo.metrics import environment

    defaults = config.bench_defaults()
    dataset = load_dataset(data)
    specs = backbones(names)
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
    result["tflite_probe"] = runtime_probes(specs, dataset)
    (RESULTS / "bench_floor.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["tflite_probe"], indent=1))


if __name__ == "__main__":
    main()
