"""Does the embedded sample dataset rank backbones? The pretrained EfficientNet-Lite
backbones on it (the ones `make bench` can get weights for offline), then the same three with
random weights (the target: each pretrained one at least 20 points above its random self).

Runs `zoo bench efficientnet_lite0 efficientnet_lite1 efficientnet_lite2` (default settings) into
benchmarks/results/sample_bench/ and renders its report.html there (the committed example
report), then the three with `--weights none` into
benchmarks/results/sample_bench_random/, and writes benchmarks/results/bench_sample.md: each
Lite backbone's top-1, pretrained and (where run) random, and whether it is in the 60-95 % band.

    flock /work/bench.lock .venv/bin/python benchmarks/bench_sample.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
ZOO = str(Path(sys.executable).parent / "zoo")


def bench(out: Path, *arguments: str) -> dict:
    """One `zoo bench` run into `out` (started afresh); its results.json."""
    subprocess.run([ZOO, "bench", *arguments, "--out", str(out), "--no-cache"], check=False)
    return json.loads((out / "results.json").read_text())


def main() -> None:
    pretrained = bench(RESULTS / "sample_bench", *LITE)
    subprocess.run([ZOO, "report", str(RESULTS / "sample_bench"), "--html"], check=True)
    random = bench(RESULTS / "sample_bench_random", *LITE, "--weights", "none")
    rows = {row["backbone"]: row for row in pretrained["backbones"]}
    random_rows = {row["backbone"]: row for row in random["backbones"]}
    lines = [
        "# The embedded sample dataset ranks backbones",
        "",
        "The EfficientNet-Lite backbones, pretrained and with random weights, on zoo's embedded sample dataset: "
        f"{len(pretrained['dataset']['classes'])} classes, {pretrained['dataset']['train_images']} train and "
        f"{pretrained['dataset']['test_images']} test images; default settings, `--no-cache`. "
        "Sources: `sample_bench/results.json` and `sample_bench_random/results.json`.",
        "",
        "| backbone | top-1 pretrained | top-1 random weights | gap (points) | pretrained in 60-95 % |",
        "|---|---|---|---|---|",
    ]
    for name in LITE:
        top1, chance = rows[name].get("top1"), random_rows.get(name, {}).get("top1")
        if top1 is None:
            lines.append(f"| {name} | failed | - | - | - |")
            continue
        gap = f"{(top1 - chance) * 100:.1f}" if chance is not None else "-"
        ok = 0.60 <= top1 <= 0.95 and rows[name]["weights"] != "random"
        random_cell = f"{chance:.1%}" if chance is not None else "not run"
        lines.append(f"| {name} | {top1:.1%} | {random_cell} | {gap} | {'yes' if ok else 'NO'} |")
    summary = pretrained.get("statistics", {}).get("summary", "")
    if summary:
        lines += ["", f"Statistics of the pretrained run: {summary}"]
    environment = pretrained.get("environment", {})
    lines += ["", f"Measured on: {environment.get('cpu')}, {environment.get('cpu_count')} cores, "
              f"TensorFlow {environment.get('tensorflow')}, zoo {pretrained.get('zoo_version')}."]
    (RESULTS / "bench_sample.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
