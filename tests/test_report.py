"""Reports from rows: the ranked table, Markdown, CSV, the plot, and `zoo report` without TF."""

import csv
import io
import json
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from zoo.errors import ZooError
from zoo.report import csv_text, markdown, ranked, read_results, results_table, write_results


def row(name, top1, speed, params, **extra):
    return {
        "backbone": name, "status": "ok", "error": "", "mode": "features", "top1": top1,
        "top1_frozen": top1, "top5": 1.0, "images_per_sec": speed, "latency_ms_p50": 1000 / speed,
        "latency_ms_p95": 1200 / speed, "params": params, "flops_per_image": params * 100,
        "peak_rss_mb": 500.0, "extract_seconds": 2.0, "head_seconds": 1.0, "feature_cache": "miss",
        "weights": "imagenet", "confusion_matrix": [[2, 0], [1, 1]], "per_class_accuracy": {"a": 1.0, "b": 0.5},
        **extra,
    }


ROWS = [
    row("slow_big", 0.9, 30.0, 25_000_000),
    {"backbone": "broken", "status": "failed", "error": "ValueError: no | good", "params": 1},
    row("fast_small", 0.7, 120.0, 2_000_000, weights="random"),
]
META = {"environment": {"tensorflow": "2.x", "cpu_count": 2}, "dataset": {"root": "/data/food", "classes": ["a", "b"],
        "train_images": 10, "test_images": 4}}


def rendered(table) -> str:
    console = Console(record=True, width=250, color_system="truecolor")
    console.print(table)
    return console.export_text(styles=True)


def test_rows_are_ranked_by_top1_failures_last():
    assert [r["backbone"] for r in ranked(ROWS)] == ["slow_big", "fast_small", "broken"]


def test_the_table_highlights_the_best_value_of_each_column():
    table, note = results_table({**META, "backbones": ROWS})
    text = rendered(table)
    assert note is None  # no width given: every column
    lines = [line for line in text.splitlines() if "slow_big" in line or "fast_small" in line]
    big, small = lines
    assert "90.0%" in big and "\x1b[1;32m90.0%" in big  # best top-1
    assert "\x1b[1;32m120.0" in small and "\x1b[1;32m2.0M" in small  # fastest, smallest
    assert "\x1b[1;32m30.0" not in big
    assert "Frozen" not in text  # no fine-tuned row: the frozen column would repeat top-1
    assert "RANDOM" in small and "failed" in text


def test_markdown_has_every_row_best_values_bold_and_the_environment():
    text = markdown({**META, "backbones": ROWS})
    assert text.startswith("# zoo bench: food")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[1].startswith("| slow_big | **90.0%**")
    assert "failed: ValueError: no \\| good" in table[3]
    assert "**Random weights**" in text and "fast_small" in text.split("**Random weights**")[1]
    assert "tensorflow 2.x" in text


def test_markdown_shows_names_paths_and_errors_as_they_are_one_table_row_each():
    """`|`, backticks, `*`, `_`, `<` and line breaks are markup, or end a table row."""
    from html import unescape

    from markdown_it import MarkdownIt

    error = "ValueError: bad `x | *y* _z_ <b>[link](u) &amp; p < 1 ~~no~~\nnext line"
    rows = [row("_net_a*", 0.9, 30.0, 1000), {"backbone": "broken", "status": "failed", "error": error}]
    root = "/data/my `food` <x>"
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(  # as GitHub reads it
        markdown({**META, "dataset": {**META["dataset"], "root": root}, "backbones": rows})
    )
    assert re.search(r"<h1>(.*)</h1>", html)[1] == "zoo bench: my `food` &lt;x&gt;"
    assert re.search(r"<code>(.*)</code>", html)[1] == "/data/my `food` &lt;x&gt;"
    table = [[unescape(cell.replace("<br>", "\n")) for cell in re.findall(r"<td>(.*?)</td>", line, re.S)]
             for line in re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>")[1], re.S)]
    assert [line[0] for line in table] == ["_net_a*", "broken"]
    assert table[1][-1] == f"failed: {error}"
    assert table[0][1] == "<strong>90.0%</strong>"  # zoo's own markup stays markup


def test_markdown_keeps_dollar_signs_from_being_read_as_math():
    """GitHub sets `$x^2$` in a .md file as math (x²), as matplotlib did in the plots."""
    from markdown_it import MarkdownIt

    text = markdown({**META, "dataset": {**META["dataset"], "root": "/data/$x^2$"}, "backbones": ROWS})
    assert text.startswith("# zoo bench: \\$x^2\\$\n")
    html = MarkdownIt("commonmark").render(text)  # an escaped `$` is shown as `$`
    assert re.search(r"<h1>(.*)</h1>", html)[1] == "zoo bench: $x^2$"


def test_csv_keeps_nested_fields_as_json():
    parsed = list(csv.DictReader(io.StringIO(csv_text(ROWS))))
    assert [r["backbone"] for r in parsed] == ["slow_big", "broken", "fast_small"]
    assert json.loads(parsed[0]["confusion_matrix"]) == [[2, 0], [1, 1]]
    assert json.loads(parsed[0]["per_class_accuracy"]) == {"a": 1.0, "b": 0.5}
    compared = {"slow_big": {"top1_ci95": [0.4, 0.9], "p_vs_best": None, "tied_with_best": True}}
    with_statistics = list(csv.DictReader(io.StringIO(csv_text(ROWS, compared))))  # as the table shows them
    assert json.loads(with_statistics[0]["top1_ci95"]) == [0.4, 0.9] and with_statistics[0]["tied_with_best"] == "True"


def test_csv_keeps_text_a_spreadsheet_would_run_as_a_formula_text_and_names_readable():
    hostile = row("=cmd", 0.5, 10.0, 5, error="@SUM(A1)", weights_note="+1 -2", runtime_note="-x",
                  feature_cache="\tmiss", speed_from="\rruns", per_class_accuracy={"寿司": 1.0, "=a": -0.0})
    text = csv_text([hostile])
    [parsed] = list(csv.DictReader(io.StringIO(text)))
    assert [parsed[key] for key in ("backbone", "error", "weights_note", "runtime_note", "feature_cache")] == [
        "'=cmd", "'@SUM(A1)", "'+1 -2", "'-x", "'\tmiss"]
    assert parsed["speed_from"] == "'\rruns"
    assert parsed["top1"] == "0.5" and parsed["params"] == "5"  # numbers as they are
    assert parsed["per_class_accuracy"] == '{"寿司": 1.0, "=a": -0.0}' and "\\u" not in text


def test_write_then_read_round_trips(tmp_path):
    written = write_results(tmp_path, ROWS, META)
    assert read_results(tmp_path) == written
    assert written["backbones"] == ROWS and written["environment"] == META["environment"]
    assert {p.name for p in tmp_path.iterdir()} == {
        "results.json", "results.csv", "results.md", "accuracy_vs_speed.png",
        "confusion_slow_big.png", "confusion_fast_small.png",
    }


def test_the_bench_draws_each_rows_confusion_matrix_once(tmp_path):
    """After each backbone the bench rewrites the results but draws only the new row's matrix."""
    write_results(tmp_path, ROWS[:1], META)
    drawn = (tmp_path / "confusion_slow_big.png").stat().st_mtime_ns
    write_results(tmp_path, ROWS, META, drawn={"fast_small"})
    assert (tmp_path / "confusion_slow_big.png").stat().st_mtime_ns == drawn
    assert (tmp_path / "confusion_fast_small.png").is_file()
    assert [row["backbone"] for row in read_results(tmp_path)["backbones"]] == ["slow_big", "broken", "fast_small"]


def test_results_are_readable_by_others_as_the_umask_allows(tmp_path):
    old = os.umask(0o022)
    try:
        write_results(tmp_path, ROWS, META)
    finally:
        os.umask(old)
    for name in ("results.json", "results.csv", "results.md"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("content, message", [
    (None, "does not exist; run `zoo bench"),
    ("{not json", "is not valid JSON"),
    ('[{"backbone": "x"}]', "is not a zoo bench results file"),
])
def test_unreadable_results_are_one_line_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(ZooError, match=message):
        read_results(tmp_path)


@pytest.mark.parametrize("name", ["../../x", "/home", "..", "a\\b", ""])
def test_a_row_named_like_a_path_is_refused_in_one_line(tmp_path, name):
    """A later bench removes the files of each earlier row by its name: none may lead outside."""
    write_results(tmp_path, ROWS, META)
    written = json.loads((tmp_path / "results.json").read_text())
    written["backbones"][0]["backbone"] = name
    (tmp_path / "results.json").write_text(json.dumps(written))
    with pytest.raises(ZooError) as refused:
        read_results(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path / 'results.json'}: backbone row 1 has backbone {name!r}, which is a path, not a name: "
        "its files would lie outside the results folder; delete that row, or rerun the bench into a new --out"
    )


def test_zoo_report_rerenders_everything_without_importing_tensorflow(tmp_path):
    write_results(tmp_path, ROWS, META)
    for name in ("results.md", "results.csv", "accuracy_vs_speed.png", "confusion_slow_big.png"):
        (tmp_path / name).unlink()
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from zoo.cli import app\n"
        "result = CliRunner().invoke(app, ['report', sys.argv[1]])\n"
        "print(json.dumps({'code': result.exit_code, 'out': result.stdout, 'err': result.stderr,\n"
        "                  'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tf"] is False and report["keras"] is False
    assert report["code"] == 0, report
    assert "slow_big" in report["out"] and "zoo bench: food" in report["out"]
    assert "broken failed: ValueError: no | good" in report["err"]
    for name in ("results.md", "results.csv", "accuracy_vs_speed.png", "confusion_slow_big.png"):
        assert (tmp_path / name).stat().st_size > 0


def _wide_results(classes=10):
    labels = [i % classes for i in range(40)]
    names = ["efficientnet_v2_b0:hub", "efficientnet_lite2", "mobilenet_v2", "resnet50_v2"]
    rows = []
    for rank, name in enumerate(names):
        predictions = [y if i >= rank * 5 else (y + 1) % classes for i, y in enumerate(labels)]
        top1 = sum(p == y for p, y in zip(predictions, labels)) / len(labels)
        rows.append(row(name, top1, 40.0 + rank * 17.3, 4_000_000 + rank * 10**7, test_images=40,
                        test_predictions=predictions, latency_ms_p95=12.25, head_seconds=3.5,
                        weights="random" if name == "resnet50_v2" else "imagenet"))
    dataset = {**META["dataset"], "classes": [f"c{i}" for i in range(classes)], "test_labels": labels}
    return {**META, "dataset": dataset, "backbones": rows}


@pytest.mark.parametrize("width", [80, 120, 200])
def test_the_table_fits_the_terminal_and_never_cuts_name_top1_or_weights(width):
    results = _wide_results()
    table, note = results_table(results, width=width)
    console = Console(record=True, width=width)
    console.print(table)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in "".join(lines)
    for result_row in results["backbones"]:
        line = next(line for line in lines if f" {result_row['backbone']} " in line)
        assert f"{result_row['top1']:.1%}" in line
        assert ("RANDOM" if result_row["weights"] == "random" else "imagenet") in line
    if width == 80:
        assert note and note.startswith("Left out to fit the terminal: ") and "--columns" in note
        assert "Peak MB" in note and "Img/s" not in note  # dropped by priority: the least useful first
    if width == 200:
        assert note is None


def test_columns_narrow_the_table_but_keep_the_protected_ones():
    table, note = results_table(_wide_results(), chosen=["params", "Img/s"])
    text = rendered(table)
    header = text.splitlines()[2]
    for kept in ("Backbone", "Top-1", "Params", "Img/s", "Weights"):
        assert kept in header
    assert "p50 ms" not in header and note is None
    with pytest.raises(ZooError, match=r"^--columns bogus,top_1: no such column; use any of backbone, top1, "):
        results_table(_wide_results(), chosen=["params", "bogus", "top_1"])  # a typo is not silently dropped


def test_top5_is_left_out_with_five_classes_or_fewer_and_ties_are_marked():
    text = rendered(results_table(_wide_results(classes=5))[0])
    assert "Top-5" not in text
    assert "Top-5" in rendered(results_table(_wide_results(classes=5), chosen=["top5"])[0])  # asked for: shown
    text = rendered(results_table(_wide_results(classes=10))[0])
    assert "Top-5" in text and "95% CI" in text
    assert "best" in next(line for line in text.splitlines() if "efficientnet_v2_b0:hub" in line)
    assert "tied p=0.062" in next(line for line in text.splitlines() if "efficientnet_lite2" in line)
    assert "worse p<0.001" in next(line for line in text.splitlines() if "resnet50_v2" in line)


def test_results_json_carries_the_statistics_and_keeps_predictions_on_one_line(tmp_path):
    results = _wide_results()
    write_results(tmp_path, results["backbones"], {k: v for k, v in results.items() if k != "backbones"})
    text = (tmp_path / "results.json").read_text()
    assert len(text.splitlines()) < 200  # 4 rows of 40 predictions and a 2×2 matrix, not one number a line
    saved = read_results(tmp_path)
    assert saved["backbones"] == results["backbones"]
    assert saved["statistics"]["best"] == "efficientnet_v2_b0:hub"
    assert "efficientnet_v2_b0:hub and efficientnet_lite2 are tied at p = 0.062 on 40 test images" in (
        saved["statistics"]["summary"])
    assert saved["statistics"]["summary"] in (tmp_path / "results.md").read_text()


def test_an_ensemble_row_is_marked_as_such():
    results = _wide_results()
    results["backbones"][0]["kind"] = "ensemble"
    assert "efficientnet_v2_b0:hub (ensemble)" in rendered(results_table(results)[0])
    assert "| efficientnet_v2_b0:hub (ensemble) |" in markdown(results)


def test_a_name_too_long_for_the_terminal_folds_and_the_weights_stay_whole():
    results = _wide_results()
    long = "ensemble(efficientnet_lite0+efficientnet_lite1+efficientnet_lite2)"
    results["backbones"][0].update(backbone=long, kind="ensemble", weights="imagenet")
    console = Console(record=True, width=60)
    console.print(results_table(results, width=60)[0])
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 60
    assert "(ensemble)" not in text  # its name says so already
    first = next(line for line in text.splitlines() if "ensemble(" in line)
    assert "imagenet" in first and long.replace("\n", "") not in first  # folded, not cut
    # a member a line, so the columns beside it keep the room its whole name would have taken
    assert first.split("│")[1].strip() == "ensemble(efficientnet_lite0+"


def test_piped_output_keeps_every_cell_whole_however_wide_the_table(tmp_path):
    """A log or a file gets the table at its full width: a long ensemble name beside all the
    columns once squeezed the others to `…` at a fixed 250 columns."""
    from typer.testing import CliRunner

    from zoo.cli import app

    results = _wide_results()
    long_name = "ensemble(efficientnet_lite0+efficientnet_lite1+efficientnet_lite2+efficientnet_v2_b0:hub)"
    results["backbones"][0].update(backbone=long_name, kind="ensemble")
    write_results(tmp_path, results["backbones"], {key: results[key] for key in ("environment", "dataset")})
    shown = CliRunner().invoke(app, ["report", str(tmp_path)]).stdout
    assert "…" not in shown
    header = next(line for line in shown.splitlines() if "Backbone" in line)
    assert all(f" {name} " in header for name in ("Top-1", "Top-5", "p50 ms", "Params", "Extract s", "Status"))
    assert f" {long_name} " in shown
