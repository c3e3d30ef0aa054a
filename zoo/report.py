"""Bench results: the comparison table on screen, and results.json / .csv / .md / a plot on disk.

Nothing here imports TensorFlow, so `zoo report DIR` re-renders everything from a saved
results.json anywhere.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path

from rich.table import Table

from zoo import atomic
from zoo.errors import ZooError

FORMAT = "zoo-bench-results/1"
LOCK_FILE = ".zoo-bench.lock"

#: (row key, header, which value is best: "max", "min" or None).
COLUMNS = (
    ("backbone", "Backbone", None),
    ("top1", "Top-1", "max"),
    ("top1_frozen", "Frozen", "max"),
    ("top5", "Top-5", "max"),
    ("images_per_sec", "Img/s", "max"),
    ("latency_ms_p50", "p50 ms", "min"),
    ("latency_ms_p95", "p95 ms", "min"),
    ("params", "Params", "min"),
    ("flops_per_image", "GFLOPs", "min"),
    ("peak_rss_mb", "Peak MB", "min"),
    ("extract_seconds", "Extract s", None),
    ("head_seconds", "Head s", None),
    ("finetune_seconds", "Tune s", None),
    ("feature_cache", "Cache", None),
    ("weights", "Weights", None),
    ("status", "Status", None),
)
_TEXT = ("backbone", "feature_cache", "weights", "status")


def ranked(rows: list[dict]) -> list[dict]:
    """Rows best first: finished ones by top-1, failed ones last."""
    return sorted(rows, key=lambda row: (row["status"] != "ok", -(row.get("top1") or 0.0)))


def random_weights(rows: list[dict]) -> list[str]:
    """Names of the backbones that ran without pretrained weights."""
    return [row["backbone"] for row in rows if row["status"] == "ok" and row.get("weights") == "random"]


def _columns(rows: list[dict]) -> list[tuple[str, str, str | None]]:
    """The columns worth showing: those with a value somewhere; top-1 frozen only when fine-tuning."""
    finetuned = any(row.get("mode") == "finetune" for row in rows)
    return [
        column
        for column in COLUMNS
        if column[0] in ("backbone", "status")
        or (any(row.get(column[0]) is not None for row in rows) and (column[0] != "top1_frozen" or finetuned))
    ]


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("top1", "top1_frozen", "top5"):
        return f"{value:.1%}"
    if key == "params":
        return f"{value / 1e6:.1f}M"
    if key == "flops_per_image":
        return f"{value / 1e9:.2f}"
    if key == "peak_rss_mb":
        return f"{value:.0f}"
    if key == "weights" and value == "random":
        return "RANDOM"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _best(rows: list[dict], columns) -> dict:
    ok = [row for row in rows if row["status"] == "ok"]
    best = {}
    for key, _, direction in columns:
        values = [row[key] for row in ok if row.get(key) is not None]
        if direction and values:
            best[key] = max(values) if direction == "max" else min(values)
    return best


def results_table(rows: list[dict], title: str = "zoo bench") -> Table:
    """A rich table, best first; the best value of each measured column in bold green."""
    rows = ranked(rows)
    columns = _columns(rows)
    best = _best(rows, columns)
    table = Table(title=title)
    for key, header, _ in columns:
        table.add_column(header, justify="left" if key in _TEXT else "right", no_wrap=key == "backbone")
    for row in rows:
        cells = []
        for key, _, _ in columns:
            text = _cell(key, row.get(key))
            if row["status"] == "ok" and key in best and row.get(key) == best[key]:
                text = f"[bold green]{text}[/]"
            elif key == "weights" and text == "RANDOM":
                text = f"[bold red]{text}[/]"
            elif key == "status" and row["status"] != "ok":
                text = f"[red]{row['status']}[/]"  # the error is printed below the table
            cells.append(text)
        table.add_row(*cells)
    return table


def markdown(results: dict) -> str:
    """The comparison as Markdown, best values in bold, ready to paste into a README."""
    rows = ranked(results["backbones"])
    columns = _columns(rows)
    best = _best(rows, columns)
    dataset = results.get("dataset", {})
    lines = [f"# zoo bench: {Path(dataset.get('root', '')).name or 'results'}", ""]
    if dataset:
        lines += [
            f"{len(dataset.get('classes', []))} classes, {dataset.get('train_images')} train and "
            f"{dataset.get('test_images')} test images from `{dataset.get('root')}`.",
            "",
        ]
    lines += ["| " + " | ".join(header for _, header, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _, _ in columns:
            text = _cell(key, row.get(key))
            if key == "status" and row["status"] != "ok":
                text = f"failed: {row['error']}"
            elif row["status"] == "ok" and key in best and row.get(key) == best[key]:
                text = f"**{text}**"
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    untrained = random_weights(rows)
    if untrained:
        lines += [
            "",
            f"**Random weights** (no pretrained file): {', '.join(untrained)}; "
            "their accuracy says nothing about transfer learning.",
        ]
    environment = results.get("environment", {})
    if environment:
        lines += ["", "Measured on: " + ", ".join(f"{key} {value}" for key, value in environment.items()) + "."]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    """One line per backbone; nested fields (confusion matrix, per-class accuracy) as JSON."""
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    return buffer.getvalue()


def plot(rows: list[dict], path: Path) -> None:
    """accuracy_vs_speed.png: top-1 against images/s, marker area by parameter count."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    points = [r for r in rows if r["status"] == "ok" and r.get("top1") is not None and r.get("images_per_sec")]
    figure, axes = pyplot.subplots(figsize=(8, 5.5), dpi=120)
    try:
        if points:
            largest = max(r["params"] for r in points)
            for row in points:
                area = 60 + 1400 * row["params"] / largest
                axes.scatter(row["images_per_sec"], row["top1"] * 100, s=area, alpha=0.55, edgecolors="black")
                label = f"{row['backbone']} ({row['params'] / 1e6:.1f}M)"
                axes.annotate(
                    label,
                    (row["images_per_sec"], row["top1"] * 100),
                    textcoords="offset points",
                    xytext=(8, 6),
                    fontsize=9,
                )
            axes.set_xscale("log")
            axes.margins(0.25)
        else:
            axes.text(0.5, 0.5, "no finished backbones", ha="center", va="center", transform=axes.transAxes)
        axes.set_xlabel("inference throughput (images/s, log scale)")
        axes.set_ylabel("top-1 accuracy (%)")
        axes.set_title("Accuracy vs speed (marker area = parameters)")
        axes.grid(True, which="both", alpha=0.3)
        figure.tight_layout()
        with atomic.atomic_path(path) as temporary:
            figure.savefig(temporary)
    finally:
        pyplot.close(figure)


def write_reports(out_dir: Path, results: dict) -> None:
    """results.csv, results.md and accuracy_vs_speed.png from the results, each replaced atomically."""
    try:
        atomic.write_text(out_dir / "results.csv", csv_text(results["backbones"]))
        atomic.write_text(out_dir / "results.md", markdown(results))
        plot(results["backbones"], out_dir / "accuracy_vs_speed.png")
    except OSError as exc:
        raise ZooError(f"cannot write results to {out_dir}: {exc.strerror or exc}; choose another --out") from exc


def write_results(out_dir: Path, rows: list[dict], meta: dict | None = None) -> dict:
    """results.json (every field, plus `meta`: environment, dataset), then the other reports."""
    results = {"format": FORMAT, **(meta or {}), "backbones": rows}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    except OSError as exc:
        raise ZooError(f"cannot write results to {out_dir}: {exc.strerror or exc}; choose another --out") from exc
    write_reports(out_dir, results)
    return results


def read_results(out_dir: Path) -> dict:
    """A saved results.json: {"format", "environment", "dataset", "backbones": [rows]}."""
    path = out_dir / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(f"{path} does not exist; run `zoo bench --out {out_dir}` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ZooError(f"{path} is not valid JSON ({exc}); rerun the bench") from None
    if (
        not isinstance(results, dict)
        or results.get("format") != FORMAT
        or not isinstance(results.get("backbones"), list)
    ):
        raise ZooError(f"{path} is not a zoo bench results file ({FORMAT}); rerun the bench")
    return results


@contextlib.contextmanager
def results_lock(out_dir: Path):
    """Hold `out_dir` for one bench, taken before any work starts.

    Creating the folder and a lock file in it proves it writable, so a bad --out fails in a
    second rather than after an hour of extraction. The exclusive lock refuses a second bench
    into the same folder at once, instead of letting the two overwrite each other's rows. It is
    an flock, not the file's existence: the OS releases it when its holder exits or is killed,
    so the file a killed run leaves behind never blocks. A folder that this call created and
    that stayed empty (say the data was bad) is removed again.
    """
    import fcntl  # POSIX only; imported here so `zoo report` works everywhere

    created = not out_dir.exists()
    lock_path = out_dir / LOCK_FILE
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 (held by the `with` below)
    except OSError as exc:
        raise ZooError(f"cannot write results to {out_dir}: {exc.strerror or exc}; choose another --out") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ZooError(
                f"{out_dir} is in use by another zoo bench (pid {holder}); wait for it to finish, "
                "or choose another --out"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield out_dir
        finally:
            if created and [path.name for path in out_dir.iterdir()] == [LOCK_FILE]:
                with contextlib.suppress(OSError):  # another bench got in first: leave it be
                    lock_path.unlink()
                    out_dir.rmdir()
