"""The ensemble row: several backbones' heads averaged, members chosen on validation only.

Every row that was cross-validated (zoo.validation) keeps its out-of-fold probabilities on
train/ and its probabilities on test/ (`Predictions`, one small .npz per row under --out). The
members and their weights are picked by ensemble selection on the out-of-fold probabilities
alone; only then are their test probabilities averaged and scored, like any row. An ensemble runs every
member, so its cost is the sum of theirs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from zoo import atomic, metrics
from zoo.data import Dataset, Split
from zoo.errors import ZooError
from zoo.row import BenchRow
from zoo.settings import BenchSettings
from zoo.spec import file_stem

KIND = "ensemble"
#: --ensemble-size by default; what a merge assumes of shards benched before it was recorded.
DEFAULT_SIZE = 3
#: How many times ensemble selection draws a member: weights come in steps of 1/DRAWS at the finest.
DRAWS = 20
#: Cost fields an ensemble pays for every member: it runs them all, one after another.
SUMMED = (
    "trainable_params",
    "flops_per_image",
    "weights_file_mb",
    "peak_rss_mb",
    "latency_ms_p50",
    "latency_ms_p95",
    "extract_seconds",
    "head_seconds",
    "validation_seconds",
    "train_seconds",
)


@dataclass(frozen=True)
class Predictions:
    """What a cross-validated row keeps for the ensemble."""

    folds: np.ndarray  # the fold of every training image
    validation: np.ndarray  # out-of-fold probabilities, one row per training image
    test: np.ndarray  # probabilities on test/, mirror views averaged as the row scored them

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as temporary:
            np.savez_compressed(temporary, folds=self.folds, validation=self.validation, test=self.test)

    @classmethod
    def load(cls, path: Path) -> Predictions | None:
        """The saved predictions, or None when there are none (or they cannot be read)."""
        try:
            with np.load(path) as saved:
                return cls(saved["folds"], saved["validation"], saved["test"])
        except (OSError, KeyError, ValueError):
            return None


def validate_ensemble_size(size: int) -> None:
    if size < 2:
        raise ZooError(f"--ensemble-size {size}: an ensemble needs 2 members or more; --no-ensemble makes none")


def predictions_path(out_dir: Path, name: str) -> Path:
    return out_dir / "predictions" / f"{file_stem(name)}.npz"


def select(candidates: Mapping[str, np.ndarray], labels: Sequence[int], size: int) -> dict[str, float]:
    """Ensemble selection (Caruana et al., 2004) on out-of-fold probabilities: each member's
    weight in the average, in candidate order.

    Greedy forward selection with replacement: `DRAWS` times, draw the candidate whose addition
    to the average of those drawn so far gives the lowest log-loss (the first draw is the best
    single candidate; once `size` different ones are drawn, only they can be drawn again). The
    result is the prefix of draws with the lowest log-loss, each member weighted by how often
    it was drawn. Ties go to the candidate listed first, and to the shorter prefix.

    With replacement, as the paper recommends: a member may help only at a smaller weight, and
    drawing again instead of stopping at the first draw that does not help keeps one unlucky
    step from deciding. Log-loss, not top-1: on a few hundred validation images top-1 moves in
    steps of one image and ties constantly, so a choice made on it mostly fits noise; the
    log-loss sees every image's confidence, and rewards members whose mistakes differ.
    """
    truth = np.asarray(labels)
    names = list(candidates)
    drawn: list[str] = []
    total = np.zeros_like(candidates[names[0]], dtype=np.float64)
    best_loss, best_prefix = np.inf, 0
    for step in range(1, DRAWS + 1):
        allowed = names if len(set(drawn)) < size else [name for name in names if name in drawn]
        loss, _, name = min(
            (metrics.log_loss((total + candidates[name]) / step, truth), index, name)
            for index, name in enumerate(allowed)
        )
        drawn.append(name)
        total += candidates[name]
        if loss < best_loss:
            best_loss, best_prefix = loss, step
    chosen = drawn[:best_prefix]
    return {name: chosen.count(name) / len(chosen) for name in names if name in chosen}


def _total(members: Sequence[dict[str, Any]], key: str) -> Any:
    """The members' `key` added up; None if one of them lacks it."""
    values = [member[key] for member in members]
    return None if None in values else sum(values)


def _fold_scores(probabilities: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> list[float]:
    return [float(np.mean(probabilities[folds == f].argmax(axis=1) == labels[folds == f])) for f in np.unique(folds)]


def ensemble_row(
    members: Sequence[dict],
    predictions: Sequence[Predictions],
    weights: Sequence[float],
    dataset: Dataset,
    settings: BenchSettings,
) -> dict:
    """The row of the ensemble of `members` (finished rows), scored on test/ like any row: the
    `weights`-weighted mean of the members' test probabilities. Its cost is the sum of theirs;
    its images/s is the rate at which every image goes through every member."""
    train_y, test_y = np.asarray(dataset.train.labels), np.asarray(dataset.test.labels)
    validation = np.average([p.validation for p in predictions], axis=0, weights=weights)
    test = np.average([p.test for p in predictions], axis=0, weights=weights)
    scores = _fold_scores(validation, train_y, predictions[0].folds)
    confusion = metrics.confusion_matrix(test_y, test.argmax(axis=1), len(dataset.class_names))
    names = [member["backbone"] for member in members]
    fingerprints = json.dumps([member["settings_fingerprint"] for member in members])
    rates = [member["images_per_sec"] for member in members]
    row = BenchRow(
        backbone=f"{KIND}({'+'.join(names)})",
        kind=KIND,
        members=dict(zip(names, weights)),
        family=KIND,
        source=KIND,
        plugin="",
        input_size=max(member["input_size"] for member in members),
        params=_total(members, "params"),
        weights=", ".join(dict.fromkeys(member["weights"] for member in members)),
        status="ok",
        settings=settings,
        settings_fingerprint=hashlib.sha256(fingerprints.encode()).hexdigest()[:16],
        val_top1=float(np.mean(scores)),
        val_top1_std=float(np.std(scores)),
        top1=metrics.top_k_accuracy(test, test_y, 1),
        top5=metrics.top_k_accuracy(test, test_y, 5),
        test_images=len(test_y),
        test_predictions=test.argmax(axis=1).tolist(),  # in the paired test against the best, as every row
        per_class_accuracy=dict(zip(dataset.class_names, metrics.per_class_accuracy(confusion))),
        confusion_matrix=confusion.tolist(),
        images_per_sec=None if None in rates else 1 / sum(1 / rate for rate in rates),
    )
    row.top1_frozen = row.top1
    for key in SUMMED:
        setattr(row, key, _total(members, key))
    row.finish(sum(member["total_seconds"] or 0.0 for member in members))
    row.val_log_loss = metrics.log_loss(validation, train_y)
    return row.to_dict()


def build(rows: Sequence[dict], out_dir: Path, dataset: Dataset, settings: BenchSettings, size: int) -> dict | str:
    """The ensemble of the finished, cross-validated `rows` that `select` picks (at most `size`
    of them); when there is none, the reason, for a line "No ensemble row: REASON."."""
    if not size:
        return "--no-ensemble was given"
    saved = {
        row["backbone"]: Predictions.load(predictions_path(out_dir, row["backbone"]))
        for row in rows
        if row.get("status") == "ok" and row.get("val_top1") is not None
    }
    found = [(name, p) for name, p in saved.items() if p is not None]
    # all from this bench's settings and train/, so with the first one's folds
    usable = {name: p for name, p in found if np.array_equal(p.folds, found[0][1].folds)}
    if len(usable) < 2:
        return _too_few(usable, settings)
    chosen = select({name: p.validation for name, p in usable.items()}, dataset.train.labels, size)
    if len(chosen) < 2:
        return f"on validation no mix of {', '.join(usable)} beat {next(iter(chosen))} alone"
    by_name = {row["backbone"]: row for row in rows}
    members = [by_name[name] for name in chosen]
    return ensemble_row(members, [usable[name] for name in chosen], list(chosen.values()), dataset, settings)


def _too_few(usable: Mapping[str, Predictions], settings: BenchSettings) -> str:
    """Why fewer than two rows can be members: members are chosen on validation."""
    if not settings.folds:
        return "--folds 0 cross-validates no row, and members are chosen on validation"
    if settings.mode != "features" or settings.augment:
        return "rows of --mode finetune or --augment are not cross-validated, and members are chosen on validation"
    have = f"only {', '.join(usable)}" if usable else "none"
    return f"it needs two finished, cross-validated rows or more; {have} here"


def merged(rows: list[dict], meta: dict, out_dir: Path, folders: Sequence[Path]) -> tuple[list[dict], str]:
    """The merged `rows` of a sweep's shards (`folders`) with the ensemble of them all, chosen on
    validation as one bench's would be (each shard's own was chosen among its rows only), of at
    most the shards' --ensemble-size members (0: --no-ensemble); or the rows and why there is
    none. The shards' saved predictions are copied into `out_dir`."""
    from zoo import export

    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for saved in (folder / "predictions").glob("*.npz"):
            shutil.copy2(saved, out_dir / "predictions" / saved.name)
    data = meta.get("dataset") or {}
    if "train_labels" not in data:
        return rows, "the shards' results name no train labels (benched by an older zoo)"
    train, test = data["train_labels"], data["test_labels"]
    dataset = Dataset(
        Path(data.get("root", "")),
        tuple(data["classes"]),
        Split(("",) * len(train), tuple(train)),
        Split(("",) * len(test), tuple(test)),
    )
    first = next((row for row in rows if row.get("status") == "ok"), None)
    if first is None:
        return rows, "no row finished"
    known = {item.name for item in fields(BenchSettings)} - {"weights"}
    settings = BenchSettings.from_config(
        weights=first.get("weights_mode", "auto"), **{key: first[key] for key in known if key in first}
    )
    combined = build(rows, out_dir, dataset, settings, meta.get("ensemble_size", DEFAULT_SIZE))
    if isinstance(combined, str):
        return rows, combined
    combined["classifier"] = export.save_ensemble(out_dir, combined, rows)
    return [*rows, combined], ""
