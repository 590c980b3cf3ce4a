"""Property-based tests of the teacher adapters (hypothesis, derandomized): logits of extreme scale,
random temperatures and class counts give finite outputs and soft targets that are distributions.

The loss properties (KD loss finite, >= 0, zero for identical inputs) live in tests/test_losses.py.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from crosskd.teachers import EnsembleTeacher, ModuleTeacher, PrecomputedTeacher
from crosskd.teachers.base import binary_logits_from_margin, fingerprint, logits_from_proba

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
temperatures = st.floats(0.05, 100.0)


@st.composite
def logit_tables(draw, max_scale_exp: float = 30.0):
    """(rows (n, 3) float64, logits (n, C) float64): C in 2..64, n in 1..20, scale 10**U(-3, s)."""
    c = draw(st.integers(2, 64))
    n = draw(st.integers(1, 20))
    scale = 10.0 ** draw(st.floats(-3.0, max_scale_exp))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, 3))
    logits = rng.normal(size=(n, c)) * scale
    if draw(st.booleans()):  # a shared offset per row must not matter
        logits += rng.normal(size=(n, 1)) * scale
    return rows, logits


def _check_distribution(probs: torch.Tensor, n: int, c: int) -> None:
    assert probs.shape == (n, c)
    assert torch.isfinite(probs).all()
    assert (probs >= 0).all() and (probs <= 1).all()
    torch.testing.assert_close(
        probs.double().sum(-1), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-5
    )


@PROPERTY_SETTINGS
@given(logit_tables(), temperatures)
def test_precomputed_outputs_are_finite_and_soft_targets_are_distributions(table, t):
    rows, logits = table
    teacher = PrecomputedTeacher(logits, rows=rows)
    out = teacher.logits(rows)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.from_numpy(logits).float())
    _check_distribution(teacher.soft_targets(rows, t), *logits.shape)
    # Batched scoring is the same rows, in the same order.
    assert torch.equal(teacher.logits(rows, batch_size=3), out)
    assert teacher.info.num_classes == logits.shape[1]


@PROPERTY_SETTINGS
@given(
    logit_tables(),
    st.lists(st.floats(0.0, 10.0), min_size=1, max_size=3).filter(lambda w: sum(w) > 0),
    temperatures,
)
def test_ensemble_outputs_are_finite_mean_log_probabilities(table, weights, t):
    rows, logits = table
    rng = np.random.default_rng(len(weights))
    members = [
        PrecomputedTeacher(logits + rng.normal(size=logits.shape) * i, rows=rows)
        for i in range(len(weights))
    ]
    ensemble = EnsembleTeacher(members, weights=weights)
    out = ensemble.logits(rows)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # A weighted mean of log-probabilities: every logit is <= 0 (softmax renormalises it).
    assert (out <= 0).all()
    _check_distribution(ensemble.soft_targets(rows, t), *logits.shape)


@PROPERTY_SETTINGS
@given(logit_tables(), temperatures)
def test_ensemble_of_identical_members_is_the_member(table, t):
    rows, logits = table
    member = PrecomputedTeacher(logits, rows=rows)
    ensemble = EnsembleTeacher([member, member, member], weights=[1.0, 2.0, 3.0])
    torch.testing.assert_close(
        ensemble.soft_targets(rows, t), member.soft_targets(rows, t), rtol=0, atol=1e-5
    )


@settings(PROPERTY_SETTINGS, max_examples=20)
@given(
    st.integers(2, 40),
    st.integers(1, 20),
    st.floats(-3.0, 6.0),
    st.integers(0, 2**31 - 1),
    temperatures,
    st.sampled_from([None, 1, 7]),
)
def test_module_teacher_outputs_are_finite_for_extreme_weights(c, n, scale_exp, seed, t, batch):
    g = torch.Generator().manual_seed(seed)
    net = nn.Linear(5, c)
    with torch.no_grad():
        net.weight.copy_(torch.randn(c, 5, generator=g) * 10.0**scale_exp)
        net.bias.copy_(torch.randn(c, generator=g) * 10.0**scale_exp)
    X = torch.randn(n, 5, generator=g)
    teacher = ModuleTeacher(net, device="cpu", batch_size=batch)
    out = teacher.logits(X)
    assert out.shape == (n, c) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert teacher.info.num_classes == c
    _check_distribution(teacher.soft_targets(X, t), n, c)
    # Row-by-row scoring agrees up to float32 GEMM rounding (kernels differ by batch size),
    # measured against the size of the terms summed (the output itself may cancel).
    terms = (
        X.abs().double() @ net.weight.detach().abs().double().T + net.bias.detach().abs().double()
    )
    diff = (teacher.logits(X, batch_size=1).double() - out.double()).abs()
    assert (diff <= 1e-5 * terms + 1e-30).all()


@PROPERTY_SETTINGS
@given(
    st.lists(st.floats(-1e30, 1e30), min_size=1, max_size=30), st.floats(0.01, 100.0), temperatures
)
def test_binary_margins_of_any_size_give_distributions(margins, scale, t):
    logits = binary_logits_from_margin(np.asarray(margins), scale)
    assert torch.isfinite(logits).all()
    probs = torch.softmax(logits / t, dim=-1)
    _check_distribution(probs, len(margins), 2)


@PROPERTY_SETTINGS
@given(st.integers(2, 30), st.integers(1, 20), st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_probabilities_with_exact_zeros_and_ones_give_finite_logits(c, n, seed, zero_share):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(c), size=n)
    proba[rng.random((n, c)) < zero_share] = 0.0
    proba[proba.sum(1) == 0, 0] = 1.0
    proba /= proba.sum(1, keepdims=True)
    logits = logits_from_proba(proba)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(
        torch.softmax(logits.double(), -1), torch.from_numpy(proba), rtol=0, atol=1e-6
    )


@PROPERTY_SETTINGS
@given(logit_tables(max_scale_exp=3.0))
def test_precomputed_refuses_any_permutation_of_its_rows(table):
    rows, logits = table
    teacher = PrecomputedTeacher(logits, rows=rows)
    if len(rows) > 1 and fingerprint(rows[::-1]) != fingerprint(rows):
        try:
            teacher.logits(rows[::-1].copy())
        except ValueError as err:
            assert "not the rows" in str(err)
        else:
            raise AssertionError("reversed rows were accepted")
