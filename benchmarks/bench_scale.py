"""Does the bench scale? Time per image and peak memory at 2,000 and 20,000 images.

The script writes a synthetic dataset of each size (64 classes of noisy colour fields, 256×256
JPEGs, 80 % train / 20 % test) to a temporary folder, then runs `zoo bench efficientnet_lite0
--weights none` on it in a fresh process with a cold feature cache, sampling the process's RSS.
A small warm-up bench first converts the extractor for `--runtime auto` (conversion is paid
once per backbone, not per dataset), so neither size pays it. Extraction streams and decoded
images beyond the in-memory budget go to disk, so time should grow linearly with the images
(±15 %) and peak memory by at most 1.3×. Writes benchmarks/results/bench_scale.json and .md.
Heavy (about 15 minutes on 2 cores): run it under `flock /work/bench.lock`.

    .venv/bin/python benchmarks/bench_scale.py [SIZES...]   (default: 2000 20000)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_floor import sampled_run  # this folder is on sys.path when a script in it runs
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"
ZOO = Path(sys.executable).parent / "zoo"
BACKBONE, CLASSES = "efficientnet_lite0", 64


def write_dataset(root: Path, images: int, seed: int = 0) -> None:
    """`images` JPEGs over CLASSES classes, each class its own mean colour, 80/20 train/test."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, (CLASSES, 3))
    for index in range(images):
        label = index % CLASSES
        split = "test" if (index // CLASSES) % 5 == 4 else "train"
        folder = root / split / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = colours[label] + rng.normal(0, 30, (256, 256, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{index}.jpg", quality=85)


def run_bench(data: Path, out: Path) -> dict:
    """The bench in its own process: wall seconds and peak RSS (its own and its children's)."""
    command = [str(ZOO), "bench", BACKBONE, "--weights", "none", "--data", str(data), "--out", str(out)]
    run = sampled_run(command)
    if run["returncode"] != 0:
        raise SystemExit(f"zoo bench failed ({run['returncode']}):\n{run['stderr']}")
    [row] = json.loads((out / "results.json").read_text())["backbones"]
    return {"wall_seconds": run["wall_seconds"], "peak_rss_mb": run["peak_rss_mb"], "row": row}


def main() -> None:
    sizes = [int(size) for size in sys.argv[1:]] or [2000, 20000]
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-scale-"))
    os.environ["ZOO_CACHE_DIR"] = str(work / "cache")  # cold features for every size (other files)
    runs = []
    try:
        write_dataset(work / "warmup", 2 * CLASSES * 5)
        run_bench(work / "warmup", work / "out-warmup")  # converts the extractor once
        for size in sizes:
            data = work / f"data{size}"
            start = time.perf_counter()
            write_dataset(data, size)
            written = time.perf_counter() - start
            load_before = os.getloadavg()[0]
            measured = run_bench(data, work / f"out{size}")
            row = measured["row"]
            runs.append(
                {
                    "images": size,
                    "write_seconds": written,
                    "wall_seconds": measured["wall_seconds"],
                    "seconds_per_image": measured["wall_seconds"] / size,
                    "extract_seconds": row["extract_seconds"],
                    "extract_seconds_per_image": row["extract_seconds"] / size,
                    "head_seconds": row["head_seconds"],
                    "validation_seconds": row["validation_seconds"],
                    "runtime": row["runtime"],
                    "images_per_sec": row["images_per_sec"],
                    "peak_rss_mb": measured["peak_rss_mb"],
                    "row_peak_rss_mb": row["peak_rss_mb"],
                    "status": row["status"],
                    "load_average_before_after": [load_before, os.getloadavg()[0]],
                }
            )
            print(json.dumps(runs[-1]), flush=True)
            shutil.rmtree(data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    small, large = runs[0], runs[-1]
    result = {
        "backbone": BACKBONE,
        "classes": CLASSES,
        "runs": runs,
        "time_per_image_ratio": large["seconds_per_image"] / small["seconds_per_image"],
        "extract_time_per_image_ratio": large["extract_seconds_per_image"] / small["extract_seconds_per_image"],
        "peak_rss_ratio": large["peak_rss_mb"] / small["peak_rss_mb"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_scale.json").write_text(json.dumps(result, indent=1) + "\n")
    sizes_text = " and ".join(f"{run['images']:,}" for run in runs)
    lines = [
        f"# `zoo bench {BACKBONE}` at {sizes_text} images",
        "",
        f"Synthetic JPEGs, {CLASSES} classes, random weights, bench defaults, cold feature cache, the extractor "
        "converted beforehand. From `bench_scale.json`.",
        "",
        "| images | runtime | wall s | ms per image | extraction s | ms per image | head + CV s | peak RSS MB | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['images']:,} | {run['runtime']} | {run['wall_seconds']:.1f} "
            f"| {1000 * run['seconds_per_image']:.2f} "
            f"| {run['extract_seconds']:.1f} | {1000 * run['extract_seconds_per_image']:.2f} "
            f"| {run['head_seconds'] + run['validation_seconds']:.1f} | {run['peak_rss_mb']:.0f} "
            f"| {run['load_average_before_after'][0]:.1f} → {run['load_average_before_after'][1]:.1f} |"
        )
    lines += [
        "",
        f"- extraction time per image, largest over smallest: **{result['extract_time_per_image_ratio']:.2f}** "
        "(target 1 ± 0.15: extraction is the part that grows with the images)",
        f"- wall time per image, largest over smallest: {result['time_per_image_ratio']:.2f} (the wall includes "
        "what does not grow: starting, importing TensorFlow, building the model, the reports)",
        f"- peak RSS, largest over smallest: **{result['peak_rss_ratio']:.2f}** (target ≤ 1.3)",
    ]
    (RESULTS / "bench_scale.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
