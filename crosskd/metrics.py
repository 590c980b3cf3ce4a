"""Evaluation metrics: pure functions on numpy arrays (and one on a DataFrame).

Ranking metrics for binary fraud scores (:func:`roc_auc`, :func:`average_precision`), the
Fraud Detection Handbook's :func:`card_precision_at_k`, classification metrics for class
probabilities (:func:`accuracy`, :func:`log_loss`, :func:`classification_metrics`) and fidelity
metrics comparing a student's scores with its teacher's (:func:`rank_agreement`,
:func:`top_k_agreement`). scikit-learn does the arithmetic where it has the metric; the functions
here add input checks with clear messages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .exceptions import ConfigError, DataError

__all__ = [
    "roc_auc",
    "average_precision",
    "accuracy",
    "log_loss",
    "card_precision_at_k",
    "card_precision_at_k_per_day",
    "classification_metrics",
    "rank_agreement",
    "top_k_agreement",
]


# ----------------------------------------------------------------------------- input checks


def _as_1d(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DataError(
            f"{name} must be one-dimensional (n_samples,), but has shape {array.shape}. "
            "Pass one value per row (for class probabilities of a binary model, proba[:, 1])."
        )
    return array


def _check_lengths(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise DataError(
            f"{name_a} and {name_b} must have the same number of rows, but {name_a} has {len(a)} "
            f"and {name_b} has {len(b)}. Pass the labels and scores of the same rows."
        )
    if len(a) == 0:
        raise DataError(f"{name_a} and {name_b} are empty; a metric needs at least one row.")


def _check_finite(score: np.ndarray, name: str) -> np.ndarray:
    try:
        score = score.astype(np.float64, copy=False)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"{name} must be numeric, but has dtype {score.dtype}. Pass model scores or "
            "probabilities as numbers."
        ) from err
    bad = ~np.isfinite(score)
    if bad.any():
        raise DataError(
            f"{name} must be finite, but {int(bad.sum())} of {len(score)} values are NaN or "
            f"infinite (first at row {int(np.flatnonzero(bad)[0])}). Check the model's output, "
            "or drop those rows before scoring."
        )
    return score


def _binary_labels(y_true: Any, name: str = "y_true") -> np.ndarray:
    y = _as_1d(y_true, name)
    if y.dtype == bool:
        return y.astype(np.int64)
    values = np.unique(y)
    if not np.isin(values, [0, 1]).all():
        shown = ", ".join(map(repr, values[:5].tolist()))
        raise DataError(
            f"{name} must hold binary labels 0 and 1, but holds {shown}"
            f"{' ...' if len(values) > 5 else ''}. Encode the positive (fraud) class as 1."
        )
    return y.astype(np.int64)


def _binary_inputs(y_true: Any, score: Any, metric: str) -> tuple[np.ndarray, np.ndarray]:
    y = _binary_labels(y_true)
    s = _as_1d(score, "score")
    _check_lengths(y, s, "y_true", "score")
    s = _check_finite(s, "score")
    if y.min() == y.max():
        raise DataError(
            f"{metric} needs both classes in y_true, but all {len(y)} labels are {int(y[0])}. "
            "Evaluate on a set that holds positives and negatives (a longer period, or a "
            "stratified sample)."
        )
    return y, s


def _class_indices(y_true: Any, n_classes: int) -> np.ndarray:
    y = _as_1d(y_true, "y_true")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        if (
            np.issubdtype(y.dtype, np.floating)
            and np.all(np.isfinite(y))
            and np.all(y == np.round(y))
        ):
            y = y.astype(np.int64)
        else:
            raise DataError(
                f"y_true must hold class indices 0..{n_classes - 1}, but has dtype {y.dtype}. "
                "Encode the labels as integers first (e.g. with the student's class list)."
            )
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(
            f"y_true must hold class indices 0..{n_classes - 1} (proba has {n_classes} columns), "
            f"but ranges from {int(y.min())} to {int(y.max())}. Encode the labels as indices "
            "into the probability columns."
        )
    return y.astype(np.int64)


def _proba_2d(proba: Any) -> np.ndarray:
    p = np.asarray(proba)
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataError(
            f"proba must have shape (n_samples, n_classes) with n_classes >= 2, but has shape "
            f"{p.shape}. For a binary model pass both columns, e.g. np.c_[1 - p1, p1]."
        )
    p = _check_finite(p, "proba")
    return p


# ----------------------------------------------------------------------------- binary ranking


def roc_auc(y_true: Any, score: Any) -> float:
    """Area under the ROC curve of a binary score.

    Args:
        y_true: Labels 0/1 (or bool), shape (n,).
        score: Positive-class probability or any score that grows with it, shape (n,).

    Returns:
        The ROC AUC in [0, 1] (ties count one half).

    Raises:
        DataError: lengths differ, a score is NaN/infinite, labels are not 0/1, or y_true holds a
            single class.
    """
    y, s = _binary_inputs(y_true, score, "roc_auc")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def average_precision(y_true: Any, score: Any) -> float:
    """Average precision (area under the precision-recall curve, step-wise) of a binary score.

    Args:
        y_true: Labels 0/1 (or bool), shape (n,).
        score: Positive-class probability or any score that grows with it, shape (n,).

    Returns:
        The average precision in [0, 1], as :func:`sklearn.metrics.average_precision_score`.

    Raises:
        DataError: as :func:`roc_auc`.
    """
    y, s = _binary_inputs(y_true, score, "average_precision")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s))


# ----------------------------------------------------------------------------- classification


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of rows whose predicted label equals the true label.

    Args:
        y_true: True labels, shape (n,).
        y_pred: Predicted labels of the same kind, shape (n,).

    Returns:
        The accuracy in [0, 1].

    Raises:
        DataError: lengths differ or the inputs are empty.
    """
    y = _as_1d(y_true, "y_true")
    p = _as_1d(y_pred, "y_pred")
    _check_lengths(y, p, "y_true", "y_pred")
    return float(np.mean(y == p))


def log_loss(y_true: Any, proba: Any, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the true classes.

    Args:
        y_true: Class indices 0..K-1, shape (n,).
        proba: Class probabilities, shape (n, K); rows should sum to 1 (they are not renormalised).
        eps: Probabilities are clipped to [eps, 1] before the log, so a confident mistake costs
            -log(eps) instead of infinity.

    Returns:
        The mean of -log(proba[i, y_true[i]]).

    Raises:
        DataError: shapes disagree, labels are outside 0..K-1, or probabilities are not finite.
    """
    p = _proba_2d(proba)
    y = _class_indices(y_true, p.shape[1])
    _check_lengths(y, p, "y_true", "proba")
    picked = np.clip(p[np.arange(len(y)), y], eps, 1.0)
    return float(-np.mean(np.log(picked)))


def classification_metrics(y_true: Any, proba: Any) -> dict[str, float]:
    """The standard metrics of a classifier's probabilities, by name.

    Args:
        y_true: Class indices 0..K-1, shape (n,).
        proba: Class probabilities, shape (n, K).

    Returns:
        Binary (K == 2): ``roc_auc``, ``average_precision`` (both from ``proba[:, 1]``;
        left out when y_true holds a single class), ``accuracy`` (argmax) and ``log_loss``.
        Multiclass: ``accuracy`` and ``log_loss``.

    Raises:
        DataError: as :func:`log_loss`.
    """
    p = _proba_2d(proba)
    y = _class_indices(y_true, p.shape[1])
    _check_lengths(y, p, "y_true", "proba")
    result: dict[str, float] = {}
    if p.shape[1] == 2 and y.min() != y.max():
        result["roc_auc"] = roc_auc(y, p[:, 1])
        result["average_precision"] = average_precision(y, p[:, 1])
    result["accuracy"] = float(np.mean(np.argmax(p, axis=1) == y))
    result["log_loss"] = log_loss(y, p)
    return result


# ----------------------------------------------------------------------------- card precision


def _card_precision_frame(
    frame: pd.DataFrame, k: int, score: str, label: str, customer: str, day: str
) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"card_precision_at_k takes a DataFrame with one row per transaction, but received "
            f"{type(frame).__name__}. Build one with the score, label, customer and day columns."
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be a positive integer, but is {k!r}. Use e.g. k=100.")
    missing = [c for c in (score, label, customer, day) if c not in frame.columns]
    if missing:
        raise DataError(
            f"card_precision_at_k needs the columns {missing} that the frame lacks (it has "
            f"{list(frame.columns)[:12]}). Add them, or name the right columns with score=, "
            "label=, customer=, day=."
        )
    if len(frame) == 0:
        raise DataError("card_precision_at_k received an empty frame; pass the scored test rows.")
    _check_finite(frame[score].to_numpy(), f"frame[{score!r}]")
    _binary_labels(frame[label].to_numpy(), f"frame[{label!r}]")
    return frame


def card_precision_at_k_per_day(
    frame: pd.DataFrame,
    k: int = 100,
    score: str = "score",
    label: str = "TX_FRAUD",
    customer: str = "CUSTOMER_ID",
    day: str = "TX_TIME_DAYS",
    remove_detected: bool = True,
) -> pd.DataFrame:
    """Card Precision@k of each day, as the Fraud Detection Handbook defines it (chapter 4.2).

    On each day (in increasing order) every card's (customer's) transactions are reduced to the
    card's maximum score and maximum label; the cards are ranked by score (ties: smaller customer
    id first) and the precision is the number of compromised cards (label 1) among the top ``k``,
    divided by ``k`` (also when the day has fewer than ``k`` cards). With ``remove_detected``,
    the compromised cards found in the top k of a day (the true positives the investigators
    confirmed) are removed from all later days, as in the handbook; compromised cards the model
    missed stay.

    Args:
        frame: One row per transaction with the columns named below.
        k: Number of cards the investigators check per day.
        score: Column of the model's score (higher = more suspicious).
        label: Column of the 0/1 fraud label.
        customer: Column identifying the card.
        day: Column of the integer day.
        remove_detected: Remove cards detected on earlier days (the handbook's default).

    Returns:
        A DataFrame indexed by day with columns ``card_precision`` (the day's CP@k),
        ``n_detected`` (compromised cards in the top k), ``n_compromised`` (compromised cards
        left that day) and ``n_cards`` (cards left that day).

    Raises:
        DataError: a column is missing, the frame is empty, scores are not finite or labels not 0/1.
        ConfigError: k is not a positive integer.
    """
    _card_precision_frame(frame, k, score, label, customer, day)
    cards = (
        frame.groupby([day, customer], sort=True)
        .agg(_score=(score, "max"), _label=(label, "max"))
        .reset_index()
    )
    detected: set[Any] = set()
    rows = []
    for day_value, cards_day in cards.groupby(day, sort=True):
        if remove_detected and detected:
            cards_day = cards_day[~cards_day[customer].isin(detected)]
        s = cards_day["_score"].to_numpy(dtype=np.float64)
        ids = cards_day[customer].to_numpy()
        top = np.lexsort((ids, -s))[:k]  # descending score, then ascending id
        labels = cards_day["_label"].to_numpy()
        hits = ids[top][labels[top] == 1]
        if remove_detected:
            detected.update(hits.tolist())
        rows.append(
            {
                day: day_value,
                "card_precision": len(hits) / k,
                "n_detected": len(hits),
                "n_compromised": int(labels.sum()),
                "n_cards": len(ids),
            }
        )
    return pd.DataFrame(rows).set_index(day)


def card_precision_at_k(
    frame: pd.DataFrame,
    k: int = 100,
    score: str = "score",
    label: str = "TX_FRAUD",
    customer: str = "CUSTOMER_ID",
    day: str = "TX_TIME_DAYS",
    remove_detected: bool = True,
) -> float:
    """Card Precision@k averaged over the days (the handbook's CP@k).

    See :func:`card_precision_at_k_per_day` for the definition and the arguments; this returns
    the mean of its ``card_precision`` column.

    Example:
        >>> test = test.assign(score=model.predict_proba(test[features])[:, 1])
        >>> card_precision_at_k(test, k=100)
    """
    per_day = card_precision_at_k_per_day(
        frame,
        k=k,
        score=score,
        label=label,
        customer=customer,
        day=day,
        remove_detected=remove_detected,
    )
    return float(per_day["card_precision"].mean())


# ----------------------------------------------------------------------------- fidelity


def _pair_of_scores(score_a: Any, score_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = _check_finite(_as_1d(score_a, "score_a"), "score_a")
    b = _check_finite(_as_1d(score_b, "score_b"), "score_b")
    _check_lengths(a, b, "score_a", "score_b")
    return a, b


def rank_agreement(score_a: Any, score_b: Any) -> float:
    """Spearman rank correlation of two scores of the same rows (e.g. student vs teacher).

    Args:
        score_a: Scores, shape (n,).
        score_b: Scores of the same rows, shape (n,).

    Returns:
        The Pearson correlation of the average ranks, in [-1, 1]; 1.0 when both are constant
        and 0.0 when exactly one is (a constant score carries no ranking).

    Raises:
        DataError: lengths differ, fewer than two rows, or a score is not finite.
    """
    a, b = _pair_of_scores(score_a, score_b)
    if len(a) < 2:
        raise DataError(f"rank_agreement needs at least 2 rows, but received {len(a)}.")
    ra = pd.Series(a).rank(method="average").to_numpy(dtype=np.float64, copy=True)
    rb = pd.Series(b).rank(method="average").to_numpy(dtype=np.float64, copy=True)
    ra -= ra.mean()
    rb -= rb.mean()
    na, nb = np.sqrt(ra @ ra), np.sqrt(rb @ rb)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.clip((ra @ rb) / (na * nb), -1.0, 1.0))


def top_k_agreement(score_a: Any, score_b: Any, k: int) -> float:
    """Share of the k highest-scored rows of ``score_a`` that are also in the top k of ``score_b``.

    Ties at the cut are broken by row order (earlier rows first), identically for both scores.

    Args:
        score_a: Scores, shape (n,).
        score_b: Scores of the same rows, shape (n,).
        k: Size of the top set, 1 <= k <= n.

    Returns:
        |top_k(a) ∩ top_k(b)| / k, in [0, 1].

    Raises:
        DataError: lengths differ or a score is not finite.
        ConfigError: k is not an integer in [1, n].
    """
    a, b = _pair_of_scores(score_a, score_b)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= len(a):
        raise ConfigError(
            f"k must be an integer between 1 and the number of rows ({len(a)}), but is {k!r}."
        )
    top_a = np.argsort(-a, kind="stable")[:k]
    top_b = np.argsort(-b, kind="stable")[:k]
    return float(len(np.intersect1d(top_a, top_b)) / k)


# ------------------------------------------------------------------------------ text recognition

__all__ += ["edit_distance", "character_error_rate", "sequence_accuracy"]


def fidelity(teacher_proba: Any, student_proba: Any) -> dict[str, float]:
    """How closely a student follows its teacher; needs no labels.

    Args:
        teacher_proba, student_proba: ``(n, classes)`` class probabilities of the same rows.

    Returns:
        ``prediction_agreement`` (share of rows with the same most probable class) and, for two
        classes, rank agreement on the positive class (share agreement says little on imbalanced
        data): ``spearman``, ``top1_overlap`` and ``top5_overlap`` (overlap of the two top 1 % / 5
        % sets), ``top1_rows``, and ``teacher_top1_in_student_top5`` (the share of the teacher's
        most confident 1 % that the student keeps in its top 5 %).
    """
    t, s = _proba_2d(teacher_proba), _proba_2d(student_proba)
    if t.shape != s.shape:
        raise DataError(
            f"teacher_proba has shape {t.shape} but student_proba {s.shape}; give both models' "
            "probabilities of the same rows."
        )
    result: dict[str, float] = {
        "prediction_agreement": float(np.mean(t.argmax(1) == s.argmax(1))) if len(t) else 0.0
    }
    if t.shape[1] == 2 and len(t) >= 2:
        a, b = t[:, 1], s[:, 1]
        k1, k5 = max(1, round(0.01 * len(a))), max(1, round(0.05 * len(a)))
        top_t1 = np.argsort(-a, kind="stable")[:k1]
        top_s5 = np.argsort(-b, kind="stable")[:k5]
        result.update(
            {
                "spearman": rank_agreement(a, b),
                "top1_overlap": top_k_agreement(a, b, k1),
                "top5_overlap": top_k_agreement(a, b, k5),
                "top1_rows": int(k1),
                "teacher_top1_in_student_top5": float(len(np.intersect1d(top_t1, top_s5)) / k1),
            }
        )
    return result


def edit_distance(a: Any, b: Any) -> int:
    """Levenshtein distance (insertions, deletions, substitutions, each costing 1) between two
    sequences (strings are compared character by character)."""
    a, b = list(a), list(b)
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _text_pairs(predictions: Any, references: Any) -> tuple[list[Any], list[Any]]:
    if isinstance(predictions, str) or isinstance(references, str):
        raise DataError(
            "predictions and references must be lists of strings (one per line), not a single "
            "string. Wrap one line in a list: [text]."
        )
    preds, refs = list(predictions), list(references)
    if len(preds) != len(refs):
        raise DataError(
            f"predictions and references must have the same number of lines, but predictions has "
            f"{len(preds)} and references has {len(refs)}."
        )
    if not refs:
        raise DataError("predictions and references are empty; a metric needs at least one line.")
    return preds, refs


def character_error_rate(predictions: Any, references: Any) -> float:
    """Character error rate: summed edit distances over summed reference lengths.

    ``CER = sum_i lev(pred_i, ref_i) / sum_i len(ref_i)`` (a corpus-level rate, so long lines
    weigh more than short ones; it can exceed 1 when predictions are longer than references).

    Args:
        predictions: the recognised strings (or sequences of class indices), one per line.
        references: the true strings, in the same order.

    Raises:
        DataError: different numbers of lines, no lines, or references with no characters at all.
    """
    preds, refs = _text_pairs(predictions, references)
    total = sum(len(r) for r in refs)
    if total == 0:
        raise DataError(
            "Every reference is empty, so the character error rate is undefined (0 reference "
            "characters). Check that the labels were read."
        )
    return float(sum(edit_distance(p, r) for p, r in zip(preds, refs, strict=True)) / total)


def sequence_accuracy(predictions: Any, references: Any) -> float:
    """Fraction of lines recognised exactly (whole-sequence accuracy).

    Raises:
        DataError: different numbers of lines, or no lines.
    """
    preds, refs = _text_pairs(predictions, references)
    return float(np.mean([list(p) == list(r) for p, r in zip(preds, refs, strict=True)]))
