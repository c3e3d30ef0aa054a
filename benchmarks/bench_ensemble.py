"""How much an ensemble of EfficientNet-Lite heads adds on the food photos, and what it costs.

Runs `zoo bench` (its defaults, 5-fold validation, --ensemble-size 3) on the three Lite
backbones with their real weights, then writes each row's val_top1 and test top-1, the
ensemble's members, top-1 and cost to benchmarks/results/bench_ensemble.{json,md}. The members
are chosen on the out-of-fold predictions of train/ alone; for reference only, the test top-1
of every possible combination is listed too (the bench never looks at it). The ensemble row is
then exported as one model (`.keras` and TFLite float32, through `zoo export`'s code) and run on
every test image: its top-1, file sizes, and TensorFlow against TFLite latency (timed as
benchmarks/bench_export.py times single rows).

    flock /work/bench.lock .venv/bin/python benchmarks/bench_ensemble.py [DATA]
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared/data/10_food_classes_10_percent"
BACKBONES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
TARGET_POINTS = 1.5  # the ensemble at least 1.5 points of top-1 above the best single row
RESULTS = Path(__file__).parent / "results"
COST = ("params", "flops_per_image", "weights_file_mb", "peak_rss_mb", "latency_ms_p50", "images_per_sec")


def combinations(out_dir: Path, labels: np.ndarray) -> dict[str, float]:
    """Test top-1 of the average of every pair and triple of rows (reference, not a choice)."""
    from zoo.ensemble import Predictions, predictions_path

    test = {name: Predictions.load(predictions_path(out_dir, name)).test for name in BACKBONES}
    scores = {}
    for size in (2, 3):
        for combo in itertools.combinations(BACKBONES, size):
            mean = np.mean([test[name] for name in combo], axis=0)
            scores["+".join(combo)] = float(np.mean(mean.argmax(axis=1) == labels))
    return scores


def export_ensemble(out_dir: Path, dataset) -> dict:
    """The bench's ensemble row exported and run on every test image, one view per image (the
    row itself scored each image with its mirror image too, so the two top-1 differ a little)."""
    import numpy as np
    from bench_export import BATCH, timings, top1

    from zoo import export, predict
    from zoo.data import image_batches

    kept = predict.load(out_dir / export.ENSEMBLE_FOLDER)
    result: dict = {"input_size": kept.input_size, "formats": {}}
    runtimes = {"tensorflow": kept}
    for fmt in ("keras", "tflite"):
        path = export.export(kept.model, kept.meta, fmt, out_dir / "export" / fmt)
        loaded = predict.load(path)
        result["formats"][fmt] = {
            "top1": top1(loaded, dataset.test.files, dataset.test.labels),
            "mb": json.loads((path.parent / "zoo.json").read_text())["bytes"] / 2**20,
        }
        if fmt == "tflite":
            runtimes["tflite-f32"] = loaded
    batch = np.asarray(next(iter(image_batches(dataset.test.files, kept.input_size, BATCH, kept.interpolation))))
    result["speed"] = timings(runtimes, batch[:1], batch)
    return result


def markdown(result: dict) -> str:
    rows, ensemble = result["rows"], result["ensemble"]
    lines = [
        f"# Ensemble of EfficientNet-Lite heads on {result['data']}",
        "",
        f"zoo bench defaults, {result['folds']}-fold cross-validation on train/, --ensemble-size 3.",
        "",
        "| row | val_top1 (mean ± std over folds) | test top-1 | GFLOPs | params | p50 latency ms | img/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['backbone']} | {row['val_top1']:.3f} ± {row['val_top1_std']:.3f} | {row['top1']:.3f} | "
            f"{row['flops_per_image'] / 1e9:.2f} | {row['params'] / 1e6:.1f}M | {row['latency_ms_p50']:.1f} | "
            f"{row['images_per_sec']:.1f} |"
        )
    if ensemble:
        mix = ", ".join(f"{name} {weight:.3f}" for name, weight in ensemble["members"].items())
        lines.append(
            f"| **{ensemble['backbone']}** | {ensemble['val_top1']:.3f} ± {ensemble['val_top1_std']:.3f} | "
            f"**{ensemble['top1']:.3f}** | {ensemble['flops_per_image'] / 1e9:.2f} | {ensemble['params'] / 1e6:.1f}M | "
            f"{ensemble['latency_ms_p50']:.1f} | {ensemble['images_per_sec']:.1f} |"
        )
        verdict = "met" if result["target_met"] else "NOT met"
        lines += [
            "",
            f"Ensemble members and weights, chosen on the out-of-fold predictions of train/ only: {mix}.",
            f"Ensemble test top-1 {ensemble['top1']:.3f} vs the best single row's {result['best_single_top1']:.3f}: "
            f"{result['gain_points']:+.1f} points (target: at least +{TARGET_POINTS}, {verdict}). Its cost is "
            "the sum of its members' (FLOPs, parameters, latency; images/s as every image goes through every member).",
        ]
    else:
        lines += ["", "No ensemble: on validation no mix beat the best single row."]
    exported = result.get("export")
    if exported:
        formats, speed = exported["formats"], exported["speed"]
        lines += [
            "",
            f"The ensemble exported as one model ({exported['input_size']} px input), on every test image "
            "(one view each; the row above also averaged each image with its mirror image):",
            "",
            "| format | top-1 | MB | ms p50 (one image) | img/s |",
            "|---|---|---|---|---|",
        ]
        for fmt, runtime in (("keras", "tensorflow"), ("tflite", "tflite-f32")):
            lines.append(
                f"| {fmt} | {formats[fmt]['top1']:.3f} | {formats[fmt]['mb']:.1f} | "
                f"{speed[runtime]['latency_ms_p50']:.1f} | {speed[runtime]['images_per_sec']:.1f} |"
            )
    lines += ["", "Every combination's test top-1, for reference only (not used to choose):", ""]
    lines += [f"- {combo}: {top1:.3f}" for combo, top1 in result["all_combinations_test_top1"].items()]
    environment = result["environment"]
    lines += ["", "Measured on: " + ", ".join(f"{key} {value}" for key, value in environment.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    from zoo.bench import BenchSettings, run_bench
    from zoo.data import load_dataset
    from zoo.plugin_manager import catalog
    from zoo.report import read_results

    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    dataset = load_dataset(data)
    settings = BenchSettings.from_config(weights="imagenet")
    specs = [catalog().get(name) for name in BACKBONES]
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as folder:
        out_dir = Path(folder)
        rows = run_bench(specs, dataset, settings, out_dir, ensemble_size=3)
        failed = [row for row in rows if row["status"] != "ok"]
        if failed:
            sys.exit(f"{failed[0]['backbone']} failed: {failed[0]['error']}")
        environment = read_results(out_dir)["environment"]
        reference = combinations(out_dir, np.asarray(dataset.test.labels))
        ensemble = next((row for row in rows if row.get("kind") == "ensemble"), None)
        exported = export_ensemble(out_dir, dataset) if ensemble and ensemble.get("classifier") else None
    singles = [row for row in rows if row.get("kind") != "ensemble"]
    best = max(row["top1"] for row in singles)
    keep = ("backbone", "kind", "members", "val_top1", "val_top1_std", "val_log_loss", "top1", "top5", *COST)
    result = {
        "data": data.name,
        "folds": settings.folds,
        "ensemble_size": 3,
        "rows": [{key: row.get(key) for key in keep} for row in singles],
        "ensemble": {key: ensemble.get(key) for key in keep} if ensemble else None,
        "best_single_top1": best,
        "gain_points": round((ensemble["top1"] - best) * 100, 6) if ensemble else None,
        "target_points": TARGET_POINTS,
        "target_met": bool(ensemble and round((ensemble["top1"] - best) * 100, 6) >= TARGET_POINTS),
        "all_combinations_test_top1": reference,
        "export": exported,
        "environment": environment,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_ensemble.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "bench_ensemble.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
