"""Bench results: the comparison table on screen, and results.json / .csv / .md / a plot on disk.

Nothing here imports TensorFlow, so `zoo report DIR` re-renders everything from a saved
results.json anywhere.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Collection
from dataclasses import fields
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from zoo import atomic, stats
from zoo.errors import ZooError
from zoo.row import BenchRow
from zoo.spec import path_problem
from zoo.tables import Column, dropped_note, fitted_table

FORMAT = "zoo-bench-results/1"
LOCK_FILE = ".zoo-bench.lock"
PLOT = "accuracy_vs_speed.png"

#: The table's columns: row key, header, which value is best ("max", "min" or None), and the
#: priority by which columns are dropped to fit a terminal (0: never; see zoo.tables).
COLUMNS = (
    ("backbone", "Backbone", None, 0),
    ("top1", "Top-1", "max", 0),
    ("top1_ci95", "95% CI", None, 2),
    ("val_top1", "Val top-1", "max", 2),
    ("val_top1_std", "Val ±", None, 5),
    ("vs_best", "vs best", None, 1),
    ("top1_frozen", "Frozen", "max", 4),
    ("top5", "Top-5", "max", 3),
    ("images_per_sec", "Img/s", "max", 2),
    ("latency_ms_p50", "p50 ms", "min", 4),
    ("latency_ms_p95", "p95 ms", "min", 6),
    ("params", "Params", "min", 3),
    ("flops_per_image", "GFLOPs", "min", 5),
    ("peak_rss_mb", "Peak MB", "min", 6),
    ("extract_seconds", "Extract s", None, 7),
    ("head_seconds", "Head s", None, 7),
    ("finetune_seconds", "Tune s", None, 7),
    ("feature_cache", "Cache", None, 8),
    ("runtime", "Runtime", None, 8),
    ("weights", "Weights", None, 0),
    ("status", "Status", None, 1),
)
TEXT_COLUMNS = ("backbone", "vs_best", "feature_cache", "runtime", "weights", "status")
#: Where the note about dropped columns sends people.
SEE_ALL = "widen the terminal, pick columns with --columns, or see results.md"


def ranked(rows: list[dict]) -> list[dict]:
    """Rows best first: finished ones by top-1, failed ones last."""
    return sorted(rows, key=lambda row: (row["status"] != "ok", -(row.get("top1") or 0.0)))


def random_weights(rows: list[dict]) -> list[str]:
    """Names of the backbones that ran without pretrained weights."""
    return [row["backbone"] for row in rows if row["status"] == "ok" and row.get("weights") == "random"]


def statistics(results: dict) -> dict:
    """Each row's 95 % interval and its exact McNemar test against the best (see zoo.stats)."""
    return stats.compare(results["backbones"], results.get("dataset", {}).get("test_labels"))


def num_classes(results: dict) -> int | None:
    classes = results.get("dataset", {}).get("classes")
    if classes:
        return len(classes)
    matrices = [row["confusion_matrix"] for row in results["backbones"] if row.get("confusion_matrix")]
    return len(matrices[0]) if matrices else None


def table_rows(results: dict) -> list[dict]:
    """The rows ranked, each with its `top1_ci95` and `vs_best` cells' values."""
    per_row = statistics(results)["rows"]
    rows = []
    for row in ranked(results["backbones"]):
        row_stats = per_row.get(row["backbone"], {})
        rows.append({**row, "top1_ci95": row_stats.get("top1_ci95"), "vs_best": _versus_best(row_stats)})
    return rows


def _versus_best(row_stats: dict) -> str | None:
    if not row_stats:
        return None
    p = row_stats["p_vs_best"]
    if p is None:
        return "best" if row_stats["tied_with_best"] else None
    return f"{'tied' if row_stats['tied_with_best'] else 'worse'} {stats.p_text(p).replace(' ', '')}"


def checked_columns(chosen: list[str] | None) -> set[str]:
    """The --columns asked for, in lower case; a ZooError naming any that no column is called."""
    wanted = {name.strip().lower() for name in chosen or ()}
    unknown = sorted(wanted - {name.lower() for key, header, _, _ in COLUMNS for name in (key, header)})
    if unknown:
        raise ZooError(
            f"--columns {','.join(unknown)}: no such column; use any of {', '.join(key for key, *_ in COLUMNS)}"
        )
    return wanted


def shown_columns(
    results: dict, rows: list[dict], chosen: list[str] | None = None
) -> list[tuple[str, str, str | None, int]]:
    """The columns worth showing: those with a value somewhere; top-1 frozen only when fine-tuning;
    top-5 only with more than five classes (with five or fewer it is always 100 %), unless
    `chosen` (keys or headers) names them; `chosen` narrows them; the protected ones always stay."""
    finetuned = any(row.get("mode") == "finetune" for row in rows)
    classes = num_classes(results)
    wanted = checked_columns(chosen)
    shown: list[tuple[str, str, str | None, int]] = []
    for column in COLUMNS:
        key, header, _, priority = column
        if key not in ("backbone", "status") and not any(row.get(key) is not None for row in rows):
            continue
        asked = key.lower() in wanted or header.lower() in wanted  # shown even where it says little
        says_little = (key == "top1_frozen" and not finetuned) or (
            key == "top5" and classes is not None and classes <= 5
        )
        if says_little and not asked:
            continue
        if wanted and priority != 0 and not asked:
            continue
        shown.append(column)
    return shown


def readable_count(value: int) -> str:
    """A parameter count people can read: 23,584 or 4.2M (never 0.0M)."""
    return f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value:,}"


def column_names() -> str:
    """The names `--columns` takes."""
    return ", ".join(key for key, *_ in COLUMNS)


def cell_text(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("top1", "top1_frozen", "top5", "val_top1"):
        return f"{value:.1%}"
    if key == "val_top1_std":
        return f"±{value:.1%}"
    if key == "top1_ci95":
        return f"{value[0] * 100:.1f}-{value[1] * 100:.1f}"
    if key == "params":
        return readable_count(value)
    if key == "flops_per_image":
        return f"{value / 1e9:.2f}"
    if key == "peak_rss_mb":
        return f"{value:.0f}"
    if key == "weights" and value == "random":
        return "RANDOM"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def display_name(row: dict) -> str:
    """The backbone's name, marked when the row is not a single backbone (say an ensemble)."""
    kind, name = row.get("kind"), row["backbone"]
    marked = kind and kind != "backbone" and not name.startswith(f"{kind}(")  # ensemble(a+b) says it already
    return f"{name} ({kind})" if marked else name


def best_values(rows: list[dict], columns) -> dict:
    ok = [row for row in rows if row["status"] == "ok"]
    best = {}
    for key, _, direction, _ in columns:
        values = [row[key] for row in ok if row.get(key) is not None]
        if direction and values:
            best[key] = max(values) if direction == "max" else min(values)
    return best


def results_table(
    results: dict, title: str = "zoo bench", width: int | None = None, chosen: list[str] | None = None
) -> tuple[Table, str | None]:
    """A rich table, best first, the best value of each measured column in bold green, fitted to
    `width` by dropping whole columns; and the note saying which were dropped (or None)."""
    rows = table_rows(results)
    columns = shown_columns(results, rows, chosen)
    best = best_values(rows, columns)
    single = max((len(row["backbone"]) for row in rows if row.get("kind") != "ensemble"), default=0)
    cells = []
    for row in rows:
        line = []
        for key, _, _, _ in columns:
            text = escape(cell_text(key, row.get(key)))
            if key == "backbone":
                name = display_name(row)
                if width is not None and row.get("kind") == "ensemble" and len(name) > single:
                    name = name.replace("+", "+\n")  # a member a line: the columns beside it keep their room
                text = escape(name)
            if row["status"] == "ok" and key in best and row.get(key) == best[key]:
                text = f"[bold green]{text}[/]"
            elif key == "weights" and text == "RANDOM":
                text = f"[bold red]{text}[/]"
            elif key == "vs_best" and text.startswith(("best", "tied")):
                text = f"[green]{text}[/]"
            elif key == "status" and row["status"] != "ok":
                text = f"[red]{escape(row['status'])}[/]"  # the error is printed below the table
            line.append(text)
        cells.append(line)
    spec = [
        Column(key, header, priority, "left" if key in TEXT_COLUMNS else "right")
        for key, header, _, priority in columns
    ]
    table, dropped = fitted_table(spec, cells, width, title=title)
    return table, dropped_note(dropped, SEE_ALL) if dropped else None


#: What Markdown reads as markup in text: `_` only where it can start or end emphasis, `<` a
#: tag, `&` an entity, so names and numbers stay readable (`efficientnet_b0`, `p < 0.001`);
#: `$`, which GitHub reads as math (`$x^2$`).
_MARKUP = re.compile(r"[\\`*\[\]|~$]|(?<![^\W_])_|_(?![^\W_])|<(?=[A-Za-z/!?])|&(?=[#A-Za-z])")


def _markdown_text(text: str) -> str:
    """User text (a name, a path, an error) as Markdown that shows it as it is: each character
    Markdown reads as markup escaped, each line break a `<br>`, so a table row stays one row."""
    return re.sub(r"\r\n|\r|\n", "<br>", _MARKUP.sub(lambda found: "\\" + found[0], text))


def _code(text: str) -> str:
    """`text` (a path) as a Markdown code span, fenced by more backticks than it holds in a row."""
    text = " ".join(text.splitlines())
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if "`" in text else f"`{text}`"


def markdown(results: dict) -> str:
    """The comparison as Markdown, every column, best values in bold, ready to paste into a README."""
    rows = table_rows(results)
    columns = shown_columns(results, rows)
    best = best_values(rows, columns)
    dataset = results.get("dataset", {})
    lines = [f"# zoo bench: {_markdown_text(Path(dataset.get('root', '')).name or 'results')}", ""]
    if dataset:
        lines += [
            f"{len(dataset.get('classes', []))} classes, {dataset.get('train_images')} train and "
            f"{dataset.get('test_images')} test images from {_code(str(dataset.get('root')))}.",
            "",
        ]
    lines += ["| " + " | ".join(header for _, header, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _, _, _ in columns:
            text = _markdown_text(display_name(row) if key == "backbone" else cell_text(key, row.get(key)))
            if key == "status" and row["status"] != "ok":
                text = f"failed: {_markdown_text(row['error'])}"
            elif row["status"] == "ok" and key in best and row.get(key) == best[key]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    verdict = statistics(results)["summary"]
    if verdict:
        lines += ["", _markdown_text(verdict) + " 95% CI: Wilson interval of top-1."]
    untrained = random_weights(rows)
    if untrained:
        lines += [
            "",
            f"**Random weights** (no pretrained file): {_markdown_text(', '.join(untrained))}; "
            "their accuracy says nothing about transfer learning.",
        ]
    environment = results.get("environment", {})
    if environment:
        measured = ", ".join(f"{key} {value}" for key, value in environment.items())
        lines += ["", f"Measured on: {_markdown_text(measured)}."]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict], compared: dict[str, dict] | None = None) -> str:
    """One line per backbone; nested fields (confusion matrix, per-class accuracy) as JSON; and
    each row's statistics (`compared`: the statistics' rows), as the table and results.md show them."""
    buffer = io.StringIO()
    compared = compared or {}
    rows = [{**row, **compared.get(row["backbone"], {})} for row in rows]
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
    return buffer.getvalue()


def csv_cell(value):
    """A value as a CSV cell: a table or list as JSON (non-ASCII names as they are, not \\u5bff);
    text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, a tab or CR first) kept
    text by a leading `'`; numbers as they are."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def write_reports(out_dir: Path, results: dict, drawn: Collection[str] | None = None, plot: bool = True) -> None:
    """results.csv, results.md, accuracy_vs_speed.png (unless not `plot`) and a
    confusion_<backbone>.png per finished backbone (only those `drawn`, when given: a row's
    matrix never changes once drawn, so the bench draws each row's as it finishes), each
    replaced atomically."""
    from zoo import plots

    try:
        compared = statistics(results)
        atomic.write_text(out_dir / "results.csv", csv_text(results["backbones"], compared["rows"]))
        atomic.write_text(out_dir / "results.md", markdown(results))
        if plot:
            plots.accuracy_vs_speed(results, compared, out_dir / PLOT)
        classes = results.get("dataset", {}).get("classes") or []
        for row in results["backbones"]:
            if drawn is not None and row.get("backbone") not in drawn:
                continue
            if row["status"] == "ok" and row.get("confusion_matrix"):
                plots.confusion_matrix(row, classes, out_dir / plots.confusion_file(row["backbone"]))
    except OSError as exc:
        raise ZooError(f"cannot write results to {out_dir}: {exc.strerror or exc}; choose another --out") from exc


def write_html(out_dir: Path, results: dict) -> Path:
    """report.html, after `write_reports` has drawn the plots it embeds."""
    from zoo import html_report

    path = out_dir / "report.html"
    try:
        atomic.write_text(path, html_report.render(out_dir, results))
    except OSError as exc:
        raise ZooError(f"cannot write {path}: {exc.strerror or exc}; choose another folder") from exc
    return path


def to_json(results: dict) -> str:
    """results.json's text: indented, but a list of numbers (a confusion-matrix row, a row's
    test predictions) on one line, so hundreds of predictions stay a few lines."""
    text = json.dumps(results, indent=2)
    # A match holding a newline is structure, never the inside of a string (strings hold no newline).
    return re.sub(r"\[[-+.\deE,\s]*\n[-+.\deE,\s]*\]", lambda m: re.sub(r"\s+", "", m.group()).replace(",", ", "), text)


def with_statistics(results: dict) -> dict:
    """The results with their `statistics` section (re)computed from the rows."""
    return {**results, "statistics": statistics(results)}


def now() -> str:
    """The local time with its UTC offset, as results.json records times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def provenance() -> dict:
    """Who made a results file, how and when: zoo's and each plugin's version, the command line,
    the start time (`finished_at` is added with every write)."""
    from importlib.metadata import PackageNotFoundError, version

    from zoo import plugin_manager

    try:
        zoo_version = version("zoo")
    except PackageNotFoundError:  # run from a source tree
        zoo_version = "unknown"
    return {
        "zoo_version": zoo_version,
        "plugins": {info.name: info.version for info in plugin_manager.catalog().plugins},
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started_at": now(),
    }


def write_results(
    out_dir: Path, rows: list[dict], meta: dict | None = None, drawn: Collection[str] | None = None, plot: bool = True
) -> dict:
    """results.json (every field, plus `meta`: environment, dataset; and the statistics), then
    the other reports (`drawn`, `plot`: see write_reports)."""
    results = with_statistics({"format": FORMAT, **(meta or {}), "backbones": rows})
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out_dir / "results.json", to_json(results) + "\n")
    except OSError as exc:
        raise ZooError(f"cannot write results to {out_dir}: {exc.strerror or exc}; choose another --out") from exc
    write_reports(out_dir, results, drawn, plot)
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
    except IsADirectoryError:
        raise ZooError(f"{path} is a folder, not a results file; move it away or choose another --out") from None
    except NotADirectoryError:
        raise ZooError(f"{out_dir} is a file, not a results folder; give the folder results.json is in") from None
    if (
        not isinstance(results, dict)
        or results.get("format") != FORMAT
        or not isinstance(results.get("backbones"), list)
    ):
        raise ZooError(f"{path} is not a zoo bench results file ({FORMAT}); rerun the bench")
    if not isinstance(results.get("dataset", {}), dict):
        raise ZooError(f"{path} has a dataset that is not an object; rerun the bench")
    labels = results.get("dataset", {}).get("test_labels")
    if labels is not None and not _all_counts(labels):
        raise ZooError(f"{path} has dataset test_labels that are not a list of class numbers; rerun the bench")
    shard = results.get("shard")
    if shard is not None and not _is_shard(shard):  # a merge counts the shards of a sweep by it
        raise ZooError(f"{path} has shard {shard!r}, not {{'index': I, 'count': N}} with 1 <= I <= N; rerun the bench")
    size = results.get("ensemble_size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size == 1:
        raise ZooError(f"{path} has ensemble_size {size!r}, not 0 (none) or 2 or more; rerun the bench")
    seen: set[str] = set()
    for number, row in enumerate(results["backbones"], 1):
        problem = _row_problem(row) or (f"repeats backbone {row['backbone']}" if row["backbone"] in seen else "")
        predicted = isinstance(row, dict) and row.get("test_predictions")
        if not problem and predicted and labels is not None and len(predicted) != len(labels):
            problem = f"has {len(predicted)} test_predictions for the dataset's {len(labels)} test_labels"
        if problem:
            raise ZooError(
                f"{path}: backbone row {number} {problem}; delete that row, or rerun the bench into a new --out"
            )
        seen.add(row["backbone"])
    return results


#: A row's fields by the type BenchRow gives them: what a hand-edited or damaged file must still hold.
_TEXTS = {item.name for item in fields(BenchRow) if item.type in ("str", "str | None")}
_NUMBERS = {item.name for item in fields(BenchRow) if item.type in ("int", "int | None", "float | None")}
_FRACTIONS = ("top1", "top1_one_view", "top5", "top1_frozen", "val_top1")


def _is_shard(shard) -> bool:
    """Whether a results file's shard field is what `--shard I/N` writes."""
    if not isinstance(shard, dict):
        return False
    index, count = shard.get("index"), shard.get("count")
    if type(index) is not int or type(count) is not int:  # a bool is an int to isinstance
        return False
    return 1 <= index <= count


def _row_problem(row) -> str:
    """Why a saved row cannot be shown or resumed ("" when it can)."""
    if not isinstance(row, dict):
        return f"is a {type(row).__name__}, not an object"
    for key in ("backbone", "status"):
        if not isinstance(row.get(key), str):
            return f"has no {key!r} text"
    unsafe = path_problem(row["backbone"])
    if unsafe:
        return f"has backbone {row['backbone']!r}, which {unsafe}"
    if row["status"] not in ("ok", "failed"):
        return f"has status {row['status']!r}; a row is 'ok' or 'failed'"
    if row["status"] == "failed" and not (isinstance(row.get("error"), str) and row["error"].strip()):
        return "failed without saying why (no 'error' text)"
    for key in _TEXTS:
        if row.get(key) is not None and not isinstance(row[key], str):
            return f"has {key}={row[key]!r}, not text"
    for key in _NUMBERS:
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"has {key}={value!r}, not a number"
        if key in _FRACTIONS and not 0 <= value <= 1:
            return f"has {key}={value!r}, not a fraction from 0 to 1"
    if not _all_counts(row.get("test_predictions") or []):
        return "has test_predictions that are not a list of class numbers"
    matrix = row.get("confusion_matrix") or []
    if not (isinstance(matrix, list) and all(isinstance(line, list) and len(line) == len(matrix) for line in matrix)):
        return "has a confusion_matrix that is not a square table"
    if not all(_all_counts(line) for line in matrix):
        return "has a confusion_matrix that does not hold counts"
    if not isinstance(row.get("per_class_accuracy") or {}, dict):
        return "has a per_class_accuracy that is not a table of classes"
    return ""


def _all_counts(values) -> bool:
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def running_bench(out_dir: Path) -> str | None:
    """The pid of the zoo bench writing into `out_dir` now (it holds results_lock's lock), else None."""
    import fcntl

    try:
        handle = open(out_dir / LOCK_FILE, encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


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
        results = out_dir / "results.json"
        if results.exists() and not results.is_file():
            raise ZooError(f"{results} is a folder, not a results file; move it away or choose another --out")
        try:
            yield out_dir
        finally:
            if created and not results.exists():  # nothing finished: leave no half-made folder
                shutil.rmtree(out_dir, ignore_errors=True)
