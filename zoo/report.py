"""Bench results: the comparison table on screen, and results.json / .csv / .md on disk.

Nothing here imports TensorFlow, so reports re-render from a saved results.json anywhere.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from rich.table import Table

from zoo.errors import ZooError

COLUMNS = (
    ("backbone", "Backbone"),
    ("top1", "Top-1"),
    ("top5", "Top-5"),
    ("images_per_sec", "Images/s"),
    ("params", "Params"),
    ("extract_seconds", "Extract s"),
    ("train_seconds", "Train s"),
    ("weights", "Weights"),
    ("status", "Status"),
)


def ranked(rows: list[dict]) -> list[dict]:
    """Rows best first: finished ones by top-1, failed ones last."""
    return sorted(rows, key=lambda row: (row["status"] != "ok", -(row["top1"] or 0.0)))


def random_weights(rows: list[dict]) -> list[str]:
    """Names of the backbones that ran without pretrained weights."""
    return [row["backbone"] for row in rows if row["status"] == "ok" and row["weights"] == "random"]


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("top1", "top5"):
        return f"{value:.1%}"
    if key == "params":
        return f"{value / 1e6:.1f}M"
    if key == "weights" and value == "random":
        return "RANDOM"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def results_table(rows: list[dict], title: str = "zoo bench") -> Table:
    """A rich table, best first; the best value of each measured column in bold green."""
    rows = ranked(rows)
    ok = [row for row in rows if row["status"] == "ok"]
    best = {
        "top1": max((r["top1"] for r in ok), default=None),
        "top5": max((r["top5"] for r in ok), default=None),
        "images_per_sec": max((r["images_per_sec"] for r in ok), default=None),
        "params": min((r["params"] for r in ok), default=None),
    }
    table = Table(title=title)
    for key, header in COLUMNS:
        table.add_column(header, justify="left" if key in ("backbone", "weights", "status") else "right")
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            text = _cell(key, row.get(key))
            if row["status"] == "ok" and best.get(key) is not None and row.get(key) == best[key]:
                text = f"[bold green]{text}[/]"
            elif key == "weights" and text == "RANDOM":
                text = f"[bold red]{text}[/]"
            elif key == "status" and row["status"] != "ok":
                text = f"[red]{row['status']}: {row['error']}[/]"
            cells.append(text)
        table.add_row(*cells)
    return table


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a crash never leaves half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def markdown(rows: list[dict]) -> str:
    """The comparison as a Markdown table, ready to paste into a README."""
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in ranked(rows):
        cells = [_cell(key, row.get(key)) for key, _ in COLUMNS]
        if row["status"] != "ok":
            cells[-1] = f"failed: {row['error']}"
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, rows: list[dict]) -> None:
    """results.json (every field), results.csv and results.md, each replaced atomically."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(out_dir / "results.json", json.dumps(rows, indent=2) + "\n")
        buffer = io.StringIO()
        fields = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        _write_atomically(out_dir / "results.csv", buffer.getvalue())
        _write_atomically(out_dir / "results.md", markdown(rows))
    except OSError as exc:
        raise ZooError(f"cannot write results to {out_dir}: {exc.strerror}; choose another --out") from exc


def read_results(out_dir: Path) -> list[dict]:
    """The rows of a saved results.json."""
    path = out_dir / "results.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(f"{path} does not exist; run `zoo bench --out {out_dir}` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ZooError(f"{path} is not valid JSON ({exc}); rerun the bench") from None
