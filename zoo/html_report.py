"""report.html: the whole bench in one file to open from disk, mail or attach to a CI run.

Self-contained on purpose: the plots are embedded as data URIs, the style and the column sorting
are inline, nothing is fetched. Every string from results.json is escaped.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from zoo import plots, report

#: The settings every row carries (see zoo.bench.BenchSettings); `weights` is left out, since a
#: row's `weights` says what it ran with.
SETTINGS = (
    "weights_mode",
    "mode",
    "epochs",
    "finetune_epochs",
    "unfreeze",
    "batch_size",
    "learning_rate",
    "seed",
    "mirror",
    "augment",
    "folds",
    "strategy",
    "cache",
)

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th.text, td.text { text-align: left; }
td.best { color: #087a2c; font-weight: bold; }
td.random { color: #b00; font-weight: bold; }
img { max-width: 100%; height: auto; }
.summary { font-size: 1.1em; background: #f4f8ff; padding: 0.6em 1em; border-left: 4px solid #4a7bd0; }
.failed { color: #b00; }
"""

# Click a header to sort by it; numbers by their data-value, text alphabetically.
_SORT = """
document.querySelectorAll("table.sortable th").forEach(function (th, column) {
  th.title = "click to sort";
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var ascending = th.dataset.order !== "asc";
    th.dataset.order = ascending ? "asc" : "desc";
    function key(row) {
      var cell = row.cells[column];
      if (cell.dataset.value === undefined) return cell.textContent;
      return cell.dataset.value === "" ? -Infinity : parseFloat(cell.dataset.value);
    }
    Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      var order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
      return ascending ? order : -order;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _key_values(pairs: dict) -> str:
    lines = [
        f'<tr><th class="text">{escape(str(key))}</th><td class="text">{escape(_text(value))}</td></tr>'
        for key, value in pairs.items()
    ]
    return "<table><tbody>" + "".join(lines) + "</tbody></table>"


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _results_table(results: dict) -> str:
    rows = report.table_rows(results)
    columns = report.shown_columns(results, rows)
    best = report.best_values(rows, columns)
    head = "".join(
        f'<th class="{"text" if key in report.TEXT_COLUMNS else "number"}">{escape(header)}</th>'
        for key, header, _, _ in columns
    )
    lines = []
    for row in rows:
        cells = []
        for key, _, _, _ in columns:
            value = row.get(key)
            text = report.display_name(row) if key == "backbone" else report.cell_text(key, value)
            classes = ["text"] if key in report.TEXT_COLUMNS else []
            if row["status"] == "ok" and key in best and value == best[key]:
                classes.append("best")
            if key == "weights" and value == "random":
                classes.append("random")
            if key == "status" and row["status"] != "ok":
                text = f"failed: {row.get('error', '')}"
            number = value[0] if key == "top1_ci95" and value else value
            sort = (
                f' data-value="{number if isinstance(number, (int, float)) else ""}"'
                if key not in report.TEXT_COLUMNS
                else ""
            )
            cells.append(f'<td class="{" ".join(classes)}"{sort}>{escape(text)}</td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sortable" id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'


def _per_class_table(results: dict) -> str:
    rows = [
        row for row in report.ranked(results["backbones"]) if row["status"] == "ok" and row.get("per_class_accuracy")
    ]
    if not rows:
        return "<p>No per-class accuracy (no finished backbone).</p>"
    classes = list(rows[0]["per_class_accuracy"])
    head = '<th class="text">class</th>' + "".join(f"<th>{escape(report.display_name(row))}</th>" for row in rows)
    lines = []
    for name in classes:
        cells = []
        for row in rows:
            value = row["per_class_accuracy"].get(name)
            cells.append(
                f'<td data-value="{"" if value is None else value}">{"-" if value is None else f"{value:.1%}"}</td>'
            )
        lines.append(f'<tr><td class="text">{escape(name)}</td>{"".join(cells)}</tr>')
    return (
        f'<table class="sortable" id="per-class"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
    )


def _settings(results: dict) -> dict:
    """Each setting's value; where rows differ (a resumed or merged file), every row's."""
    rows = [row for row in results["backbones"] if row["status"] == "ok"] or results["backbones"]
    settings = {}
    for key in SETTINGS:
        values = {json.dumps(row.get(key)) for row in rows if key in row}
        if len(values) == 1:
            settings[key] = rows[0][key]
        elif values:
            settings[key] = {row["backbone"]: row.get(key) for row in rows}
    return settings


def render(out_dir: Path, results: dict) -> str:
    """The report's HTML, from the results and the PNGs `report.write_reports` put in `out_dir`."""
    statistics = report.statistics(results)
    dataset = results.get("dataset", {})
    name = Path(dataset.get("root", "")).name or "results"
    title = f"zoo bench: {name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if dataset:
        parts.append(
            f"<p>{len(dataset.get('classes', []))} classes, {dataset.get('train_images')} train and "
            f"{dataset.get('test_images')} test images from <code>{escape(str(dataset.get('root')))}</code>.</p>"
        )
    if statistics["summary"]:
        parts.append(f'<p class="summary">{escape(statistics["summary"])}</p>')
    parts += [
        "<h2>Results</h2>",
        "<p>Click a column header to sort. 95% CI: the Wilson interval of top-1; "
        "vs best: exact McNemar test against the best row on the same test images.</p>",
        _results_table(results),
    ]
    untrained = report.random_weights(results["backbones"])
    if untrained:
        parts.append(
            f'<p class="failed">Random weights (no pretrained file): {escape(", ".join(untrained))}; '
            "their accuracy says nothing about transfer learning.</p>"
        )
    parts += ["<h2>Accuracy vs speed</h2>", _image(out_dir / report.PLOT, "accuracy against images per second")]
    parts += ["<h2>Per-class accuracy</h2>", _per_class_table(results)]
    confusions = [
        row
        for row in report.ranked(results["backbones"])
        if (out_dir / plots.confusion_file(row["backbone"])).is_file() and row["status"] == "ok"
    ]
    if confusions:
        parts.append("<h2>Confusion matrices</h2>")
        for row in confusions:
            parts += [
                f"<h3>{escape(report.display_name(row))}</h3>",
                _image(out_dir / plots.confusion_file(row["backbone"]), f"confusion matrix of {row['backbone']}"),
            ]
    parts += ["<h2>Settings</h2>", _key_values(_settings(results))]
    made = {
        key: results[key]
        for key in ("command", "zoo_version", "plugins", "started_at", "finished_at")
        if key in results
    }
    if made:
        parts += ["<h2>Provenance</h2>", _key_values(made)]
    if results.get("environment"):
        parts += ["<h2>Environment</h2>", _key_values(results["environment"])]
    parts += [f"<script>{_SORT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"
