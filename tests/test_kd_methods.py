"""Tests of the KD methods beyond Hinton in crosskd.losses (issue 15): DKD, DIST, logit
standardisation, pairwise ranking KD, CTC bag KD, mutual learning and the method switches.

Each loss is checked against an independent float64 transcription of its paper's formula written
here with numpy and plain loops (not with the library's helpers), plus its limiting cases, gradient
finiteness at extreme logits, dtype handling and the validation messages.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crosskd.exceptions import ConfigError, DataError
from crosskd.losses import (
    CTC_KD_METHODS,
    IGNORE_LABEL,
    KD_METHODS,
    _pearson,
    _ranking_pairs,
    blank_aware_kd_loss,
    check_ctc_kd_method,
    check_kd_method,
    ctc_bag_kd_loss,
    ctc_kd_loss,
    dist_loss,
    dkd_loss,
    frame_kd_loss,
    kd_loss,
    logit_kd_loss,
    mutual_kd_loss,
    ranking_kd_loss,
    standardize_logits,
)

PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def rand_logits(*shape: int, scale: float = 3.0, seed: int = 0) -> torch.Tensor:
    """float32 logits, exactly representable, so float64 references see the same values."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).mul(scale).float()


def np64(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().numpy()


def log_softmax64(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax64(z: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax64(z))


def logsumexp64(x: np.ndarray) -> float:
    top = x.max()
    return float(top + np.log(np.exp(x - top).sum()))


def kl64(log_q: np.ndarray, log_p: np.ndarray) -> float:
    """KL(q || p) from log-probabilities (finite), in float64."""
    return float(np.sum(np.exp(log_q) * (log_q - log_p)))


# --------------------------------------------------------------------------------------------------
# float64 references, transcribed from the papers


def ref_hinton_rows(z: torch.Tensor, v: torch.Tensor, t: float) -> np.ndarray:
    zs, vs = np64(z), np64(v)
    return np.array(
        [t * t * kl64(log_softmax64(vs[i] / t), log_softmax64(zs[i] / t)) for i in range(len(zs))]
    )


def ref_dkd_rows(
    z: torch.Tensor, v: torch.Tensor, target: list[int], t: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zhao et al. 2022, eqs. (1)-(4): per-row TCKD, NCKD (no T^2) and the teacher's q_t."""
    zs, vs = np64(z), np64(v)
    tckd, nckd, qts = [], [], []
    for i, k in enumerate(target):
        log_p, log_q = log_softmax64(zs[i] / t), log_softmax64(vs[i] / t)
        others = [c for c in range(len(log_p)) if c != k]
        # b = [p_t, 1 - p_t], with log(1 - p_t) = log(sum of the other probabilities).
        log_b_s = np.array([log_p[k], logsumexp64(log_p[others])])
        log_b_t = np.array([log_q[k], logsumexp64(log_q[others])])
        # p_hat_i = p_i / (1 - p_t) over the non-target classes.
        log_p_hat = log_p[others] - log_b_s[1]
        log_q_hat = log_q[others] - log_b_t[1]
        tckd.append(kl64(log_b_t, log_b_s))
        nckd.append(kl64(log_q_hat, log_p_hat))
        qts.append(math.exp(log_q[k]))
    return np.array(tckd), np.array(nckd), np.array(qts)


def ref_dkd(z, v, labels, t, alpha, beta) -> float:
    vs = np64(v)
    target = [int(np.argmax(vs[i])) if y == IGNORE_LABEL else int(y) for i, y in enumerate(labels)]
    tckd, nckd, _ = ref_dkd_rows(z, v, target, t)
    return float(np.mean(t * t * (alpha * tckd + beta * nckd)))


def ref_pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def ref_dist(z, v, t, beta=1.0, gamma=1.0) -> float:
    """Huang et al. 2022, eqs. (8)-(11)."""
    p, q = softmax64(np64(z) / t), softmax64(np64(v) / t)
    inter = np.mean([1.0 - ref_pearson(p[i], q[i]) for i in range(p.shape[0])])
    intra = np.mean([1.0 - ref_pearson(p[:, j], q[:, j]) for j in range(p.shape[1])])
    return float(t * t * (beta * inter + gamma * intra))


def ref_standardize(z: torch.Tensor, eps: float = 1e-7) -> np.ndarray:
    """Sun et al. 2024: (z - mean) / std with the population std (numpy's default ddof=0)."""
    x = np64(z)
    return (x - x.mean(axis=-1, keepdims=True)) / (x.std(axis=-1, keepdims=True) + eps)


def ref_ranking(z, v, t, weighting="probability", top_k=None, pointwise_weight=0.0) -> float:
    """Every pair, by loops: weighted mean of T^2 * KL(Bern(sig(du/T)) || Bern(sig(dm/T)))."""
    zs, vs = np64(z), np64(v)
    m, u = zs[:, 1] - zs[:, 0], vs[:, 1] - vs[:, 0]
    n = len(m)
    sig = lambda x: 0.5 * (1.0 + math.tanh(0.5 * x))  # noqa: E731  (no overflow)

    def log_bern(x):  # log [1 - sigmoid(x), sigmoid(x)]
        return np.array([-np.logaddexp(0.0, x), -np.logaddexp(0.0, -x)])

    if top_k is None:
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    else:
        top = np.argsort(-u, kind="stable")[:top_k]
        pairs = [(int(i), j) for i in top for j in range(n) if j != i]
    num = den = 0.0
    for i, j in pairs:
        w = max(sig(u[i]), sig(u[j])) if weighting == "probability" else 1.0
        num += w * t * t * kl64(log_bern((u[i] - u[j]) / t), log_bern((m[i] - m[j]) / t))
        den += w
    pairwise = num / den if pairs else 0.0
    return pairwise + pointwise_weight * float(np.mean(ref_hinton_rows(z, v, t)))


def ref_bag(z: torch.Tensor, v: torch.Tensor, t: float, blank: int = 0) -> float:
    zs, vs = np64(z), np64(v)
    out = []
    for line in range(zs.shape[0]):
        bags = []
        for x in (vs[line], zs[line]):
            mean = np.mean([softmax64(frame / t) for frame in x], axis=0)
            mean = np.delete(mean, blank)
            bags.append(np.log(mean / mean.sum()))
        out.append(t * t * kl64(bags[0], bags[1]))
    return float(np.mean(out))


def close(actual: torch.Tensor, expected: float, rtol: float = 2e-5, atol: float = 1e-6) -> None:
    a = float(actual.detach()) if torch.is_tensor(actual) else float(actual)
    assert math.isfinite(expected), expected
    assert abs(a - expected) <= atol + rtol * abs(expected), (a, expected)


# --------------------------------------------------------------------------------------------------
# Logit standardisation


def test_standardize_matches_population_z_score():
    z = rand_logits(5, 7, seed=1)
    out = standardize_logits(z)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.double().numpy(), ref_standardize(z), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.mean(-1).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(out.std(-1, correction=0).numpy(), 1.0, atol=1e-5)


def test_standardize_two_classes_is_the_sign_of_the_margin_with_zero_gradient():
    z = torch.tensor([[0.1, 5.0], [3.0, -40.0], [1e4, 1e4 + 1.0]], requires_grad=True)
    out = standardize_logits(z)
    expected = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    (out * torch.randn(3, 2)).sum().backward()
    assert z.grad.abs().max() < 1e-6


def test_standardize_constant_row_is_zero_with_finite_gradient():
    z = torch.full((2, 4), 3.0, requires_grad=True)
    out = standardize_logits(z)
    assert torch.equal(out, torch.zeros(2, 4))
    out.square().sum().backward()
    assert torch.isfinite(z.grad).all()


def test_standardize_bad_eps():
    with pytest.raises(ConfigError, match="eps must be finite and > 0, got 0"):
        standardize_logits(torch.zeros(1, 3), eps=0)
    with pytest.raises(ConfigError, match="eps must be a number > 0, got None"):
        check_kd_method("dist", {"eps": None})


@pytest.mark.parametrize("method", ["hinton", "dkd", "dist"])
@pytest.mark.parametrize("t", [0.5, 1.0, 4.0])
def test_standardized_methods_ignore_per_row_affine_maps(method, t):
    # Sun et al.: with standardisation the student only has to match the teacher up to a shift and
    # a positive scale per row.
    v = rand_logits(6, 5, seed=2)
    scale = torch.linspace(0.1, 7.0, 6).unsqueeze(-1)
    shift = torch.linspace(-30.0, 30.0, 6).unsqueeze(-1)
    z = v * scale + shift
    labels = torch.tensor([0, 1, 2, 3, 4, IGNORE_LABEL])
    plain = logit_kd_loss(z, v, t, method=method, labels=labels)
    standardized = logit_kd_loss(z, v, t, method=method, labels=labels, standardize=True)
    assert float(plain) > 1e-2
    assert abs(float(standardized)) < 1e-4 * max(1.0, t * t)


# --------------------------------------------------------------------------------------------------
# DKD


@pytest.mark.parametrize("t", [0.5, 1.0, 4.0, 20.0])
@pytest.mark.parametrize("weights", [(1.0, 8.0), (0.0, 1.0), (2.5, 0.0)])
def test_dkd_matches_float64_reference(t, weights):
    z, v = rand_logits(7, 6, seed=3), rand_logits(7, 6, seed=4)
    labels = torch.tensor([0, 5, IGNORE_LABEL, 2, 2, IGNORE_LABEL, 4])
    got = dkd_loss(z, v, labels, t, target_weight=weights[0], nontarget_weight=weights[1])
    assert got.dtype == torch.float32 and got.ndim == 0
    close(got, ref_dkd(z, v, labels.tolist(), t, *weights))


@pytest.mark.parametrize("t", [0.5, 1.0, 4.0])
def test_dkd_decomposition_gives_hinton_per_row(t):
    # Zhao et al.: KD = TCKD + (1 - q_t) NCKD. In float64 the reference terms satisfy it to
    # rounding, and dkd_loss with weights (1, 1 - q_t) on each row equals kd_loss on that row.
    z, v = rand_logits(6, 8, seed=5), rand_logits(6, 8, seed=6)
    labels = [3, 0, 7, 1, 1, 5]
    tckd, nckd, q_t = ref_dkd_rows(z, v, labels, t)
    hinton = ref_hinton_rows(z, v, t)
    np.testing.assert_allclose(t * t * (tckd + (1.0 - q_t) * nckd), hinton, rtol=1e-12, atol=1e-14)
    for i, y in enumerate(labels):
        row = slice(i, i + 1)
        got = dkd_loss(z[row], v[row], torch.tensor([y]), t, 1.0, float(1.0 - q_t[i]))
        close(got, float(hinton[i]), rtol=1e-5, atol=1e-6 * t * t)
        close(got, float(kd_loss(z[row], v[row], t)), rtol=1e-5, atol=1e-6 * t * t)


@PROPERTY_SETTINGS
@given(
    c=st.integers(2, 12),
    scale=st.floats(0.01, 30.0),
    t=st.floats(0.2, 20.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_dkd_decomposition(c, scale, t, seed):
    z, v = rand_logits(1, c, scale=scale, seed=seed), rand_logits(1, c, scale=scale, seed=seed + 1)
    y = seed % c
    _, _, q_t = ref_dkd_rows(z, v, [y], t)
    got = dkd_loss(z, v, torch.tensor([y]), t, 1.0, float(1.0 - q_t[0]))
    close(got, float(ref_hinton_rows(z, v, t)[0]), rtol=1e-4, atol=1e-5 * max(1.0, t * t))


def test_dkd_zero_for_equal_logits_and_positive_otherwise():
    v = rand_logits(5, 6, seed=7)
    labels = torch.tensor([0, 1, 2, 3, IGNORE_LABEL])
    for t in [0.5, 1.0, 4.0]:
        assert abs(float(dkd_loss(v.clone(), v, labels, t))) < 1e-6 * t * t
        assert float(dkd_loss(rand_logits(5, 6, seed=8), v, labels, t)) > 1e-3


def test_dkd_unlabelled_rows_use_teacher_argmax():
    z, v = rand_logits(4, 5, seed=9), rand_logits(4, 5, seed=10)
    unlabelled = torch.full((4,), IGNORE_LABEL)
    assert torch.equal(dkd_loss(z, v, unlabelled, 2.0), dkd_loss(z, v, v.argmax(-1), 2.0))


def test_dkd_on_two_classes_is_target_weight_times_hinton():
    z, v = rand_logits(6, 2, seed=11), rand_logits(6, 2, seed=12)
    labels = torch.tensor([0, 1, 1, 0, IGNORE_LABEL, 1])
    for t in [0.5, 2.0]:
        got = dkd_loss(z, v, labels, t, target_weight=3.0, nontarget_weight=100.0)
        close(got, 3.0 * float(kd_loss(z, v, t)), rtol=1e-5)


def test_dkd_label_errors():
    z = rand_logits(3, 4)
    with pytest.raises(DataError, match=r"Label index 4 is outside \[0, 4\)"):
        dkd_loss(z, z, torch.tensor([0, 4, 1]), 1.0)
    with pytest.raises(DataError, match="one label per row"):
        dkd_loss(z, z, torch.tensor([0, 1]), 1.0)
    with pytest.raises(DataError, match="integer class indices"):
        dkd_loss(z, z, torch.tensor([0.0, 1.0, 2.0]), 1.0)
    with pytest.raises(ConfigError, match="nontarget_weight must be finite and >= 0"):
        dkd_loss(z, z, torch.tensor([0, 1, 2]), 1.0, nontarget_weight=-1.0)


# --------------------------------------------------------------------------------------------------
# DIST


@pytest.mark.parametrize("t", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (2.0, 0.0), (0.0, 0.5)])
def test_dist_matches_float64_reference(t, weights):
    z, v = rand_logits(9, 7, seed=13), rand_logits(9, 7, seed=14)
    got = dist_loss(z, v, t, inter_weight=weights[0], intra_weight=weights[1])
    assert got.dtype == torch.float32 and got.ndim == 0
    close(got, ref_dist(z, v, t, *weights), rtol=1e-4, atol=1e-5 * t * t)


def test_dist_zero_for_equal_and_row_shifted_logits():
    v = rand_logits(8, 6, seed=15)
    shift = torch.linspace(-20.0, 20.0, 8).unsqueeze(-1)
    for t in [0.5, 1.0, 4.0]:
        assert abs(float(dist_loss(v.clone(), v, t))) < 1e-4 * t * t
        assert abs(float(dist_loss(v + shift, v, t))) < 1e-4 * t * t
        assert float(dist_loss(rand_logits(8, 6, seed=16), v, t)) > 1e-2


def test_pearson_is_invariant_to_positive_affine_maps_and_flips_sign_for_negative():
    a = rand_logits(3, 10, seed=17)
    for scale, shift in [(1.0, 0.0), (0.01, 5.0), (40.0, -3.0)]:
        torch.testing.assert_close(
            _pearson(a * scale + shift, a, 1e-12), torch.ones(3), atol=1e-5, rtol=0
        )
    torch.testing.assert_close(_pearson(-2.0 * a, a, 1e-12), -torch.ones(3), atol=1e-5, rtol=0)


def test_dist_two_class_inter_term_has_no_gradient_but_intra_term_does():
    v = rand_logits(8, 2, seed=18)
    z = rand_logits(8, 2, seed=19).requires_grad_(True)
    inter = dist_loss(z, v, 1.0, inter_weight=1.0, intra_weight=0.0)
    # Per row the correlation is +1 if both put the larger probability on the same class, else -1.
    agree = ((z[:, 1] > z[:, 0]) == (v[:, 1] > v[:, 0])).double()
    close(inter, float((1.0 - (2.0 * agree - 1.0)).mean()), atol=1e-5)
    assert 0.0 < float(agree.mean()) < 1.0
    (grad,) = torch.autograd.grad(inter, z)
    assert grad.abs().max() < 1e-5
    intra = dist_loss(z, v, 1.0, inter_weight=0.0, intra_weight=1.0)
    (grad,) = torch.autograd.grad(intra, z)
    assert grad.abs().max() > 1e-3


def test_dist_single_row_intra_term_is_constant_one():
    v, z = rand_logits(1, 5, seed=20), rand_logits(1, 5, seed=21)
    close(dist_loss(z, v, 1.0, inter_weight=0.0, intra_weight=1.0), 1.0, atol=1e-6)


@PROPERTY_SETTINGS
@given(
    n=st.integers(1, 12),
    c=st.integers(2, 12),
    scale=st.floats(1e-3, 1e4),
    t=st.floats(0.1, 30.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_dist_finite_and_in_range(n, c, scale, t, seed):
    z, v = rand_logits(n, c, scale=scale, seed=seed), rand_logits(n, c, scale=scale, seed=seed + 1)
    value = float(dist_loss(z, v, t))
    assert math.isfinite(value) and -1e-5 * t * t <= value <= 4.0 * t * t * (1 + 1e-5)


# --------------------------------------------------------------------------------------------------
# Ranking KD


@pytest.mark.parametrize("t", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("weighting", ["probability", "uniform"])
@pytest.mark.parametrize("top_k", [None, 3])
def test_ranking_matches_float64_reference(t, weighting, top_k):
    z, v = rand_logits(9, 2, seed=22), rand_logits(9, 2, seed=23)
    got = ranking_kd_loss(z, v, t, weighting=weighting, top_k=top_k, pointwise_weight=0.5)
    assert got.dtype == torch.float32 and got.ndim == 0
    close(got, ref_ranking(z, v, t, weighting, top_k, pointwise_weight=0.5), rtol=1e-5)


@pytest.mark.parametrize("scale", [30.0, 3000.0])
def test_ranking_matches_float64_reference_for_large_margins(scale):
    z, v = rand_logits(9, 2, scale=scale, seed=50), rand_logits(9, 2, scale=scale, seed=51)
    for t in [0.5, 20.0]:
        got = ranking_kd_loss(z, v, t, pointwise_weight=0.0)
        close(got, ref_ranking(z, v, t), rtol=1e-5)


def test_ranking_lower_when_the_student_orders_rows_as_the_teacher():
    v = rand_logits(12, 2, seed=24)
    u = v[:, 1] - v[:, 0]
    same_order = torch.stack([torch.zeros(12), torch.sign(u) * u.abs().sqrt() * 3], dim=-1)
    reversed_order = torch.stack([torch.zeros(12), -same_order[:, 1]], dim=-1)
    shuffled = same_order[torch.randperm(12, generator=torch.Generator().manual_seed(0))]
    for weighting in ["probability", "uniform"]:
        kw = dict(weighting=weighting, pointwise_weight=0.0)
        a = float(ranking_kd_loss(same_order, v, 1.0, **kw))
        b = float(ranking_kd_loss(shuffled, v, 1.0, **kw))
        c = float(ranking_kd_loss(reversed_order, v, 1.0, **kw))
        assert a < b < c, (a, b, c)


def test_ranking_zero_for_margins_equal_up_to_a_common_shift():
    v = rand_logits(10, 2, seed=25)
    z = v.clone()
    z[:, 1] += 7.0  # every margin shifted by 7: the order and the differences are the teacher's
    assert abs(float(ranking_kd_loss(z, v, 1.0, pointwise_weight=0.0))) < 1e-6
    # The pointwise Hinton term sees the shift.
    assert float(ranking_kd_loss(z, v, 1.0, pointwise_weight=1.0)) > 0.1


def test_ranking_single_row_has_no_pairs():
    z, v = rand_logits(1, 2, seed=26), rand_logits(1, 2, seed=27)
    assert float(ranking_kd_loss(z, v, 1.0, pointwise_weight=0.0)) == 0.0
    close(ranking_kd_loss(z, v, 2.0), float(kd_loss(z, v, 2.0)), rtol=1e-6)


def test_ranking_pair_cap_samples_max_pairs_deterministically():
    n = 16384
    u = rand_logits(n, seed=28)
    i, j = _ranking_pairs(u, 4096, None, None)
    assert i.shape == j.shape == (4096,)
    assert bool((i != j).all()) and int(i.min()) >= 0 and int(max(i.max(), j.max())) < n
    i2, j2 = _ranking_pairs(u, 4096, None, None)
    assert torch.equal(i, i2) and torch.equal(j, j2)  # deterministic without a generator
    i3, _ = _ranking_pairs(u, 4096, None, torch.Generator().manual_seed(1))
    assert not torch.equal(i, i3)
    # Every sampled pair of the top_k variant starts at one of the teacher's top rows.
    i, j = _ranking_pairs(u, 1000, 16, None)
    assert set(i.tolist()) <= set(u.topk(16).indices.tolist()) and bool((i != j).all())
    # Below the cap, every pair exactly once.
    i, j = _ranking_pairs(u[:6], 4096, None, None)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [
        (a, b) for a in range(6) for b in range(a + 1, 6)
    ]


def test_ranking_large_batch_runs_under_the_cap():
    n = 16384
    z, v = rand_logits(n, 2, seed=29).requires_grad_(True), rand_logits(n, 2, seed=30)
    loss = ranking_kd_loss(z, v, 1.0, max_pairs=20000)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("top_k", [None, 20])
def test_ranking_sampled_pairs_estimate_the_exact_loss(top_k):
    z, v = rand_logits(300, 2, seed=31), rand_logits(300, 2, seed=32)
    exact = float(ranking_kd_loss(z, v, 1.0, max_pairs=10**6, top_k=top_k, pointwise_weight=0.0))
    sampled = float(
        ranking_kd_loss(
            z,
            v,
            1.0,
            max_pairs=2000,
            top_k=top_k,
            pointwise_weight=0.0,
            generator=torch.Generator().manual_seed(3),
        )
    )
    assert abs(sampled - exact) < 0.1 * exact, (sampled, exact)


def test_ranking_errors():
    z3 = rand_logits(4, 3)
    with pytest.raises(DataError, match=r"needs two-class logits \(batch, 2\), got \(4, 3\)"):
        ranking_kd_loss(z3, z3)
    z = rand_logits(4, 2)
    with pytest.raises(ConfigError, match="weighting must be one of"):
        ranking_kd_loss(z, z, weighting="top")
    with pytest.raises(ConfigError, match="max_pairs must be >= 1"):
        ranking_kd_loss(z, z, max_pairs=0)
    with pytest.raises(ConfigError, match="top_k must be a whole number"):
        ranking_kd_loss(z, z, top_k=2.5)


# --------------------------------------------------------------------------------------------------
# CTC bag KD and mutual learning


@pytest.mark.parametrize("t", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("blank", [0, 3])
def test_ctc_bag_matches_float64_reference(t, blank):
    z, v = rand_logits(3, 9, 5, seed=33), rand_logits(3, 6, 5, seed=34)  # frames differ
    got = ctc_bag_kd_loss(z, v, t, blank=blank)
    assert got.dtype == torch.float32 and got.ndim == 0
    close(got, ref_bag(z, v, t, blank), rtol=1e-5, atol=1e-6 * t * t)


def test_ctc_bag_ignores_frame_order_and_is_zero_for_the_same_bag():
    v = rand_logits(2, 8, 6, seed=35)
    permuted = v[:, torch.randperm(8, generator=torch.Generator().manual_seed(1))]
    assert abs(float(ctc_bag_kd_loss(permuted, v, 2.0))) < 1e-6
    repeated = v.repeat_interleave(2, dim=1)  # 16 frames, each teacher frame twice
    assert abs(float(ctc_bag_kd_loss(repeated, v, 2.0))) < 1e-6
    assert float(ctc_bag_kd_loss(rand_logits(2, 8, 6, seed=36), v, 2.0)) > 1e-3


def test_ctc_bag_errors():
    z = rand_logits(2, 5, 4)
    with pytest.raises(DataError, match=r"\(batch, frames, num_classes\)"):
        ctc_bag_kd_loss(z[0], z[0], 1.0)
    with pytest.raises(DataError, match="different numbers of lines"):
        ctc_bag_kd_loss(z, z[:1], 1.0)
    with pytest.raises(DataError, match="num_classes=4"):
        ctc_bag_kd_loss(z[..., :3], z, 1.0)
    with pytest.raises(ConfigError, match=r"blank must be a class index in \[0, 4\), got 4"):
        ctc_bag_kd_loss(z, z, 1.0, blank=4)


@pytest.mark.parametrize("shape", [(5, 4), (3, 7, 4)])
def test_mutual_kd_loss_gives_both_directions_detached(shape):
    a = rand_logits(*shape, seed=37).requires_grad_(True)
    b = rand_logits(*shape, seed=38).requires_grad_(True)
    loss_a, loss_b = mutual_kd_loss(a, b, 2.0)
    torch.testing.assert_close(loss_a, kd_loss(a, b, 2.0))
    torch.testing.assert_close(loss_b, kd_loss(b, a, 2.0))
    (loss_a + loss_b).backward()
    ga = a.grad.clone()
    a.grad = None
    b.grad = None
    kd_loss(a, b.detach(), 2.0).backward()
    torch.testing.assert_close(ga, a.grad)  # a's gradient comes from loss_a only
    a2, b2 = a.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    la, _ = mutual_kd_loss(a2, b2, 2.0)
    la.backward()
    assert b2.grad is None


# --------------------------------------------------------------------------------------------------
# The switches and their validation


def test_kd_methods_are_names():
    assert KD_METHODS == ("hinton", "dkd", "dist", "ranking")
    assert CTC_KD_METHODS == ("frame", "blank_aware", "bag")


@pytest.mark.parametrize("shape", [(6, 5), (2, 4, 5)])
def test_switch_hinton_is_exactly_kd_loss(shape):
    z, v = rand_logits(*shape, seed=39), rand_logits(*shape, seed=40)
    for t in [0.5, 1.0, 4.0]:
        assert torch.equal(logit_kd_loss(z, v, t), kd_loss(z, v, t))
        assert torch.equal(logit_kd_loss(z, v, t, method="hinton", labels=None), kd_loss(z, v, t))


def test_switch_dispatches_with_params_and_standardize():
    z, v = rand_logits(6, 5, seed=41), rand_logits(6, 5, seed=42)
    y = torch.tensor([0, 1, 2, 3, 4, -1])
    assert torch.equal(
        logit_kd_loss(z, v, 2.0, method="dkd", labels=y, nontarget_weight=2.0),
        dkd_loss(z, v, y, 2.0, nontarget_weight=2.0),
    )
    assert torch.equal(
        logit_kd_loss(z, v, 2.0, method="dist", intra_weight=0.5),
        dist_loss(z, v, 2.0, intra_weight=0.5),
    )
    zs, vs = standardize_logits(z), standardize_logits(v)
    assert torch.equal(logit_kd_loss(z, v, 2.0, standardize=True), kd_loss(zs, vs, 2.0))
    assert torch.equal(
        logit_kd_loss(z, v, 2.0, method="dist", standardize=True), dist_loss(zs, vs, 2.0)
    )
    z2, v2 = rand_logits(40, 2, seed=43), rand_logits(40, 2, seed=44)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(
        logit_kd_loss(z2, v2, 1.0, method="ranking", max_pairs=100, generator=g1),
        ranking_kd_loss(z2, v2, 1.0, max_pairs=100, generator=g2),
    )


def test_unknown_method_lists_the_names():
    z = rand_logits(2, 3)
    message = r"Unknown KD method 'kld'. Choose one of \('hinton', 'dkd', 'dist', 'ranking'\)"
    with pytest.raises(ConfigError, match=message):
        logit_kd_loss(z, z, 1.0, method="kld")
    with pytest.raises(ConfigError, match=message):
        check_kd_method("kld")


def test_unknown_param_names_the_valid_ones():
    with pytest.raises(
        ConfigError,
        match="KD method 'dkd' has no parameter 'alpha'; its parameters are: target_weight, "
        "nontarget_weight",
    ):
        check_kd_method("dkd", {"alpha": 1.0})
    with pytest.raises(
        ConfigError, match="'hinton' has no parameter 'beta'; its parameters are: none"
    ):
        logit_kd_loss(rand_logits(2, 3), rand_logits(2, 3), 1.0, beta=2.0)
    with pytest.raises(ConfigError, match="intra_weight must be finite and >= 0"):
        check_kd_method("dist", {"intra_weight": float("nan")})


def test_check_kd_method_converts_and_checks_classes():
    assert check_kd_method("ranking", {"max_pairs": 1000.0, "top_k": None}, num_classes=2) == {
        "max_pairs": 1000,
        "top_k": None,
    }
    assert check_kd_method("dkd", {"nontarget_weight": 2}) == {"nontarget_weight": 2.0}
    with pytest.raises(ConfigError, match="needs num_classes=2, got 10"):
        check_kd_method("ranking", num_classes=10)


def test_dkd_without_labels_is_a_config_error():
    z = rand_logits(3, 4)
    with pytest.raises(ConfigError, match="'dkd' needs labels.*-1 for rows without a label"):
        logit_kd_loss(z, z, 1.0, method="dkd")


@pytest.mark.parametrize(
    ("method", "standardize", "pattern"),
    [
        ("dkd", False, "non-target term is 0 on two classes"),
        ("dist", False, "intra_weight=0 turns off the intra-class term"),
        ("hinton", True, "standardised two-class logits are always"),
        ("ranking", True, "no gradient"),
    ],
)
def test_degenerate_two_class_methods_warn(method, standardize, pattern):
    params = {"intra_weight": 0.0} if method == "dist" else {}
    with pytest.warns(UserWarning, match=pattern):
        check_kd_method(method, params, num_classes=2, standardize=standardize)
    z = rand_logits(4, 2)
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.warns(UserWarning, match="degenerate on 2 classes"):
        logit_kd_loss(z, z, 1.0, method=method, labels=labels, standardize=standardize, **params)


def test_sound_two_class_methods_do_not_warn():
    z = rand_logits(4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in ["hinton", "ranking", "dist"]:
            check_kd_method(method, num_classes=2)
            logit_kd_loss(z, z, 1.0, method=method)
        check_kd_method("dkd", num_classes=5, standardize=True)


def test_non_2d_logits_for_row_methods():
    z = rand_logits(2, 3, 4)
    with pytest.raises(DataError, match="dist compares rows of class logits"):
        logit_kd_loss(z, z, 1.0, method="dist")


def test_ctc_switch_dispatches_exactly():
    z, v = rand_logits(2, 6, 5, seed=45), rand_logits(2, 6, 5, seed=46)
    mask = torch.ones(2, 6)
    mask[1, 4:] = 0
    assert torch.equal(ctc_kd_loss(z, v, 2.0), frame_kd_loss(z, v, 2.0))
    assert torch.equal(ctc_kd_loss(z, v, 2.0, mask=mask), frame_kd_loss(z, v, 2.0, mask=mask))
    assert torch.equal(
        ctc_kd_loss(z, v, 2.0, method="blank_aware", blank_weight=0.0, mask=mask),
        blank_aware_kd_loss(z, v, 2.0, blank_weight=0.0, mask=mask),
    )
    assert torch.equal(ctc_kd_loss(z, v, 2.0, method="bag", blank=1), ctc_bag_kd_loss(z, v, 2.0, 1))
    with pytest.raises(ConfigError, match="'bag' averages whole lines and takes no frame mask"):
        ctc_kd_loss(z, v, 2.0, method="bag", mask=mask)
    with pytest.raises(ConfigError, match="CTC KD method 'bag' has no parameter 'resample'"):
        check_ctc_kd_method("bag", {"resample": "linear"})
    with pytest.raises(ConfigError, match=r"Choose one of \('frame', 'blank_aware', 'bag'\)"):
        ctc_kd_loss(z, v, 2.0, method="hinton")
    with pytest.raises(ConfigError, match="resample must be None, 'linear' or 'nearest'"):
        check_ctc_kd_method("frame", {"resample": "cubic"})


# --------------------------------------------------------------------------------------------------
# Extreme logits and half precision


def _call(method: str, z: torch.Tensor, v: torch.Tensor, t: float, standardize: bool = False):
    if method == "bag":
        return ctc_bag_kd_loss(z, v, t)
    if method == "mutual":
        a, b = mutual_kd_loss(z, v, t)
        return a + b
    labels = torch.arange(z.shape[0]) % z.shape[-1]
    labels[0] = IGNORE_LABEL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return logit_kd_loss(z, v, t, method=method, labels=labels, standardize=standardize)


def _shape(method: str) -> tuple[int, ...]:
    return {"ranking": (8, 2), "bag": (3, 5, 6), "mutual": (3, 5, 6)}.get(method, (8, 6))


ALL = [*KD_METHODS, "bag", "mutual"]


EXTREME_CASES = [(m, s) for m in ALL for s in (False, True) if m in KD_METHODS or not s]


@pytest.mark.parametrize(("method", "standardize"), EXTREME_CASES)
@pytest.mark.parametrize("t", [0.5, 1.0, 20.0])
def test_gradients_finite_at_extreme_logits(method, standardize, t):
    shape = _shape(method)
    g = torch.Generator().manual_seed(47)
    cases = [
        (
            (torch.rand(*shape, generator=g) * 2 - 1) * 1e4,
            (torch.rand(*shape, generator=g) * 2 - 1) * 1e4,
        ),
        (torch.full(shape, 1e4), torch.full(shape, -1e4)),
    ]
    one_hot_s, one_hot_t = torch.zeros(shape), torch.zeros(shape)
    one_hot_s[..., 0], one_hot_t[..., 1] = 1e4, 1e4
    cases.append((one_hot_s, one_hot_t))
    for s, v in cases:
        z = s.clone().requires_grad_(True)
        loss = _call(method, z, v, t, standardize)
        loss.backward()
        assert torch.isfinite(loss), (method, t, float(loss))
        assert torch.isfinite(z.grad).all(), method


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_float32_losses(method, dtype):
    shape = _shape(method)
    z = rand_logits(*shape, seed=48).to(dtype).requires_grad_(True)
    v = rand_logits(*shape, seed=49).to(dtype)
    loss = _call(method, z, v, 2.0)
    assert loss.dtype == torch.float32
    expected = _call(method, z.detach().float(), v.float(), 2.0)
    close(loss, float(expected), rtol=1e-6, atol=1e-7)
    loss.backward()
    assert z.grad.dtype == dtype and torch.isfinite(z.grad.float()).all()
