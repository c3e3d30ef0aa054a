"""Feature extraction of the food photos with 1 and 2 local workers (`--strategy multiworker`).

Each configuration is `zoo bench` of one backbone, started as a cluster job would start it (one
process per worker, each with its TF_CONFIG and its own empty feature cache), timed side by side
in one run. Recorded: the extraction seconds (the chief's row), the whole command's wall time,
how many images each worker extracted (each exactly its share), and whether the features match
the single worker's. On a 2-core machine two workers share the same cores, so expect no speed-up.

    flock /work/bench.lock .venv/bin/python benchmarks/bench_multiworker.py [FOOD_DIR]

(FOOD_DIR defaults to ../shared/data/10_food_classes_10_percent from the repository root; a
git worktree elsewhere passes /work/shared/data/10_food_classes_10_percent.)

writes benchmarks/results/bench_multiworker.json and .md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from zoo.distributed import local_cluster

ROOT = Path(__file__).resolve().parents[1]
FOOD = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT.parent / "shared/data/10_food_classes_10_percent"
RESULTS = ROOT / "benchmarks/results"
ZOO = Path(sys.executable).with_name("zoo")
BACKBONE = "efficientnet_lite0"
# One pass over every image (no mirror views), one head epoch: extraction is what is measured.
ARGS = ["--epochs", "1", "--no-mirror", "--strategy", "multiworker", "--worker-timeout", "900"]


def run(workers: int, scratch: Path) -> dict:
    """Bench BACKBONE with `workers` local workers; the chief's row and the wall time. A run that
    fails inside zoo still has the chief's row (status failed, its error): it is recorded, not lost."""
    configs = local_cluster(workers) if workers > 1 else [None]
    processes = []
    start = time.perf_counter()
    for index, config in enumerate(configs):
        env = {**os.environ, "ZOO_CACHE_DIR": str(scratch / f"cache-{workers}-{index}")}
        env.pop("TF_CONFIG", None)
        if config:
            env["TF_CONFIG"] = config
        out = scratch / f"out-{workers}-{index}"
        command = [str(ZOO), "bench", BACKBONE, "--data", str(FOOD), "--out", str(out), *ARGS]
        processes.append(
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        )
    errors = [process.communicate()[1] for process in processes]
    wall = time.perf_counter() - start
    results = scratch / f"out-{workers}-0" / "results.json"
    if not results.is_file():
        raise SystemExit(f"{workers} workers: zoo bench wrote no results: {errors[0][-2000:]}")
    [row] = json.loads(results.read_text())["backbones"]
    return {"workers": workers, "wall_seconds": wall, "row": row, "exit_codes": [p.returncode for p in processes]}


def features(scratch: Path, workers: int, index: int) -> dict[str, np.ndarray]:
    folder = scratch / f"cache-{workers}-{index}" / "features"
    return {path.name.split("-")[1]: np.load(path) for path in folder.glob("*.npy")}


def main() -> None:
    if not FOOD.is_dir():
        raise SystemExit(f"the food photos are not at {FOOD}")
    with tempfile.TemporaryDirectory(prefix="zoo-bench-multiworker-") as folder:
        scratch = Path(folder)
        runs = [run(workers, scratch) for workers in (1, 2)]
        single = features(scratch, 1, 0)
        differences = {
            f"worker {index}": max((float(np.abs(features(scratch, 2, index)[split] - single[split]).max())
                                    for split in single if split in features(scratch, 2, index)), default=None)
            for index in range(2)
        }  # fmt: skip
    images = sum(runs[0]["row"]["worker_images"])  # train and test, one view each
    configurations = []
    for each in runs:
        row = each["row"]
        extract = row.get("extract_seconds")
        configurations.append({
            "workers": each["workers"],
            "status": row["status"],
            "error": row.get("error"),
            "exit_codes": each["exit_codes"],
            "wall_seconds": round(each["wall_seconds"], 1),
            "extract_seconds": round(extract, 1) if extract else None,
            "extract_images_per_second": round(images / extract, 1) if extract else None,
            "images_per_worker": row.get("worker_images"),
            "top1": row.get("top1"),
        })  # fmt: skip
    one, two = configurations
    result = {
        "benchmark": "bench_multiworker",
        "backbone": BACKBONE,
        "data": os.path.relpath(FOOD, ROOT),
        "images": images,
        "command": f"zoo bench {BACKBONE} --data {os.path.relpath(FOOD, ROOT)} {' '.join(ARGS)}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "configurations": configurations,
        "extraction_speedup_2_vs_1": (
            round(one["extract_seconds"] / two["extract_seconds"], 2)
            if one["extract_seconds"] and two["extract_seconds"]
            else None
        ),
        "max_feature_difference_vs_1_worker": differences,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_multiworker.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# bench_multiworker: feature extraction with 1 and 2 local workers",
        "",
        (
            f"`{result['command']}` — {images} food photos through {BACKBONE}, each worker a `zoo bench` "
            f"process with its own TF_CONFIG, on this machine ({os.cpu_count()} CPUs, no GPU)."
        ),
        "",
        "| workers | status | extraction s | images/s | images per worker | wall s | top-1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for each in configurations:
        shares = " + ".join(map(str, each["images_per_worker"] or [])) or "-"
        lines.append(
            f"| {each['workers']} | {each['status']} | {each['extract_seconds']} | "
            f"{each['extract_images_per_second']} | {shares} | {each['wall_seconds']} | {each['top1']} |"
        )
    lines += [
        "",
        (
            f"Extraction with 2 workers vs 1: {result['extraction_speedup_2_vs_1']}x. Both workers share the same "
            f"{os.cpu_count()} cores here, so no speed-up is expected. Images per worker are each worker's share "
            "(`worker_images` of the chief's row)."
        ),
        f"Largest difference of any feature from the single worker's: {differences}.",
        "",
    ]
    lines += [f"{each['workers']} workers failed: {each['error']}" for each in configurations if each["error"]]
    (RESULTS / "bench_multiworker.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
