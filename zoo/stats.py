"""Is a lead real? Confidence intervals and paired tests on the bench's test predictions.

A 500-image test set cannot tell 86.8 % from 86.4 %: each row's top-1 gets its 95 % Wilson
interval, and every row is compared with the best one on the *same* test images by an exact
McNemar test, which looks only at the images the two disagree on. Rows the test cannot tell
from the best are "tied with best". Pure Python: `zoo report` needs neither NumPy nor SciPy.
"""

from __future__ import annotations

import math

#: The two-sided 95 % quantile of the standard normal distribution.
Z95 = 1.959963984540054
#: Below this p-value a row is significantly worse than the best.
ALPHA = 0.05


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: unlike p ± z·se, it stays inside [0, 1] and
    keeps its coverage near 0 % and 100 %, where bench accuracies often are."""
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z / (1 + z2 / total) * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    low = 0.0 if successes == 0 else centre - half  # exactly 0 and 1 at the ends, not 1e-17 off
    high = 1.0 if successes == total else centre + half
    return low, high


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: under "equally accurate" each discordant image (right for
    one, wrong for the other) is a fair coin, so the smaller count is Binomial(n, 1/2).

    Computed with exact integers, so it is exact for any count, small or large.
    """
    n = only_first + only_second
    if n == 0:
        return 1.0
    term, tail = 1, 1  # C(n, 0), and the running sum of C(n, i) for i <= min count
    for i in range(min(only_first, only_second)):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2**n)


def discordant(first: list[bool], second: list[bool]) -> tuple[int, int]:
    """(images only `first` got right, images only `second` got right)."""
    only_first = sum(a and not b for a, b in zip(first, second))
    only_second = sum(b and not a for a, b in zip(first, second))
    return only_first, only_second


def correct(predictions: list[int], labels: list[int]) -> list[bool]:
    return [p == y for p, y in zip(predictions, labels)]


def compare(rows: list[dict], labels: list[int] | None) -> dict:
    """The statistics section of results.json, from the rows' per-image test predictions.

    {"test_images", "best", "summary", "rows": {backbone: {"top1_ci95": [low, high],
    "p_vs_best": p or None, "tied_with_best": bool}}}. A row without predictions for these
    labels (say an old results file) gets its interval from top1 and test_images only.
    """
    labels = labels or []
    finished = [row for row in rows if row.get("status") == "ok" and row.get("top1") is not None]
    paired = {
        row["backbone"]: correct(row["test_predictions"], labels)
        for row in finished
        if labels and len(row.get("test_predictions") or ()) == len(labels)
    }
    per_row: dict[str, dict] = {}
    for row in finished:
        total = len(labels) if row["backbone"] in paired else int(row.get("test_images") or 0)
        hits = sum(paired[row["backbone"]]) if row["backbone"] in paired else round(row["top1"] * total)
        low, high = wilson_interval(hits, total)
        per_row[row["backbone"]] = {"top1_ci95": [low, high], "p_vs_best": None, "tied_with_best": False}
    best = max(finished, key=lambda r: r["top1"], default=None) if paired else None
    if best is None:
        return {"test_images": len(labels), "best": None, "summary": "", "rows": per_row}
    per_row[best["backbone"]]["tied_with_best"] = True
    if best["backbone"] not in paired:  # an old row, say: no other row can be tested against it
        unpaired = f"{best['backbone']}, the best row, has no per-image test predictions: no row is tested against it."
        return {"test_images": len(labels), "best": best["backbone"], "summary": unpaired, "rows": per_row}
    for name, hits in paired.items():
        if name != best["backbone"]:
            p = mcnemar_exact(*discordant(paired[best["backbone"]], hits))
            per_row[name].update(p_vs_best=p, tied_with_best=p >= ALPHA)
    return {
        "test_images": len(labels),
        "best": best["backbone"],
        "summary": summary(best["backbone"], per_row, len(labels)),
        "rows": per_row,
    }


def p_text(p: float) -> str:
    """A p-value as people write it: two significant figures, or "< 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def summary(best: str, per_row: dict[str, dict], images: int) -> str:
    """One or two sentences saying which rows the test images cannot separate from the best."""
    compared = {name: s for name, s in per_row.items() if s["p_vs_best"] is not None}
    tied = [name for name, s in compared.items() if s["tied_with_best"]]
    worse = [name for name, s in compared.items() if not s["tied_with_best"]]
    on = f"on {images} test images"
    if not compared:
        return f"{best} is the only row compared {on}."
    if len(tied) == 1:
        sentence = f"{best} and {tied[0]} are tied at {p_text(compared[tied[0]]['p_vs_best'])} {on}"
    elif tied:
        listed = ", ".join(f"{name} ({p_text(compared[name]['p_vs_best'])})" for name in tied)
        sentence = f"{best} is best; tied with it {on}: {listed}"
    else:
        sentence = f"{best} is significantly better than every other row {on}"
    if worse and tied:
        listed = ", ".join(f"{name} ({p_text(compared[name]['p_vs_best'])})" for name in worse)
        sentence += f"; worse than {best}: {listed}"
    return sentence + " (exact McNemar test, 5 % level)."
