"""Split rules: the papers' train/validation/test partitions, reproducible from (rule, seed, fold).

Every rule starts from ``rng = numpy.random.default_rng(seed)`` and a permutation of the image
indices (images are stored sorted by id, so a split depends only on the ids, the rule and the seed):

``official``
    the dataset's own train/test partition (DRIVE: 20 training, 20 test images); the validation
    set is drawn from the official training images with the 80:20 rule below (DRIVE: 16/4,
    paper 000 Table 1).
``random-A-B-C``
    percentages: ``test = round(N·C/100)`` (half up), then the development set ``N − test`` is cut
    ``train = ⌊(N − test)·A/(A+B)⌋``, ``val = rest``. Paper 000's 80 % development / 20 % test,
    development 80/20 (``random-64-16-20``) gives its Table 1 counts exactly: 2018 DSB 670 →
    428/108/134, CVC-ClinicDB 612 → 392/98/122.
``fixed-T-V-S``
    exact counts (FocusNet++ on ISIC 2018: ``fixed-1815-259-520``); they must not exceed N.
``kfold-K``
    K-fold cross-validation (paper 003): fold ``f`` (0-based) is the test set, taken as the f-th
    of K near-equal chunks of the permutation (``numpy.array_split``); the rest is cut 80:20 into
    train/validation as above. The permutation depends on the seed only, so the K folds of one
    seed partition the data.
``holdout-P-kfold-K``
    a fixed held-out test set with K-fold cross-validation on the rest (paper 003: "75-25
    train-test split" and "5-fold cross validation", ``holdout-25-kfold-5``): ``test =
    round(N·P/100)`` (half up) images, the same for every fold of a seed; the development rest is
    cut into K ``array_split`` chunks, fold ``f``'s chunk is the validation set and the other
    K − 1 chunks train. Paper 003 prints 40 BUS and 649 ISIC 2018 test images; this gives 41 of
    163 and 649 of 2594 (no single rounding of 25 % gives both printed counts).
``keras-T-V`` and ``keras-T-V-xK``
    paper 003 as its code split (nabsabraham/focal-tversky-unet ``bus_train.py:68-70,87``,
    ``isic_train.py:59-61,78``): scikit-learn ``train_test_split(test_size=T/100)`` takes
    ``test = ⌈N·T/100⌉`` images of a random permutation, and Keras
    ``fit(validation_split=V/100)`` then takes the *last* ``n − int(n·(1 − V/100))`` of the
    remaining ``n`` arrays, in their
    shuffled order, as validation (BUS 163 → 103/19/41, ISIC 2018 2594 → 1653/292/649). With
    ``-xK`` the rule has K folds: fold ``f`` is the same rule with the permutation of seed
    ``seed + f`` (paper 003's "5-fold cross validation" = ``keras-25-15-x5``, seeds 0–4); the
    folds' test sets overlap, as five reruns of the authors' script would.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from focalbench.errors import FocalbenchError

RULES = (
    "official",
    "random-A-B-C",
    "fixed-T-V-S",
    "kfold-K",
    "holdout-P-kfold-K",
    "keras-T-V[-xK]",
)
# Validation share of a development set where the rule does not name one (paper 000: 80:20).
DEV_TRAIN, DEV_VAL = 80, 20


def _cut_dev(dev: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Split development indices ``train = ⌊n·a/(a+b)⌋``, validation = the rest."""
    n_train = len(dev) * a // (a + b)
    return dev[:n_train], dev[n_train:]


def _result(train: np.ndarray, val: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    return {
        k: np.sort(v).astype(np.int64) for k, v in (("train", train), ("val", val), ("test", test))
    }


def split_indices(
    n: int,
    rule: str,
    seed: int = 0,
    fold: int | None = None,
    official: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Index arrays ``train``/``val``/``test`` (int64, sorted, disjoint) for ``n`` images.

    ``official`` maps ``"train"``/``"test"`` to index lists (only the ``official`` rule reads it).
    """
    k = n_folds(rule)
    if k is None and fold is not None:
        raise FocalbenchError(f"split {rule!r} has no folds; drop --fold or use a kfold-K split")
    if k is not None:
        if k < 2 or k > n:
            raise FocalbenchError(
                f"split {rule!r}: K must be between 2 and the number of images ({n})"
            )
        if fold is None or not 0 <= fold < k:
            raise FocalbenchError(
                f"split {rule!r} needs a fold between 0 and {k - 1}; pass --fold F"
            )

    keras = re.fullmatch(r"keras-(\d+)-(\d+)(?:-x\d+)?", rule)
    if keras:
        return _keras_split(n, int(keras.group(1)), int(keras.group(2)), seed + (fold or 0), rule)

    rng = np.random.default_rng(seed)
    if rule == "official":
        if not official:
            raise FocalbenchError(
                "this dataset has no official train/test partition; use e.g. split random-64-16-20"
            )
        train_side = rng.permutation(np.asarray(official["train"], dtype=np.int64))
        train, val = _cut_dev(train_side, DEV_TRAIN, DEV_VAL)
        return _result(train, val, np.asarray(official["test"], dtype=np.int64))

    perm = rng.permutation(n)
    random = re.fullmatch(r"random-(\d+)-(\d+)-(\d+)", rule)
    if random:
        a, b, c = map(int, random.groups())
        if a + b + c != 100 or a == 0:
            raise FocalbenchError(
                f"split {rule!r}: percentages must sum to 100 with train > 0, e.g. random-64-16-20"
            )
        n_test = _percent_of(n, c)
        train, val = _cut_dev(perm[n_test:], a, b)
        return _result(train, val, perm[:n_test])

    fixed = re.fullmatch(r"fixed-(\d+)-(\d+)-(\d+)", rule)
    if fixed:
        t, v, s = map(int, fixed.groups())
        if t + v + s > n:
            raise FocalbenchError(
                f"split {rule!r} needs {t + v + s} images but the dataset has {n}"
            )
        return _result(perm[:t], perm[t : t + v], perm[t + v : t + v + s])

    if re.fullmatch(r"kfold-\d+", rule):
        chunks = np.array_split(perm, k)
        train, val = _cut_dev(_without(chunks, fold), DEV_TRAIN, DEV_VAL)
        return _result(train, val, chunks[fold])

    holdout = re.fullmatch(r"holdout-(\d+)-kfold-\d+", rule)
    if holdout:
        p = int(holdout.group(1))
        n_test = _percent_of(n, p)
        if not 0 < p < 100 or n - n_test < k:
            raise FocalbenchError(
                f"split {rule!r}: the held-out percentage must leave at least K images "
                "for the folds, e.g. holdout-25-kfold-5"
            )
        chunks = np.array_split(perm[n_test:], k)
        return _result(_without(chunks, fold), chunks[fold], perm[:n_test])

    raise FocalbenchError(f"unknown split rule {rule!r}; choose from: {', '.join(RULES)}")


def _keras_split(
    n: int, test_pct: int, val_pct: int, seed: int, rule: str
) -> dict[str, np.ndarray]:
    """scikit-learn's test share, then Keras' ``validation_split`` tail (module docstring)."""
    n_test = math.ceil(test_pct / 100 * n)  # sklearn: ceil(test_size · n_samples)
    n_dev = n - n_test
    n_train = int(n_dev * (1.0 - val_pct / 100))  # Keras: split_at = int(n · (1 − split))
    if not (0 < test_pct < 100 and 0 < val_pct < 100) or n_train < 1 or n_train == n_dev:
        raise FocalbenchError(
            f"split {rule!r} leaves an empty train, validation or test set of "
            f"{n} images; use percentages such as keras-25-15"
        )
    perm = np.random.default_rng(seed).permutation(n)
    dev = perm[n_test:]
    return _result(dev[:n_train], dev[n_train:], perm[:n_test])


def _percent_of(n: int, percent: int) -> int:
    """``round(n·percent/100)``, half up, in integers."""
    return (2 * n * percent + 100) // 200


def _without(chunks: list[np.ndarray], fold: int) -> np.ndarray:
    return np.concatenate([c for i, c in enumerate(chunks) if i != fold])


def n_folds(rule: str) -> int | None:
    """K for a ``kfold-K``, ``holdout-P-kfold-K`` or ``keras-T-V-xK`` rule, else ``None``."""
    match = re.fullmatch(r"(?:holdout-\d+-)?kfold-(\d+)|keras-\d+-\d+-x(\d+)", rule)
    return int(match.group(1) or match.group(2)) if match else None
