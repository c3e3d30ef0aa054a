"""report.html: parsed by a strict HTML5 parser, then opened by a real headless browser."""

import re
import shutil
import subprocess

import html5lib
import pytest
from typer.testing import CliRunner

from zoo.cli import app
from zoo.report import write_results

LABELS = [i % 3 for i in range(30)]


def _row(name, wrong, speed, **extra):
    predictions = [(y + 1) % 3 if i < wrong else y for i, y in enumerate(LABELS)]
    matrix = [[0] * 3 for _ in range(3)]
    for y, p in zip(LABELS, predictions):
        matrix[y][p] += 1
    return {
        "backbone": name, "status": "ok", "error": "", "mode": "features", "top1": 1 - wrong / 30, "top5": 1.0,
        "images_per_sec": speed, "params": 3_000_000, "weights": "imagenet", "test_images": 30,
        "test_predictions": predictions, "confusion_matrix": matrix, "epochs": 20, "batch_size": 32,
        "learning_rate": 0.001, "seed": 42, "mirror": True, "augment": False, "folds": 5, "weights_mode": "auto",
        "per_class_accuracy": {c: matrix[i][i] / 10 for i, c in enumerate(("cat <b>", "dog & co", "eel"))},
        **extra,
    }


@pytest.fixture
def out_dir(tmp_path):
    rows = [
        _row("efficientnet_lite0", 2, 100.0),
        _row("resnet50_v2", 12, 35.0, weights="random"),
        _row("ensemble_of_2", 1, 30.0, kind="ensemble"),
        {"backbone": "broken<script>", "status": "failed", "error": "ValueError: <no> & good"},
    ]
    meta = {
        "zoo_version": "0.1.0", "command": "zoo bench --all", "started_at": "2026-11-24T22:00:00+0000",
        "environment": {"tensorflow": "2.21", "cpu_count": 2},
        "dataset": {"root": "/data/pets", "classes": ["cat <b>", "dog & co", "eel"], "train_images": 60,
                    "test_images": 30, "test_labels": LABELS},
    }
    write_results(tmp_path, rows, meta)
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--html"])
    assert result.exit_code == 0, result.output
    return tmp_path


def test_report_html_is_strict_html5_with_the_table_plots_and_settings(out_dir):
    text = (out_dir / "report.html").read_text(encoding="utf-8")
    document = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)  # raises on any error
    results = document.find(".//table[@id='results']")
    names = [row.find("td").text for row in results.find("tbody")]
    assert names == ["ensemble_of_2 (ensemble)", "efficientnet_lite0", "resnet50_v2", "broken<script>"]
    images = [img.get("src") for img in document.iter("img")]
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,iVBOR") for src in images)  # plot + 3
    assert "ValueError: &lt;no&gt; &amp; good" in text and "cat &lt;b&gt;" in text
    per_class = document.find(".//table[@id='per-class']")
    assert [row.find("td").text for row in per_class.find("tbody")] == ["cat <b>", "dog & co", "eel"]
    body = "".join(document.find("body").itertext())
    for expected in ("epochs", "learning_rate", "folds", "weights_mode", "tensorflow", "2.21", "zoo bench --all",
                     "are tied at", "on 30 test images", "Random weights"):
        assert expected in body, expected
    assert "http" not in re.sub(r"data:image/png;base64,[^\"]+", "", text)  # nothing fetched: it opens offline


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_html_renders_in_headless_chromium(out_dir, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    shot = out_dir / "screenshot.png"
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    url = (out_dir / "report.html").as_uri()
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    document = html5lib.HTMLParser(namespaceHTMLElements=False).parse(dom.stdout)
    table = document.find(".//table[@id='results']")
    assert len(table.find("tbody")) == 4
    assert all(th.get("title") == "click to sort" for th in table.iter("th"))  # the sorting script ran
    assert len([img for img in document.iter("img") if img.get("src", "").startswith("data:image/png")]) == 4
    done = subprocess.run([*base, "--window-size=1200,2400", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # the plots were decoded and drawn, not blank boxes
