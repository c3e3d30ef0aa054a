"""The bench at the floor: `zoo bench --all` against the forward passes it cannot avoid.

One run, on the shared food photos (750 train / 500 test), every default backbone with random
weights (speed does not depend on the weights), the configured bench defaults (mirror on,
`--runtime auto`):

1. cold: `zoo bench --all` in a fresh process with an empty cache (features, converted TFLite
   models, recorded measurements); its wall time from start to exit, its peak RSS (sampled)
   and each row's own peak;
2. warm: the same command again, everything read back from the cache;
3. floor: for each backbone, the bare forward passes over every image the bench must show it
   (train and test, each also mirrored) through the runtime its cold row chose (the compiled
   graph, or the TFLite model the cold run converted, in the pieces it chose), images decoded
   beforehand and not timed, the first batch (tracing, loading) not timed either: the least
   any bench can cost;
4. new data: the same command after the features of this dataset are cleared from the cache
   (`zoo cache clear --dataset`), as on a new dataset: the features are extracted again, while
   what is paid once per backbone (TFLite conversion, auto's timed choice, FLOPs) is kept.
   Steps 3 and 4 alternate, REPEATS times each, so that what else loads the shared machine
   falls on both alike; the least of each counts (the floor backbone by backbone);
5. memory: the two backbones whose cold rows peaked highest, each benched alone in its own
   process with a cold cache: the whole run's peak over the larger of their own peaks (each
   sampled with its child processes, the TFLite converter's);
6. runtime probe (`tflite_probe`): what the bench extracts with (zoo.runtime, `--runtime auto`:
   TFLite by LiteRT where it converts, agrees and is faster) against TensorFlow's graph on the
   same 8 train batches: the chosen runtime, img/s of both, largest relative gap. It runs in a
   fresh process with its own cold cache, as `--probe-only`, so it converts and chooses as a
   first bench does, and carries nothing over from the runs before it.

`wall_over_floor` = cold wall / sum of floors; `new_data_over_floor` = the least new-data wall /
sum of floors: what every bench after the first costs. Writes
benchmarks/results/bench_floor.json and bench_floor.md. Heavy (about 35 minutes on 2 cores):
run it under `flock /work/bench.lock`. `--probe-only` runs step 6 alone (a few minutes) and
writes benchmarks/results/bench_runtime.json.

    .venv/bin/python benchmarks/bench_floor.py [--probe-only] [--data DIR] [BACKBONE ...]   (default: --all)
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
#: Times the floor and the new-data bench are each measured, alternating.
REPEATS = 2
ZOO = Path(sys.executable).parent / "zoo"


def sampled_run(command: list[str]) -> dict:
    """`command` in its own process: wall seconds, peak RSS (of it and its children, sampled
    every 0.5 s: often enough for steps that last seconds, seldom enough to take nothing
    measurable from the bench), exit code and the end of its stderr."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)]))
        time.sleep(0.5)
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


def floor_seconds(spec, dataset, settings, runtime_name: str) -> float:
    """Seconds of bare forward passes over every view of train and test through the runtime the
    cold bench chose and recorded for this backbone (`runtime_name`, checked): TensorFlow's
    compiled graph, or the converted extractor it kept in the cache (loaded, not converted
    again), in the pieces it chose."""
    import keras
    import numpy as np

    from zoo import distributed, features, runtime
    from zoo.data import decoded_batches
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    weights = resolve(spec, "none")
    keras.utils.set_random_seed(settings.seed)  # the weights the bench drew, so its converted model fits
    extractor = feature_extractor(spec, weights)
    identity = features.identity(spec, extractor)
    forward = runtime.Extraction(spec.name, extractor, settings, distributed.make_strategy("default"), identity)
    batches = []
    for split in (dataset.train, dataset.test):
        batches += list(decoded_batches(split.files, spec.input_size, settings.batch_size, spec.interpolation))
    if settings.mirror:
        batches += [batch[:, :, ::-1] for batch in batches]
    forward.settle_on(batches[0].astype(np.float32))  # tracing or loading: not part of the floor
    if forward.runtime != runtime_name:
        raise SystemExit(f"{spec.name}: the floor would run {forward.runtime}, the bench ran {runtime_name}")
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
    runtime and its note, and the features' largest relative gap (zoo.runtime.relative_gap).
    The first batch is run until auto has chosen (its trial, which a bench spreads over the
    batches it extracts): `first_batch_seconds` includes conversion, when there is one."""
    import keras
    import numpy as np

    from zoo import distributed, features, runtime
    from zoo.data import decoded_batches
    from zoo.metrics import compiled_forward
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    weights = resolve(spec, "none")
    keras.utils.set_random_seed(settings.seed)  # as the bench draws them: a converted model it kept fits
    extractor = feature_extractor(spec, weights)
    # Only the batches timed, read to the end: a tf.data iterator left half-way hung when freed.
    files = dataset.train.files[: (batches + 1) * settings.batch_size]
    decoded = decoded_batches(files, spec.input_size, settings.batch_size, spec.interpolation)
    images = [batch.astype(np.float32) for batch in decoded]
    identity = features.identity(spec, extractor)
    extraction = runtime.Extraction(spec.name, extractor, settings, distributed.make_strategy("default"), identity)
    tf_forward = compiled_forward(extractor)
    start = time.perf_counter()
    extraction.settle_on(images[0])  # auto's trial, on the first batch again and again
    first_batch_seconds = time.perf_counter() - start
    np.asarray(tf_forward(images[0]))  # traces
    seconds = {"tf": 0.0, "chosen": 0.0}
    gap = 0.0
    for batch in images[1:]:
        outputs = {}
        for name, forward in (("tf", tf_forward), ("chosen", extraction)):
            start = time.perf_counter()
            outputs[name] = np.asarray(forward(batch))
            seconds[name] += time.perf_counter() - start
        gap = max(gap, runtime.relative_gap(outputs["chosen"], outputs["tf"]))
    models = [entry for entry in features.models() if entry["backbone"] == spec.name]
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


def fresh_probe(data: Path, names: list[str], cache: Path) -> dict:
    """`--probe-only` in a new process with the cold cache `cache`: its `tflite_probe`."""
    command = [sys.executable, __file__, "--probe-only", "--data", str(data), *names]
    subprocess.run(command, env={**os.environ, "ZOO_CACHE_DIR": str(cache)}, check=True)
    return json.loads((RESULTS / "bench_runtime.json").read_text())["tflite_probe"]


def markdown(result: dict) -> str:
    """bench_floor.md: the figures of bench_floor.json a reader looks for."""
    benched = result["backbones"] if isinstance(result["backbones"], str) else " ".join(result["backbones"])
    lines = [
        f"# `zoo bench {benched}` against its floor",
        "",
        f"Food photos ({result['images']['train']} train, {result['images']['test']} test), random weights, "
        f"defaults (epochs {result['settings']['epochs']}, batch {result['settings']['batch_size']}, mirror, "
        f"--runtime {result['settings']['runtime']}), {result['environment']['cpu_count']} cores; load average "
        + ", ".join(f"{name} {value:.1f}" for name, value in result["load_average"].items())
        + ". From `bench_floor.json`.",
        "",
        "| backbone | runtime | floor s | cold row s | extraction s | row / floor | images/s | peak RSS MB "
        "| new-data row s | warm row s | warm speed from |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        cells = [row["backbone"], row["runtime"] or "-"]
        for key, digits in (
            ("floor_seconds", 1),
            ("row_seconds", 1),
            ("extract_seconds", 1),
            ("row_over_floor", 2),
            ("images_per_sec", 1),
            ("peak_rss_mb", 0),
            ("new_data_row_seconds", 1),
            ("warm_row_seconds", 1),
        ):
            cells.append("-" if row.get(key) is None else f"{row[key]:.{digits}f}")
        cells.append(row.get("warm_speed_from") or "-")
        lines.append("| " + " | ".join(cells) + " |")
    memory = result["memory"]
    lines += [
        "",
        f"- new data (features extracted again; TFLite conversions and auto's choices kept from the first "
        f"bench): {result['new_data_wall_seconds']:.1f} s against a floor of {result['floor_seconds']:.1f} s: "
        f"**{result['new_data_over_floor']:.2f}x** (target 1.15x); the least of "
        + " and ".join(f"{s:.1f}" for s in result["new_data_runs_wall_seconds"])
        + " s, floors "
        + " and ".join(f"{s:.1f}" for s in result["floor_runs_seconds"])
        + " s, measured alternately",
        f"- everything cold, the very first bench: {result['cold_wall_seconds']:.1f} s: "
        f"**{result['wall_over_floor']:.2f}x**, of which {result['conversion_seconds']:.1f} s converting to TFLite "
        "(once per backbone)",
        f"- warm rerun: {result['warm_wall_seconds']:.1f} s, **{result['warm_over_cold']:.3f}x** the cold run "
        "(target 0.1x)",
        f"- peak RSS (with child processes): whole cold run {memory['whole_run_mb']:.0f} MB; alone, "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in memory["single_backbones_mb"].items())
        + f": **{memory['whole_over_single']:.2f}x** the larger (target 1.15x)",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    arguments = sys.argv[1:]
    data = Path(arguments.pop(arguments.index("--data") + 1)) if "--data" in arguments else DATA
    names = [name for name in arguments if name not in ("--data", "--probe-only")]
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-floor-"))
    os.environ["ZOO_CACHE_DIR"] = str(work / "cache")  # a cold cache, for the children too
    if "--probe-only" in arguments:
        return probe_only(data, names)
    load = {"before": os.getloadavg()[0]}
    cold = bench_all(data, work / "cold", names)
    load["after cold"] = os.getloadavg()[0]
    warm = bench_all(data, work / "warm", names)
    load["after warm"] = os.getloadavg()[0]

    from zoo import features
    from zoo.data import load_dataset
    from zoo.metrics import environment
    from zoo.settings import BenchSettings

    settings = BenchSettings.from_config(weights="none")
    dataset = load_dataset(data)
    specs = backbones(names)
    runtimes = {row["backbone"]: row.get("runtime") for row in cold["rows"]}
    # Floor and new-data bench alternate, REPEATS times: whatever else loads the shared machine
    # falls on both alike; the least of each counts (the floor per backbone, the bench whole).
    floor_runs, fresh_runs = [], []
    for attempt in range(1, REPEATS + 1):
        floor_runs.append(
            {spec.name: floor_seconds(spec, dataset, settings, runtimes.get(spec.name) or "tf") for spec in specs}
        )
        load[f"after floor {attempt}"] = os.getloadavg()[0]
        features.clear(dataset=data)
        fresh_runs.append(bench_all(data, work / f"new-data-{attempt}", names))
        load[f"after new data {attempt}"] = os.getloadavg()[0]
    floors = {spec.name: min(run[spec.name] for run in floor_runs) for spec in specs}
    floor = sum(floors.values())
    fresh = min(fresh_runs, key=lambda run: run["wall_seconds"])
    conversion = sum(model.get("convert_seconds") or 0.0 for model in features.models())

    ok = [row for row in cold["rows"] if row["status"] == "ok" and row.get("kind") != "ensemble"]
    singles = {}
    for row in sorted(ok, key=lambda row: row["peak_rss_mb"])[-2:]:
        os.environ["ZOO_CACHE_DIR"] = str(work / f"cache-{row['backbone']}")  # cold too, as in the --all run
        singles[row["backbone"]] = bench_all(data, work / row["backbone"], [row["backbone"]])["peak_rss_mb"]
    largest = max(singles, key=singles.__getitem__)
    os.environ["ZOO_CACHE_DIR"] = str(work / "cache")
    load["after singles"] = os.getloadavg()[0]

    warm_rows = {row["backbone"]: row for row in warm["rows"]}
    fresh_rows = {row["backbone"]: row for row in fresh["rows"]}
    per_row = [
        {
            "backbone": row["backbone"],
            "status": row["status"],
            "runtime": row.get("runtime"),
            "floor_seconds": floors.get(row["backbone"]),
            "row_seconds": row.get("total_seconds"),
            "extract_seconds": row.get("extract_seconds"),
            "head_seconds": row.get("head_seconds"),
            "validation_seconds": row.get("validation_seconds"),
            "row_over_floor": row["total_seconds"] / floors[row["backbone"]] if row["backbone"] in floors else None,
            "images_per_sec": row.get("images_per_sec"),
            "speed_from": row.get("speed_from"),
            "peak_rss_mb": row.get("peak_rss_mb"),
            "new_data_row_seconds": fresh_rows.get(row["backbone"], {}).get("total_seconds"),
            "new_data_extract_seconds": fresh_rows.get(row["backbone"], {}).get("extract_seconds"),
            "new_data_runtime_note": fresh_rows.get(row["backbone"], {}).get("runtime_note"),
            "warm_row_seconds": warm_rows.get(row["backbone"], {}).get("total_seconds"),
            "warm_speed_from": warm_rows.get(row["backbone"], {}).get("speed_from"),
            "warm_images_per_sec": warm_rows.get(row["backbone"], {}).get("images_per_sec"),
        }
        for row in cold["rows"]
    ]
    result = {
        "data": str(data),
        "backbones": names or "--all",
        "images": {"train": len(dataset.train), "test": len(dataset.test)},
        "settings": {
            key: getattr(settings, key)
            for key in ("weights", "epochs", "batch_size", "learning_rate", "seed", "mirror", "folds", "runtime")
        },
        "cold_wall_seconds": cold["wall_seconds"],
        "warm_wall_seconds": warm["wall_seconds"],
        "new_data_wall_seconds": fresh["wall_seconds"],
        "new_data_runs_wall_seconds": [run["wall_seconds"] for run in fresh_runs],
        "floor_seconds": floor,
        "floor_runs_seconds": [sum(run.values()) for run in floor_runs],
        "conversion_seconds": conversion,
        "wall_over_floor": cold["wall_seconds"] / floor,
        "new_data_over_floor": fresh["wall_seconds"] / floor,
        "warm_over_cold": warm["wall_seconds"] / cold["wall_seconds"],
        "memory": {
            "whole_run_mb": cold["peak_rss_mb"],
            "largest_row_in_run_mb": max(row["peak_rss_mb"] for row in ok),
            "single_backbones_mb": singles,
            "single_backbone": largest,
            "single_backbone_mb": singles[largest],
            "whole_over_single": cold["peak_rss_mb"] / singles[largest],
            "new_data_run_mb": fresh["peak_rss_mb"],
            "warm_run_mb": warm["peak_rss_mb"],
        },
        "rows": per_row,
        "environment": environment(),
        "load_average": load,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_floor.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "bench_floor.md").write_text(markdown(result))
    print(markdown(result), flush=True)
    # Last, so the figures above are on disk even if this part is cut short.
    result["tflite_probe"] = fresh_probe(data, names, work / "cache-probe")
    (RESULTS / "bench_floor.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
