"""crosskd.metrics: hand-computed values, the handbook's Card Precision@k, and error messages."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from crosskd.exceptions import ConfigError, DataError
from crosskd.metrics import (
    accuracy,
    average_precision,
    card_precision_at_k,
    card_precision_at_k_per_day,
    classification_metrics,
    log_loss,
    rank_agreement,
    roc_auc,
    top_k_agreement,
)

Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.4, 0.35, 0.8])


def test_roc_auc_hand_computed():
    # Pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > both) -> 3 of 4.
    assert roc_auc(Y, S) == pytest.approx(0.75)
    assert roc_auc(Y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)  # ties count 1/2
    assert roc_auc(Y.astype(bool), S) == pytest.approx(0.75)


def test_roc_auc_is_rank_based():
    assert roc_auc(Y, np.log(S)) == pytest.approx(roc_auc(Y, S))


def test_average_precision_hand_computed():
    # Ranked: 0.8 (pos) P=1 R=.5; 0.4 (neg); 0.35 (pos) P=2/3 R=1 -> .5 * 1 + .5 * 2/3.
    assert average_precision(Y, S) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision(Y, -S) < average_precision(Y, S)


@pytest.mark.parametrize("metric", [roc_auc, average_precision])
def test_binary_metric_errors(metric):
    with pytest.raises(DataError, match="both classes.*all 3 labels are 0"):
        metric([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="same number of rows.*y_true has 4 and score has 3"):
        metric(Y, S[:3])
    with pytest.raises(DataError, match="NaN or infinite.*first at row 2"):
        metric(Y, [0.1, 0.2, np.nan, 0.3])
    with pytest.raises(DataError, match="binary labels 0 and 1.*2"):
        metric([0, 1, 2, 1], S)
    with pytest.raises(DataError, match="one-dimensional"):
        metric(Y, np.ones((4, 2)))


def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
    assert accuracy(["a", "b"], ["a", "b"]) == 1.0
    with pytest.raises(DataError, match="same number of rows"):
        accuracy([0, 1], [0])


def test_log_loss_hand_computed():
    proba = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])
    expected = -(math.log(0.8) + math.log(0.6) + math.log(0.1)) / 3
    assert log_loss([0, 1, 0], proba) == pytest.approx(expected)
    # A confident mistake is clipped, not infinite.
    assert np.isfinite(log_loss([0], [[0.0, 1.0]]))
    three = np.array([[0.2, 0.3, 0.5]])
    assert log_loss([2], three) == pytest.approx(-math.log(0.5))


def test_log_loss_errors():
    with pytest.raises(DataError, match=r"class indices 0\.\.1.*ranges from 0 to 2"):
        log_loss([0, 2], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(DataError, match=r"shape \(n_samples, n_classes\)"):
        log_loss([0, 1], [0.5, 0.5])
    with pytest.raises(DataError, match="same number of rows"):
        log_loss([0, 1, 1], [[0.5, 0.5], [0.5, 0.5]])


def test_classification_metrics_binary():
    proba = np.c_[1 - S, S]
    result = classification_metrics(Y, proba)
    assert set(result) == {"roc_auc", "average_precision", "accuracy", "log_loss"}
    assert result["roc_auc"] == pytest.approx(0.75)
    assert result["accuracy"] == pytest.approx(0.75)  # argmax: 0, 0, 0, 1
    assert result["log_loss"] == pytest.approx(log_loss(Y, proba))
    assert all(isinstance(v, float) for v in result.values())


def test_classification_metrics_one_class_omits_ranking_metrics():
    result = classification_metrics([0, 0, 0], [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    assert set(result) == {"accuracy", "log_loss"}
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_classification_metrics_multiclass():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    result = classification_metrics([0, 2, 0], proba)
    assert set(result) == {"accuracy", "log_loss"}
    assert result["accuracy"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- card precision


def _two_days() -> pd.DataFrame:
    # Day 0: A max score .9, compromised; B .8 clean; C .3 compromised (missed with k=2).
    # Day 1: A .95 compromised (detected on day 0: removed); C .7 compromised; D .6; B .2.
    rows = [
        (0, "A", 0.9, 0),
        (0, "A", 0.1, 1),
        (0, "B", 0.8, 0),
        (0, "C", 0.3, 1),
        (1, "A", 0.95, 1),
        (1, "B", 0.2, 0),
        (1, "C", 0.7, 1),
        (1, "D", 0.6, 0),
    ]
    return pd.DataFrame(rows, columns=["TX_TIME_DAYS", "CUSTOMER_ID", "score", "TX_FRAUD"])


def test_card_precision_handbook_definition():
    frame = _two_days()
    # Day 0: top 2 = A (max label 1), B -> 1/2. Day 1 without A: C, D -> 1/2.
    assert card_precision_at_k(frame, k=2) == pytest.approx(0.5)
    per_day = card_precision_at_k_per_day(frame, k=2)
    assert per_day["card_precision"].tolist() == [0.5, 0.5]
    assert per_day["n_detected"].tolist() == [1, 1]
    assert per_day["n_compromised"].tolist() == [2, 1]  # C missed on day 0 stays on day 1
    assert per_day["n_cards"].tolist() == [3, 3]
    # Without removal, A is counted again on day 1: A, C -> 1.
    assert card_precision_at_k(frame, k=2, remove_detected=False) == pytest.approx(0.75)


def test_card_precision_divides_by_k_and_renamed_columns():
    frame = _two_days().rename(columns={"score": "p", "CUSTOMER_ID": "card"})
    # k=10 > number of cards: day 0 finds A and C -> 2/10; day 1 (A, C removed) -> 0/10.
    value = card_precision_at_k(frame, k=10, score="p", customer="card")
    assert value == pytest.approx((0.2 + 0.0) / 2)


def test_card_precision_ties_broken_by_customer_id():
    frame = pd.DataFrame(
        {"TX_TIME_DAYS": 0, "CUSTOMER_ID": [2, 1], "score": [0.5, 0.5], "TX_FRAUD": [0, 1]}
    )
    assert card_precision_at_k(frame, k=1) == 1.0


def test_card_precision_errors():
    frame = _two_days()
    with pytest.raises(DataError, match=r"columns \['predictions'\]"):
        card_precision_at_k(frame, score="predictions")
    with pytest.raises(ConfigError, match="positive integer"):
        card_precision_at_k(frame, k=0)
    with pytest.raises(DataError, match="NaN or infinite"):
        card_precision_at_k(frame.assign(score=np.nan))
    with pytest.raises(DataError, match="DataFrame"):
        card_precision_at_k(frame.to_numpy())
    with pytest.raises(DataError, match="empty"):
        card_precision_at_k(frame.iloc[:0])


# ----------------------------------------------------------------------------- fidelity


def test_rank_agreement_hand_computed():
    # Ranks 1 2 3 4 vs 1 2 4 3: 1 - 6 * 2 / (4 * 15) = 0.8.
    assert rank_agreement([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    assert rank_agreement([1, 2, 3], [0.1, 0.5, 0.9]) == pytest.approx(1.0)
    assert rank_agreement([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert rank_agreement([1, 1, 1], [1, 2, 3]) == 0.0


def test_rank_agreement_with_ties_matches_pearson_of_average_ranks():
    a = np.array([1.0, 2.0, 2.0, 3.0, 5.0])
    b = np.array([2.0, 1.0, 3.0, 3.0, 4.0])
    ra = pd.Series(a).rank().to_numpy()
    rb = pd.Series(b).rank().to_numpy()
    assert rank_agreement(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])


def test_top_k_agreement():
    a = [0.9, 0.8, 0.1, 0.2]
    b = [0.9, 0.1, 0.8, 0.2]
    assert top_k_agreement(a, b, 2) == pytest.approx(0.5)
    assert top_k_agreement(a, a, 3) == 1.0
    with pytest.raises(ConfigError, match="between 1 and the number of rows"):
        top_k_agreement(a, b, 5)
    with pytest.raises(DataError, match="same number of rows"):
        top_k_agreement(a, b[:3], 1)
