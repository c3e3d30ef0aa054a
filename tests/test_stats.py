"""The statistics against values worked out by hand from their formulas (no SciPy)."""

import math

import pytest

from zoo.stats import compare, discordant, mcnemar_exact, p_text, wilson_interval


@pytest.mark.parametrize("hits, total, low, high", [
    # p = 0.8, n = 10: centre (0.8 + 0.19208) / 1.38415, half 1.95996 / 1.38415 * sqrt(0.016 + 0.0096)
    (8, 10, 0.4901625, 0.9433178),
    (0, 10, 0.0, 0.2775328),  # z² / (n + z²) = 3.84146 / 13.84146
    (10, 10, 0.7224672, 1.0),
    (432, 500, 0.8311649, 0.8912846),  # 86.4 % of 500, the food bench's Lite0
])
def test_wilson_interval_matches_the_formula(hits, total, low, high):
    got = wilson_interval(hits, total)
    assert got[0] == pytest.approx(low, abs=1e-6) and got[1] == pytest.approx(high, abs=1e-6)


def test_wilson_interval_of_nothing_is_everything():
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("b, c, p", [
    (1, 9, 2 * (1 + 10) / 2**10),           # P(X <= 1), X ~ Binomial(10, 1/2), doubled
    (3, 5, 2 * (1 + 8 + 28 + 56) / 2**8),  # 0.7265625
    (5, 3, 2 * (1 + 8 + 28 + 56) / 2**8),  # symmetric
    (4, 4, 1.0),                            # doubled tail above 1 is capped
    (0, 0, 1.0),                            # no disagreement, no evidence
    (0, 20, 2 / 2**20),
])
def test_mcnemar_exact_matches_the_binomial_tail(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_exact_stays_exact_for_thousands_of_discordant_images():
    # Far beyond where 0.5**n underflows; the tail of Binomial(8300, 1/2) at 4000 is about 0.1 %.
    p = mcnemar_exact(4000, 4300)
    assert 0.0005 < p < 0.002 and math.isfinite(p)


def test_discordant_counts_images_only_one_got_right():
    assert discordant([True, True, False, False], [True, False, True, False]) == (1, 1)
    assert discordant([True, True, True], [False, False, True]) == (2, 0)


def _row(name, predictions, labels):
    top1 = sum(p == y for p, y in zip(predictions, labels)) / len(labels)
    return {"backbone": name, "status": "ok", "top1": top1, "test_images": len(labels), "test_predictions": predictions}


def test_compare_marks_rows_the_test_cannot_separate_from_the_best():
    labels = [0, 1] * 50
    best = list(labels)                      # 100 right
    close = list(labels)                     # 97 right: 3 discordant, all for best
    for i in range(3):
        close[i] = 1 - close[i]
    poor = [0] * 100                         # 50 right: 50 discordant, all for best
    rows = [_row("close", close, labels), _row("best", best, labels), _row("poor", poor, labels),
            {"backbone": "broken", "status": "failed", "error": "x"}]
    result = compare(rows, labels)
    assert result["best"] == "best" and result["test_images"] == 100
    assert result["rows"]["best"]["tied_with_best"] is True and result["rows"]["best"]["p_vs_best"] is None
    assert result["rows"]["close"]["p_vs_best"] == pytest.approx(2 / 2**3)  # 0.25
    assert result["rows"]["close"]["tied_with_best"] is True
    assert result["rows"]["poor"]["p_vs_best"] == pytest.approx(2 / 2**50)
    assert result["rows"]["poor"]["tied_with_best"] is False
    assert "broken" not in result["rows"]
    assert result["summary"] == (
        "best and close are tied at p = 0.25 on 100 test images; worse than best: poor (p < 0.001) "
        "(exact McNemar test, 5 % level)."
    )
    low, high = result["rows"]["close"]["top1_ci95"]
    assert (low, high) == wilson_interval(97, 100)


def test_rows_without_predictions_still_get_an_interval_but_no_test():
    rows = [{"backbone": "old", "status": "ok", "top1": 0.8, "test_images": 10}]
    result = compare(rows, None)
    assert result["best"] is None and result["summary"] == ""
    assert result["rows"]["old"]["top1_ci95"] == list(wilson_interval(8, 10))


def test_a_best_row_without_predictions_is_not_passed_over_for_a_lower_one():
    labels = [0, 1] * 10
    rows = [
        {"backbone": "old", "status": "ok", "top1": 0.9, "test_images": 20},
        {"backbone": "new", "status": "ok", "top1": 0.5, "test_predictions": [0] * 20},
    ]
    result = compare(rows, labels)
    assert result["best"] == "old" and result["rows"]["new"]["p_vs_best"] is None
    assert result["summary"] == "old, the best row, has no per-image test predictions: no row is tested against it."


def test_p_values_read_as_people_write_them():
    assert p_text(0.6234) == "p = 0.62" and p_text(0.0004) == "p < 0.001" and p_text(0.012) == "p = 0.012"
