"""k-fold cross-validation of the head on the cached training features.

It gives every row a validation score (`val_top1`, mean and spread over the folds) and the
out-of-fold probabilities that the ensemble picks its members on (zoo.ensemble), so every
choice the bench makes for the user is made on train/. Only training features are ever
passed in: test/ cannot influence a choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zoo.errors import ZooError
from zoo.progress import Progress, no_progress
from zoo.recipe import head_weights, softmax_views
from zoo.settings import BenchSettings


@dataclass(frozen=True)
class CrossValidation:
    """What k-fold cross-validation of one backbone's head found."""

    folds: np.ndarray  # the fold of every training image
    probabilities: np.ndarray  # out-of-fold class probabilities, one row per training image
    scores: tuple[float, ...]  # top-1 on each held-out fold

    @property
    def top1(self) -> float:
        return float(np.mean(self.scores))

    @property
    def top1_std(self) -> float:
        return float(np.std(self.scores))


def stratified_folds(labels: Sequence[int], k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every image: each class's images are shuffled by `seed` and dealt
    round-robin, each class starting where the last one stopped, so fold sizes differ by at
    most one and every fold holds about 1/k of every class."""
    classes = np.asarray(labels)
    if k > len(classes):
        raise ZooError(f"--folds {k}: train/ has only {len(classes)} images; use --folds {len(classes)} or fewer")
    rng = np.random.default_rng(seed)
    folds = np.empty(len(classes), dtype=np.int64)
    dealt = 0
    for label in np.unique(classes):
        members = rng.permutation(np.flatnonzero(classes == label))
        folds[members] = (dealt + np.arange(len(members))) % k
        dealt += len(members)
    return folds


def cross_validate(
    views: Sequence[np.ndarray],
    labels: Sequence[int],
    num_classes: int,
    settings: BenchSettings,
    progress: Progress = no_progress,
) -> CrossValidation:
    """Train the bench's head k = `settings.folds` times, each time on all folds but one, and
    score the fold left out.

    `views` are the training images' features, one array per view (plain, and mirrored with
    `settings.mirror`), rows aligned with `labels`. An image and its mirror always fall in the
    same fold, and a held-out image is scored as the mean over its views, exactly as the bench
    scores a test image. Fold i's head is seeded with `settings.seed + i`. Each head is trained
    and scored in NumPy (zoo.recipe.head_weights, softmax_views): no Keras head is built for it.
    """
    truth = np.asarray(labels)
    k = settings.folds
    folds = stratified_folds(labels, k, settings.seed)
    probabilities = np.zeros((len(truth), num_classes), dtype=np.float32)
    scores = []
    for fold in range(k):
        held = folds == fold
        trained = np.flatnonzero(~held)
        kernel, bias = head_weights(views, truth, trained, num_classes, settings, settings.seed + fold)
        probabilities[held] = softmax_views(kernel, bias, [view[held] for view in views])
        scores.append(float(np.mean(probabilities[held].argmax(axis=1) == truth[held])))
        progress("cross-validation folds", fold + 1, k)
    return CrossValidation(folds, probabilities, tuple(scores))
