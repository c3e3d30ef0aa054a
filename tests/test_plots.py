"""The pictures, read back: PNGs of the expected size, labels that do not overlap, the front."""

import warnings

import pytest

from zoo import plots
from zoo.stats import compare

PNG = b"\x89PNG\r\n\x1a\n"


def _rows():
    labels = [i % 4 for i in range(60)]
    rows = []
    # Close speeds and accuracies: their labels would print over each other at one fixed offset.
    for index, (name, speed, wrong) in enumerate([
        ("efficientnet_lite0", 100.0, 8), ("efficientnet_lite1", 104.0, 9), ("efficientnet_lite2", 98.0, 7),
        ("mobilenet_v2", 130.0, 20), ("resnet50_v2", 35.0, 40),
    ]):
        predictions = [(y + 1) % 4 if i < wrong else y for i, y in enumerate(labels)]
        rows.append({
            "backbone": name, "status": "ok", "top1": 1 - wrong / 60, "images_per_sec": speed,
            "params": (index + 2) * 1_000_000, "weights": "random" if name == "resnet50_v2" else "imagenet",
            "test_images": 60, "test_predictions": predictions,
            "confusion_matrix": [[15 - (i == 0) * wrong, (i == 0) * wrong, 0, 0] for i in range(4)],
        })
    rows.append({"backbone": "broken", "status": "failed", "error": "x"})
    return {"dataset": {"root": "/data/shapes", "classes": ["a", "b", "c", "d"], "test_images": 60,
                        "test_labels": labels}, "backbones": rows}


def test_pareto_front_keeps_only_points_nothing_beats_on_both_axes():
    points = [(100, 90), (50, 95), (80, 85), (200, 70), (150, 60)]
    assert plots.pareto_front(points) == [3, 0, 1]  # fastest first; (80, 85) and (150, 60) are beaten


def test_accuracy_vs_speed_places_labels_apart(tmp_path, monkeypatch):
    results = _rows()
    placed = {}

    def keep(axes, points, labels, sizes):
        placed["annotations"] = original(axes, points, labels, sizes)
        placed["renderer"] = axes.figure.canvas.get_renderer()
        return placed["annotations"]

    original = plots.place_labels
    monkeypatch.setattr(plots, "place_labels", keep)
    plots.accuracy_vs_speed(results, compare(results["backbones"], results["dataset"]["test_labels"]),
                            tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == PNG
    texts = [a.get_text() for a in placed["annotations"]]
    assert "resnet50_v2 (6.0M, RANDOM weights)" in texts
    boxes = [a.get_window_extent(placed["renderer"]) for a in placed["annotations"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert plots._overlap(a, b) == 0


def test_accuracy_vs_speed_title_names_the_data_and_draws_chance_and_front(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    titles, lines = [], []
    save = Figure.savefig

    def spy(figure, *args, **kwargs):
        axes = figure.axes[0]
        titles.append(axes.get_title())
        lines.extend(line.get_label() for line in axes.get_lines())
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    results = _rows()
    plots.accuracy_vs_speed(results, compare(results["backbones"], results["dataset"]["test_labels"]),
                            tmp_path / "plot.png")
    assert titles[0].startswith("shapes, 60 test images: accuracy vs speed")
    assert any(label.startswith("chance (25 %") for label in lines)
    assert any(label.startswith("Pareto front") for label in lines)


def test_an_ensemble_row_is_a_diamond_named_in_the_legend(tmp_path, monkeypatch):
    from matplotlib.collections import PathCollection
    from matplotlib.figure import Figure

    seen = []
    save = Figure.savefig

    def spy(figure, *args, **kwargs):
        axes = figure.axes[0]
        markers = [len(c.get_paths()[0].vertices) for c in axes.collections if isinstance(c, PathCollection)]
        seen.append(([text.get_text() for text in axes.get_legend().get_texts()], markers))
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    results = _rows()
    statistics = compare(results["backbones"], results["dataset"]["test_labels"])
    plots.accuracy_vs_speed(results, statistics, tmp_path / "plain.png")
    results["backbones"][0].update(backbone="ensemble(a+b)", kind="ensemble")
    plots.accuracy_vs_speed(results, statistics, tmp_path / "ensemble.png")
    (plain, circles), (legend, markers) = seen
    assert not any(text.startswith("ensemble") for text in plain)
    assert any(text.startswith("ensemble: its members' probabilities averaged") for text in legend)
    assert markers[0] < circles[0] and markers[1:5] == circles[1:5]  # a diamond has fewer corners than a circle


def test_a_plot_with_no_finished_rows_is_still_a_png(tmp_path):
    plots.accuracy_vs_speed({"backbones": [{"backbone": "x", "status": "failed"}]}, {}, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temporaries left


@pytest.mark.parametrize("classes", [4, 50])
def test_confusion_matrix_png_grows_with_the_classes(tmp_path, classes):
    from PIL import Image

    row = {"backbone": "mobilenet_v2:hub", "top1": 0.5,
           "confusion_matrix": [[3 if i == j else (1 if j == (i + 1) % classes else 0) for j in range(classes)]
                                for i in range(classes)]}
    names = [f"class_number_{i}" for i in range(classes)]
    path = tmp_path / plots.confusion_file(row["backbone"])
    assert path.name == "confusion_mobilenet_v2@hub.png"  # not mobilenet_v2_hub's
    plots.confusion_matrix(row, names, path)
    width, height = Image.open(path).size
    assert width >= 500 and height >= 500
    if classes == 50:
        assert height >= 1500  # about 30 px per class: 50 names stay legible


def _texts_when_saved(monkeypatch) -> list:
    """Every text of each figure saved from now on, as matplotlib holds it when it draws them."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    texts = []
    save = Figure.savefig

    def spy(figure, *args, **kwargs):
        texts.extend(text for text in figure.findobj(Text) if text.get_text() and text.get_visible())
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return texts


def test_names_with_dollar_signs_are_shown_as_they_are_not_as_math(tmp_path, monkeypatch):
    """`$\\foo$` would stop the plot (an unknown symbol); `$x^2$` would be drawn as x²."""
    texts = _texts_when_saved(monkeypatch)
    results = _rows()
    results["dataset"]["root"] = "/data/$x^2$ $\\foo$"
    results["backbones"][0]["backbone"] = "net$\\foo$"
    plots.accuracy_vs_speed(results, compare(results["backbones"], results["dataset"]["test_labels"]),
                            tmp_path / "plot.png")
    row = {"backbone": "net$\\foo$", "top1": 0.5, "confusion_matrix": [[1, 0], [0, 1]]}
    plots.confusion_matrix(row, ["$x^2$", "$\\foo$"], tmp_path / "confusion.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == PNG and (tmp_path / "confusion.png").read_bytes()[:8] == PNG
    shown = [text for text in texts if "$" in text.get_text()]
    assert {text.get_text() for text in shown} >= {"$x^2$", "$\\foo$"}
    assert any(text.get_text().startswith("net$\\foo$ (") for text in shown)  # the plot's label of the row
    assert any(text.get_text().startswith("$x^2$ $\\foo$, 60 test images") for text in shown)  # its title
    assert not any(text.get_parse_math() for text in shown)


CJK = ["寿司", "ラーメン"]


def _font_with(characters: str, path) -> str:
    """A TrueType font file whose only glyphs, squares, are `characters`; its family name."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    names = {ord(char): f"uni{ord(char):04X}" for char in characters}
    pen = TTGlyphPen(None)
    for x, y in ((100, 0), (100, 800), (900, 800), (900, 0)):
        (pen.lineTo if x != 100 or y else pen.moveTo)((x, y))
    pen.closePath()
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder([".notdef", *names.values()])
    builder.setupCharacterMap(names)
    builder.setupGlyf({name: pen.glyph() for name in [".notdef", *names.values()]})
    builder.setupHorizontalMetrics({name: (1000, 100) for name in [".notdef", *names.values()]})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Zoo Test Glyphs", "styleName": "Regular"})
    builder.setupOS2()
    builder.setupPost()
    builder.save(str(path))
    return "Zoo Test Glyphs"


@pytest.fixture
def cjk_font(tmp_path):
    """A font with the glyphs of CJK, installed for matplotlib while the test runs."""
    from matplotlib import font_manager

    family = _font_with("".join(CJK), tmp_path / "glyphs.ttf")
    before = list(font_manager.fontManager.ttflist)
    font_manager.fontManager.addfont(tmp_path / "glyphs.ttf")
    yield family
    font_manager.fontManager.ttflist[:] = before
    font_manager.fontManager._findfont_cached.cache_clear()


def _both_plots(tmp_path, classes):
    results = _rows()
    results["dataset"].update(root=f"/data/{classes[0]}", classes=classes + ["c", "d"])
    plots.accuracy_vs_speed(results, compare(results["backbones"], results["dataset"]["test_labels"]),
                            tmp_path / "plot.png")
    row = {"backbone": "net", "top1": 0.5, "confusion_matrix": [[1, 0], [0, 1]]}
    plots.confusion_matrix(row, classes, tmp_path / "confusion.png")


def test_cjk_names_are_drawn_in_an_installed_font_that_has_them(tmp_path, monkeypatch, cjk_font, caplog):
    texts = _texts_when_saved(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a glyph missing from every font of the text would warn
        _both_plots(tmp_path, CJK)
    named = [text for text in texts if any(name in text.get_text() for name in CJK)]
    assert {text.get_text() for text in named} >= {*CJK, "寿司, 60 test images: accuracy vs speed (marker area = "
                                                       "parameters; hollow = random weights)"}
    assert all(cjk_font in text.get_fontfamily() for text in named)
    assert not [record for record in caplog.records if record.levelname == "WARNING"]


def test_cjk_names_without_a_font_for_them_print_no_warnings(tmp_path, capfd, caplog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _both_plots(tmp_path, CJK)
    assert (tmp_path / "confusion.png").read_bytes()[:8] == PNG
    assert capfd.readouterr() == ("", "") and not caplog.records


def test_long_class_names_are_cut_in_the_middle_so_names_that_begin_alike_stay_apart(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    ticks = []
    save = Figure.savefig

    def spy(figure, *args, **kwargs):
        axes = figure.axes[0]
        ticks.append(([label.get_text() for label in axes.get_xticklabels()],
                      [label.get_text() for label in axes.get_yticklabels()]))
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    names = ["pizza_margherita_small_portion", "pizza_margherita_large_portion", "soup",
             "class_aaaaaaaaaa_1_bbbbbbbbbb", "class_aaaaaaaaaa_2_bbbbbbbbbb"]
    row = {"backbone": "net", "top1": 0.5, "confusion_matrix": [[int(i == j) for j in range(5)] for i in range(5)]}
    plots.confusion_matrix(row, names, tmp_path / "confusion.png")
    shown = ["pizza_mar…ll_portion", "pizza_mar…ge_portion", "soup",
             # alike at both ends: whole, rather than two labels that read the same
             "class_aaaaaaaaaa_1_bbbbbbbbbb", "class_aaaaaaaaaa_2_bbbbbbbbbb"]
    assert ticks == [(shown, shown)]


def test_a_long_title_is_wrapped_within_the_figure_above_the_plot(tmp_path, monkeypatch):
    """A long dataset folder (or ensemble) name ran off both sides of the figure."""
    from matplotlib.figure import Figure

    placed = []
    save = Figure.savefig

    def spy(figure, *args, **kwargs):
        axes, renderer = figure.axes[0], figure.canvas.get_renderer()
        placed.append((axes.title.get_text(), axes.title.get_window_extent(renderer), figure.bbox,
                       axes.get_window_extent(renderer)))
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    results = _rows()
    long_name = "food_photos_from_the_2021_summer_collection_of_the_market_in_the_old_town_square_v2"
    results["dataset"]["root"] = f"/data/{long_name}"
    plots.accuracy_vs_speed(results, compare(results["backbones"], results["dataset"]["test_labels"]),
                            tmp_path / "plot.png")
    row = {"backbone": "ensemble(efficientnet_lite0+efficientnet_lite1+mobilenet_v2_100_224:hub)", "top1": 0.5,
           "confusion_matrix": [[1, 0], [0, 1]]}
    plots.confusion_matrix(row, ["a", "b"], tmp_path / "confusion.png")
    results["dataset"]["root"] = "/data/food"
    plots.accuracy_vs_speed(results, {}, tmp_path / "short.png")
    (plot, title, figure, frame), (confusion, *_), (short, *_) = placed
    assert plot.splitlines()[0] == f"{long_name}, 60 test images:"
    assert plot.splitlines()[1] == "accuracy vs speed (marker area = parameters; hollow = random weights)"
    assert figure.x0 <= title.x0 and title.x1 <= figure.x1 and title.y1 <= figure.y1 and title.y0 >= frame.y1
    assert confusion.splitlines()[-1] == "confusion matrix, normalised by true class"
    assert "\n" not in short  # one that fits stays on one line
