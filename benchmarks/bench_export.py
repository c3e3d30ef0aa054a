"""Use the winner, measured: bench → export to every format → predict on the test images.

For EfficientNet-Lite0/1/2 (real ImageNet weights) and MobileNetV2 (random weights: this is
about the formats, not its accuracy), in one run on the shared food photos:
- top-1 on all test images of `.keras`, SavedModel and TFLite float32/float16/int8 exports,
  against the bench row (benched with `mirror` off, so the row scores exactly the model that
  is exported; mirror's test-time averaging would score two views per image);
- each export's file size;
- single-image latency p50 and batch throughput of TensorFlow (the Keras model as a traced
  graph) against the LiteRT interpreter (XNNPACK) at each precision, with the same number of
  threads, measured interleaved so machine load hits every runtime alike.
Writes benchmarks/results/bench_export.{json,md}. Run it under `flock /work/bench.lock`.

    .venv/bin/python benchmarks/bench_export.py [DATA]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

THREADS = os.cpu_count() or 1
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: In order of importance (the results are written after each): Lite0 carries the speed targets.
NAMES = {
    "efficientnet_lite0": "auto",
    "mobilenet_v2": "none",
    "efficientnet_lite1": "auto",
    "efficientnet_lite2": "auto",
}
DATA = Path(__file__).resolve().parents[2] / "shared/data/10_food_classes_10_percent"
RESULTS = Path(__file__).parent / "results"
#: (format, quantize) of every export, and how far its top-1 may be from the bench row's
#: (the int8 target is the Lite models', which were designed for int8).
EXPORTS = (
    ("keras", "none", 0.002),
    ("savedmodel", "none", 0.002),
    ("tflite", "none", 0.002),
    ("tflite", "float16", 0.005),
    ("tflite", "int8", 0.015),
)
LATENCY_RUNS, THROUGHPUT_BATCHES, BATCH = 40, 3, 32


def label(fmt: str, quantize: str) -> str:
    return fmt if quantize == "none" and fmt != "tflite" else f"tflite-{'f32' if quantize == 'none' else quantize}"


def top1(classifier, files, labels) -> float:
    import numpy as np

    from zoo.data import image_batches

    predicted = []
    for batch in image_batches(tuple(files), classifier.input_size, BATCH, classifier.interpolation):
        predicted += list(np.argmax(classifier(np.asarray(batch)), axis=1))
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def timings(runtimes: dict, image, batch) -> dict:
    """Latency p50 (ms, one image) and throughput (images/s, batches of BATCH) per runtime,
    interleaved: each round times every runtime once."""
    for forward in runtimes.values():  # warm up: traces, allocations, XNNPACK packing
        for _ in range(3):
            forward(image)
        forward(batch)
    latency: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(LATENCY_RUNS):
        for name, forward in runtimes.items():
            start = time.perf_counter()
            forward(image)
            latency[name].append((time.perf_counter() - start) * 1000)
    seconds: dict[str, float] = {name: 0.0 for name in runtimes}
    for _ in range(THROUGHPUT_BATCHES):
        for name, forward in runtimes.items():
            start = time.perf_counter()
            forward(batch)
            seconds[name] += time.perf_counter() - start
    return {
        name: {
            "latency_ms_p50": statistics.median(latency[name]),
            "images_per_sec": THROUGHPUT_BATCHES * len(batch) / seconds[name],
        }
        for name in runtimes
    }


def main() -> None:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    from zoo import export, get_backbone, predict
    from zoo.bench import run_bench
    from zoo.data import image_batches, load_dataset
    from zoo.settings import BenchSettings

    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    dataset = load_dataset(data)
    results: dict = {
        "data": data.name,
        "test_images": len(dataset.test),
        "threads": THREADS,
        "settings": "zoo bench defaults, mirror off",
        "backbones": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        out = Path(folder)
        for name, weights in NAMES.items():
            print(f"{name}: bench", flush=True)
            settings = BenchSettings.from_config(weights=weights, mirror=False)
            [row] = run_bench([get_backbone(name)], dataset, settings, out / "results")
            if row["status"] != "ok":
                results["backbones"][name] = {"status": "failed", "error": row["error"]}
                write(results)
                continue
            source = predict.load(out / "results" / row["classifier"])
            calibration = export.calibration_batches(data, source.meta)
            entry: dict = {"weights": row["weights"], "bench_top1": row["top1"], "formats": {}}
            runtimes = {"tensorflow": source}
            for fmt, quantize, tolerance in EXPORTS:
                key = label(fmt, quantize)
                print(f"{name}: export {key}", flush=True)
                start = time.perf_counter()
                path = export.export(
                    source.model,
                    source.meta,
                    fmt,
                    out / "export" / f"{name}-{key}",
                    quantize,
                    calibration if quantize == "int8" else None,
                )
                seconds = time.perf_counter() - start
                loaded = predict.load(path, num_threads=THREADS)
                accuracy = top1(loaded, dataset.test.files, dataset.test.labels)
                targeted = quantize != "int8" or name.startswith("efficientnet_lite")
                entry["formats"][key] = {
                    "top1": accuracy,
                    "delta_points": 100 * (accuracy - row["top1"]),
                    "within_target": abs(accuracy - row["top1"]) <= tolerance + 1e-9 if targeted else None,
                    "target_points": 100 * tolerance if targeted else None,
                    "mb": json.loads((path.parent / "zoo.json").read_text())["bytes"] / 2**20,
                    "export_seconds": seconds,
                }
                if fmt == "tflite":
                    runtimes[key] = loaded
            print(f"{name}: timing", flush=True)
            batch = np.asarray(
                next(iter(image_batches(dataset.test.files, source.input_size, BATCH, source.interpolation)))
            )
            entry["speed"] = timings(runtimes, batch[:1], batch)
            tf_ms = entry["speed"]["tensorflow"]["latency_ms_p50"]
            for speed in entry["speed"].values():
                speed["latency_vs_tensorflow"] = speed["latency_ms_p50"] / tf_ms
            formats = entry["formats"]
            entry["int8_over_f32_size"] = formats["tflite-int8"]["mb"] / formats["tflite-f32"]["mb"]
            results["backbones"][name] = entry
            write(results)  # after each backbone, so an interrupted run keeps what it measured
            tf.keras.backend.clear_session()
    print(markdown(results))


def write(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_export.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "bench_export.md").write_text(markdown(results))


def markdown(results: dict) -> str:
    keys = [label(fmt, quantize) for fmt, quantize, _ in EXPORTS]
    lines = [
        f"# Exports on {results['data']} ({results['test_images']} test images, {results['threads']} threads)",
        "",
        "Top-1 of each export on every test image against the bench row (mirror off), file size,",
        "and TensorFlow vs the LiteRT interpreter (XNNPACK), timed interleaved in one run.",
        "Targets: within 0.2 points (float16: 0.5; int8: 1.5, Lite models only); ✗ marks a miss.",
        "",
        "| backbone | weights | bench top-1 | " + " | ".join(f"{k} top-1 (Δ pts)" for k in keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for name, entry in results["backbones"].items():
        if "formats" not in entry:
            lines.append(f"| {name} | failed: {entry['error']} |")
            continue
        cells = [
            f"{f['top1']:.3f} ({f['delta_points']:+.1f}){' ✗' if f['within_target'] is False else ''}"
            for f in (entry["formats"][k] for k in keys)
        ]
        lines.append(f"| {name} | {entry['weights']} | {entry['bench_top1']:.3f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| backbone | " + " | ".join(f"{k} MB" for k in keys) + " | int8/f32 size |",
        "|---|" + "---|" * (len(keys) + 1),
    ]
    for name, entry in results["backbones"].items():
        if "formats" in entry:
            sizes = " | ".join(f"{entry['formats'][k]['mb']:.1f}" for k in keys)
            lines.append(f"| {name} | {sizes} | {entry['int8_over_f32_size']:.2f} |")
    runtimes = ["tensorflow", "tflite-f32", "tflite-float16", "tflite-int8"]
    lines += [
        "",
        "| backbone | "
        + " | ".join(f"{r} ms p50 (×TF)" for r in runtimes)
        + " | "
        + " | ".join(f"{r} img/s" for r in runtimes)
        + " |",
        "|---|" + "---|" * (2 * len(runtimes)),
    ]
    for name, entry in results["backbones"].items():
        if "speed" in entry:
            speed = entry["speed"]
            latency = " | ".join(
                f"{speed[r]['latency_ms_p50']:.1f} ({speed[r]['latency_vs_tensorflow']:.2f})" for r in runtimes
            )
            rate = " | ".join(f"{speed[r]['images_per_sec']:.0f}" for r in runtimes)
            lines.append(f"| {name} | {latency} | {rate} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
