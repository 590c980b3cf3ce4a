"""Numerical tests of crosskd.losses: the identities of DESIGN.md ("The loss"), checked against
float64 references, plus stability, dtype handling, input validation and property-based tests.

Notation as in the module: ``q = softmax(v / T)`` (teacher, logits v), ``p = softmax(z / T)``
(student, logits z), C classes, N rows. ``kd_loss`` computes in float32, so tolerances against the
float64 references are float32-sized.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crosskd.exceptions import ConfigError, CrossKDError, DataError
from crosskd.losses import (
    IGNORE_LABEL,
    distillation_loss,
    hard_loss,
    kd_loss,
    soft_cross_entropy,
    soften,
)

TEMPERATURES = [0.5, 1.0, 2.0, 4.0, 10.0]
EPS32 = torch.finfo(torch.float32).eps


# --------------------------------------------------------------------------------------------------
# float64 references


def ref_kd(z: torch.Tensor, v: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 * KL(q || p), mean over all rows, in float64."""
    log_p = F.log_softmax(z.double() / t, dim=-1)
    log_q = F.log_softmax(v.double() / t, dim=-1)
    return t * t * (log_q.exp() * (log_q - log_p)).sum(-1).mean()


def ref_entropy(v: torch.Tensor, t: float) -> torch.Tensor:
    """Mean over rows of the entropy of softmax(v / T), in float64."""
    log_q = F.log_softmax(v.double() / t, dim=-1)
    return -(log_q.exp() * log_q).sum(-1).mean()


def student_grad(z: torch.Tensor, v: torch.Tensor, t: float) -> torch.Tensor:
    """Gradient of crosskd's kd_loss w.r.t. the (float32) student logits, as float64."""
    s = z.float().clone().requires_grad_(True)
    kd_loss(s, v.float(), t).backward()
    return s.grad.double()


def rand_logits(*shape: int, scale: float = 3.0, seed: int = 0) -> torch.Tensor:
    """float32 logits, exactly representable, so float64 references see the same values."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).mul(scale).float()


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Elementwise |a - e| <= rtol * max|e| (relative to the tensor's scale)."""
    actual, expected = actual.double(), expected.double()
    scale = expected.abs().max().clamp_min(1e-300)
    err = (actual - expected).abs().max()
    assert err <= rtol * scale, f"max abs error {err:.3e} > {rtol:.1e} * {scale:.3e}"


# --------------------------------------------------------------------------------------------------
# kd_loss is zero for the same distribution


def test_kd_loss_zero_for_equal_logits():
    z = rand_logits(8, 10)
    for t in TEMPERATURES + [0.05, 100.0]:
        assert abs(kd_loss(z, z.clone(), t).item()) <= 1e-7


def test_kd_loss_zero_for_logits_shifted_by_row_constant():
    z = rand_logits(8, 10)
    shift = torch.linspace(-50.0, 50.0, 8).unsqueeze(-1)  # a different constant per row
    for t in TEMPERATURES:
        # Softmax invariance: z and z + c_row give the same distribution.
        value = kd_loss(z + shift, z, t).item()
        assert abs(value) <= 1e-7 * max(1.0, t * t), (t, value)


def test_kd_loss_matches_float64_reference():
    z, v = rand_logits(6, 7, seed=1), rand_logits(6, 7, seed=2)
    for t in TEMPERATURES:
        got = kd_loss(z, v, t)
        assert got.dtype == torch.float32
        assert got.ndim == 0
        torch.testing.assert_close(got.double(), ref_kd(z, v, t), rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------------
# Gradient: T * (p - q) per logit (with the T^2 factor), divided by N by the mean


@pytest.mark.parametrize("t", TEMPERATURES)
def test_kd_loss_gradient_is_t_times_p_minus_q(t):
    z, v = rand_logits(1, 10, seed=3), rand_logits(1, 10, seed=4)
    grad = student_grad(z, v, t)
    p = torch.softmax(z.double() / t, dim=-1)
    q = torch.softmax(v.double() / t, dim=-1)
    assert_close_rel(grad, t * (p - q), rtol=1e-5)


@pytest.mark.parametrize("t", TEMPERATURES)
def test_kd_loss_gradient_matches_float64_autograd(t):
    z, v = rand_logits(4, 6, seed=5), rand_logits(4, 6, seed=6)
    z64 = z.double().requires_grad_(True)
    ref_kd(z64, v, t).backward()
    assert_close_rel(student_grad(z, v, t), z64.grad, rtol=1e-5)


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_kd_loss_mean_reduction_divides_gradient_by_batch_size(t):
    n = 5
    z, v = rand_logits(n, 8, seed=7), rand_logits(n, 8, seed=8)
    grad = student_grad(z, v, t)
    p = torch.softmax(z.double() / t, dim=-1)
    q = torch.softmax(v.double() / t, dim=-1)
    assert_close_rel(grad, t * (p - q) / n, rtol=1e-5)
    # Each row of the batch gets exactly its single-row gradient / N.
    for i in range(n):
        assert_close_rel(grad[i], student_grad(z[i : i + 1], v[i : i + 1], t)[0] / n, rtol=1e-5)


def test_kd_loss_gradient_tends_to_logit_matching_for_large_t():
    # dL/dz_i -> (z_i - v_i) / C for zero-mean logits as T grows (Hinton et al.; DESIGN.md writes
    # N for the number of classes). The approximation error is O(|z| / T); the float32 rounding of
    # p - q adds roughly eps32 * T / |z - v|, so logits of moderate size (std 5) keep the float32
    # gradient on the asymptote up to T = 1e4 (with std-1 logits, T = 1e4 is already rounding
    # dominated: relative error ~1e-3).
    c = 10
    z, v = rand_logits(1, c, scale=5.0, seed=9), rand_logits(1, c, scale=5.0, seed=10)
    z = (z.double() - z.double().mean(-1, keepdim=True)).float()
    v = (v.double() - v.double().mean(-1, keepdim=True)).float()
    target = (z.double() - v.double()) / c
    errors = []
    for t in [1e2, 1e3, 1e4]:
        grad = student_grad(z, v, t)
        errors.append(((grad - target).norm() / target.norm()).item())
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[0] < 0.1 and errors[1] < 1e-2 and errors[2] < 2e-3, errors
    # The exact float64 gradient converges like 1/T.
    for t in [1e3, 1e4, 1e5]:
        p = torch.softmax(z.double() / t, dim=-1)
        q = torch.softmax(v.double() / t, dim=-1)
        rel = ((t * (p - q) - target).norm() / target.norm()).item()
        assert rel < 50.0 / t, (t, rel)


# --------------------------------------------------------------------------------------------------
# soft_cross_entropy = kd_loss / T^2 + H(q)


@pytest.mark.parametrize("t", TEMPERATURES + [50.0])
def test_soft_cross_entropy_minus_kd_is_teacher_entropy(t):
    z, v = rand_logits(6, 9, seed=11), rand_logits(6, 9, seed=12)
    diff = soft_cross_entropy(z, v, t).double() - kd_loss(z, v, t).double() / (t * t)
    torch.testing.assert_close(diff, ref_entropy(v, t), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_soft_cross_entropy_gradient_is_kd_gradient_over_t_squared(t):
    z, v = rand_logits(3, 5, seed=13), rand_logits(3, 5, seed=14)
    s = z.clone().requires_grad_(True)
    soft_cross_entropy(s, v, t).backward()
    assert_close_rel(s.grad.double(), student_grad(z, v, t) / (t * t), rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Stability: logits of magnitude 1e4


def _large_logit_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    c = 6
    gen = torch.Generator().manual_seed(15)
    mixed_s = (torch.rand(4, c, generator=gen) * 2 - 1) * 1e4
    mixed_t = (torch.rand(4, c, generator=gen) * 2 - 1) * 1e4
    dominant_s = torch.zeros(4, c)
    dominant_s[:, 0] = 1e4
    dominant_t = torch.zeros(4, c)
    dominant_t[:, 1] = 1e4  # the teacher is sure of a class the student gives ~0 probability
    negative = -1e4 + torch.randn(4, c, generator=gen)
    return {
        "mixed_signs": (mixed_s, mixed_t),
        "one_class_dominates": (dominant_s, dominant_t),
        "dominant_same_class": (dominant_s, dominant_s + torch.randn(4, c, generator=gen)),
        "all_large_positive": (1e4 + torch.randn(4, c, generator=gen), mixed_t.abs()),
        "all_large_negative": (negative, -mixed_t.abs()),
    }


@pytest.mark.parametrize("case", sorted(_large_logit_cases()))
@pytest.mark.parametrize("t", [0.05, 1.0, 100.0])
def test_large_logits_give_finite_losses_and_gradients(case, t):
    z, v = _large_logit_cases()[case]
    target = torch.tensor([0, 1, IGNORE_LABEL, 5])
    losses = {
        "kd_loss": lambda s: kd_loss(s, v, t),
        "soft_cross_entropy": lambda s: soft_cross_entropy(s, v, t),
        "hard_loss": lambda s: hard_loss(s, target),
        "hard_loss_focal": lambda s: hard_loss(s, target, focal_gamma=2.0),
        "distillation_loss": lambda s: distillation_loss(s, v, target, t, 0.7)["loss"],
    }
    for name, fn in losses.items():
        s = z.clone().requires_grad_(True)
        value = fn(s)
        assert torch.isfinite(value), (name, value)
        value.backward()
        assert torch.isfinite(s.grad).all(), (name, s.grad)
    # The soft term is also accurate, not only finite (z / T is exact up to float32 rounding).
    torch.testing.assert_close(kd_loss(z, v, t).double(), ref_kd(z, v, t), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Half-precision inputs are computed in float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", [1.0, 3e3])
def test_half_precision_inputs_give_float32_losses(dtype, scale):
    z = rand_logits(8, 5, scale=scale, seed=16).to(dtype)
    v = rand_logits(8, 5, scale=scale, seed=17).to(dtype)
    target = torch.tensor([0, 1, 2, 3, 4, IGNORE_LABEL, 0, 1])
    zf, vf = z.float(), v.float()  # the same values, up-cast exactly
    for t in [0.5, 4.0]:
        pairs = [
            (kd_loss(z, v, t), kd_loss(zf, vf, t)),
            (soft_cross_entropy(z, v, t), soft_cross_entropy(zf, vf, t)),
            (hard_loss(z, target), hard_loss(zf, target)),
            (
                distillation_loss(z, v, target, t, 0.5)["loss"],
                distillation_loss(zf, vf, target, t, 0.5)["loss"],
            ),
        ]
        for got, expected in pairs:
            assert got.dtype == torch.float32
            assert torch.isfinite(got)
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(
            kd_loss(z, v, t).double(), ref_kd(zf, vf, t), rtol=1e-4, atol=1e-5
        )
        assert soften(z, t).dtype == torch.float32


def test_half_precision_gradient_flows_back_in_input_dtype():
    z = rand_logits(4, 5, seed=18).half().requires_grad_(True)
    kd_loss(z, rand_logits(4, 5, seed=19).half(), 2.0).backward()
    assert z.grad.dtype == torch.float16
    assert torch.isfinite(z.grad).all()


# --------------------------------------------------------------------------------------------------
# hard_loss


def test_hard_loss_equals_cross_entropy():
    z = rand_logits(10, 4, seed=20)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3, 3])
    torch.testing.assert_close(hard_loss(z, y), F.cross_entropy(z, y))


def test_hard_loss_equals_weighted_cross_entropy():
    z = rand_logits(10, 4, seed=21)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3, 3])
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    torch.testing.assert_close(hard_loss(z, y, class_weight=w), F.cross_entropy(z, y, weight=w))


def test_hard_loss_gradient_equals_cross_entropy_gradient():
    z = rand_logits(6, 3, seed=22)
    y = torch.tensor([0, 1, IGNORE_LABEL, 2, 2, IGNORE_LABEL])
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    hard_loss(a, y).backward()
    F.cross_entropy(b, y, ignore_index=IGNORE_LABEL).backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert (a.grad[y == IGNORE_LABEL] == 0).all()


@pytest.mark.parametrize("weighted", [False, True])
def test_hard_loss_excludes_unlabelled_rows(weighted):
    z = rand_logits(8, 4, seed=23)
    y = torch.tensor([0, IGNORE_LABEL, 2, 3, IGNORE_LABEL, 1, IGNORE_LABEL, 0])
    w = torch.tensor([0.5, 2.0, 1.0, 3.0]) if weighted else None
    keep = y != IGNORE_LABEL
    expected = F.cross_entropy(z[keep], y[keep], weight=w)
    torch.testing.assert_close(hard_loss(z, y, class_weight=w), expected)
    torch.testing.assert_close(
        hard_loss(z, y, class_weight=w), F.cross_entropy(z, y, weight=w, ignore_index=IGNORE_LABEL)
    )
    # Changing an unlabelled row's logits does not change the loss.
    z2 = z.clone()
    z2[~keep] = 1e4
    torch.testing.assert_close(hard_loss(z2, y, class_weight=w), expected)


def test_hard_loss_all_unlabelled_is_zero():
    z = rand_logits(5, 3, seed=24)
    y = torch.full((5,), IGNORE_LABEL)
    for w in [None, torch.tensor([1.0, 2.0, 3.0])]:
        out = hard_loss(z, y, class_weight=w)
        assert out.dtype == torch.float32
        assert out.item() == 0.0
        assert hard_loss(z, y, focal_gamma=2.0).item() == 0.0


def test_all_unlabelled_batch_loss_is_differentiable():
    # With alpha=0 the hard term is the whole loss; a batch of transfer-set rows only (all -1) must
    # still allow backward() (zero gradient), not fail with "does not require grad".
    z = rand_logits(4, 3, seed=38).requires_grad_(True)
    y = torch.full((4,), IGNORE_LABEL)
    out = distillation_loss(z, None, y, 2.0, 0.0)
    assert out["loss"].item() == 0.0 and out["ce"].item() == 0.0
    out["loss"].backward()
    assert (z.grad == 0).all()
    z.grad = None
    hard_loss(z, y, class_weight=torch.ones(3), focal_gamma=2.0).backward()
    assert (z.grad == 0).all()


def test_hard_loss_focal_gamma_zero_is_cross_entropy():
    z = rand_logits(7, 5, seed=25)
    y = torch.tensor([0, 1, 2, 3, 4, 0, IGNORE_LABEL])
    torch.testing.assert_close(
        hard_loss(z, y, focal_gamma=0.0), F.cross_entropy(z, y, ignore_index=IGNORE_LABEL)
    )


def test_hard_loss_focal_matches_formula_and_down_weights_easy_examples():
    # Row 0 is easy (the label's logit dominates), row 1 is hard (the label is unlikely).
    z = torch.tensor([[6.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    gamma = 2.0
    focal = [hard_loss(z[i : i + 1], torch.tensor([0]), focal_gamma=gamma).item() for i in range(2)]
    ce = [F.cross_entropy(z[i : i + 1], torch.tensor([0])).item() for i in range(2)]
    pt = torch.softmax(z.double(), dim=-1)[:, 0]
    for i in range(2):
        expected = -((1 - pt[i]) ** gamma) * math.log(pt[i])
        # rel 1e-4: float32 1 - p_t cancels for the easy row (relative error ~ eps32 / (1 - p_t)).
        assert focal[i] == pytest.approx(expected.item(), rel=1e-4)
        assert focal[i] < ce[i]
    # The easy example loses a much larger share of its cross-entropy than the hard one.
    assert focal[0] / ce[0] < 0.01 < 0.5 < focal[1] / ce[1]
    # Batch focal loss is the mean of the per-row ones; larger gamma down-weights more.
    y = torch.tensor([0, 0])
    assert hard_loss(z, y, focal_gamma=gamma).item() == pytest.approx(sum(focal) / 2, rel=1e-6)
    assert hard_loss(z, y, focal_gamma=4.0) < hard_loss(z, y, focal_gamma=1.0) < hard_loss(z, y)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_hard_loss_focal_gradient_finite_for_perfect_prediction(gamma):
    # p_t == 1 exactly in float32: (1 - p_t) ** gamma has an infinite derivative for gamma < 1.
    z = torch.tensor([[1e4, 0.0, -1e4], [0.0, 1.0, 2.0]], requires_grad=True)
    hard_loss(z, torch.tensor([0, 1]), focal_gamma=gamma).backward()
    assert torch.isfinite(z.grad).all(), z.grad


def test_hard_loss_negative_focal_gamma_raises():
    with pytest.raises(ConfigError, match="focal_gamma"):
        hard_loss(rand_logits(2, 3), torch.tensor([0, 1]), focal_gamma=-1.0)


@pytest.mark.parametrize("bad", [3, 7, -2])
def test_hard_loss_out_of_range_label_raises_data_error(bad):
    z = rand_logits(3, 3, seed=26)
    y = torch.tensor([0, bad, 1])
    with pytest.raises(DataError, match=rf"Label index {bad} is outside \[0, 3\)") as info:
        hard_loss(z, y)
    assert "0..2" in str(info.value) and "-1 for unlabelled" in str(info.value)
    assert isinstance(info.value, CrossKDError) and isinstance(info.value, ValueError)


# --------------------------------------------------------------------------------------------------
# distillation_loss


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_distillation_loss_is_weighted_sum(alpha):
    z, v = rand_logits(6, 4, seed=27), rand_logits(6, 4, seed=28)
    y = torch.tensor([0, 1, 2, 3, IGNORE_LABEL, 1])
    t = 3.0
    out = distillation_loss(z, v, y, t, alpha)
    assert set(out) == {"loss", "kd", "ce"}
    for value in out.values():
        assert value.dtype == torch.float32 and value.ndim == 0
    torch.testing.assert_close(out["loss"], alpha * out["kd"] + (1 - alpha) * out["ce"])
    if alpha > 0:
        torch.testing.assert_close(out["kd"], kd_loss(z, v, t))
    if alpha < 1:
        torch.testing.assert_close(out["ce"], hard_loss(z, y))


def test_distillation_loss_gradient_is_weighted_sum_of_gradients():
    z, v = rand_logits(4, 5, seed=29), rand_logits(4, 5, seed=30)
    y = torch.tensor([0, 4, IGNORE_LABEL, 2])
    t, alpha = 2.0, 0.3
    s = z.clone().requires_grad_(True)
    distillation_loss(s, v, y, t, alpha)["loss"].backward()
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    kd_loss(a, v, t).backward()
    hard_loss(b, y).backward()
    torch.testing.assert_close(s.grad, alpha * a.grad + (1 - alpha) * b.grad)


def test_distillation_loss_alpha_zero_without_teacher():
    z = rand_logits(4, 3, seed=31).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 0])
    out = distillation_loss(z, None, y, 4.0, 0.0)
    assert out["kd"].item() == 0.0
    torch.testing.assert_close(out["loss"], F.cross_entropy(z, y))
    out["loss"].backward()
    assert torch.isfinite(z.grad).all()


def test_distillation_loss_alpha_one_without_target():
    z = rand_logits(4, 3, seed=32).requires_grad_(True)
    v = rand_logits(4, 3, seed=33)
    out = distillation_loss(z, v, None, 4.0, 1.0)
    assert out["ce"].item() == 0.0
    torch.testing.assert_close(out["loss"], kd_loss(z, v, 4.0))
    out["loss"].backward()
    assert torch.isfinite(z.grad).all()


def test_distillation_loss_missing_inputs_raise_config_error():
    z, y = rand_logits(2, 3), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="needs teacher logits"):
        distillation_loss(z, None, y, 2.0, 0.5)
    with pytest.raises(ConfigError, match="needs labels"):
        distillation_loss(z, rand_logits(2, 3), None, 2.0, 0.5)


@pytest.mark.parametrize(
    ("temperature", "message"),
    [
        (0, "temperature must be finite and > 0, got 0"),
        (0.0, "temperature must be finite and > 0"),
        (-1, "temperature must be finite and > 0, got -1"),
        (float("nan"), "temperature must be finite and > 0, got nan"),
        (float("inf"), "temperature must be finite and > 0, got inf"),
        ("x", "temperature must be a number > 0, got 'x'"),
        (None, "temperature must be a number > 0, got None"),
    ],
)
def test_bad_temperature_raises_config_error(temperature, message):
    z, v, y = rand_logits(2, 3), rand_logits(2, 3, seed=1), torch.tensor([0, 1])
    calls = [
        lambda: distillation_loss(z, v, y, temperature, 0.5),
        lambda: distillation_loss(z, None, y, temperature, 0.0),
        lambda: kd_loss(z, v, temperature),
        lambda: soft_cross_entropy(z, v, temperature),
        lambda: soften(z, temperature),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=message):
            call()


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_bad_alpha_raises_config_error(alpha):
    z, v, y = rand_logits(2, 3), rand_logits(2, 3, seed=1), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\]") as info:
        distillation_loss(z, v, y, 2.0, alpha)
    assert "alpha=0 trains on labels only" in str(info.value)
    with pytest.raises(ConfigError, match=r"alpha must be a number in \[0, 1\], got 'x'"):
        distillation_loss(z, v, y, 2.0, "x")


def test_mismatched_class_counts_raise_data_error():
    z, v, y = rand_logits(4, 3), rand_logits(4, 5, seed=1), torch.tensor([0, 1, 2, 0])
    for call in [
        lambda: distillation_loss(z, v, y, 2.0, 0.5),
        lambda: distillation_loss(z, v, None, 2.0, 1.0),
        lambda: kd_loss(z, v, 2.0),
        lambda: soft_cross_entropy(z, v, 2.0),
    ]:
        with pytest.raises(DataError, match="Give the student num_classes=5") as info:
            call()
        assert "teacher gives 5 class logits but the student outputs 3" in str(info.value)


def test_mismatched_batch_raises_data_error():
    with pytest.raises(DataError, match="do not match"):
        kd_loss(rand_logits(4, 3), rand_logits(5, 3, seed=1), 2.0)


# --------------------------------------------------------------------------------------------------
# 3-D (batch, frames, classes) logits


def test_kd_loss_3d_logits_equal_flattened_rows():
    b, f, c = 3, 4, 6
    z, v = rand_logits(b, f, c, seed=34), rand_logits(b, f, c, seed=35)
    for t in [1.0, 4.0]:
        got = kd_loss(z, v, t)
        assert got.ndim == 0 and got.dtype == torch.float32
        torch.testing.assert_close(got, kd_loss(z.reshape(-1, c), v.reshape(-1, c), t))
        torch.testing.assert_close(got.double(), ref_kd(z, v, t), rtol=1e-5, atol=1e-7)
        # Gradient: T * (p - q) / (batch * frames).
        p = torch.softmax(z.double() / t, dim=-1)
        q = torch.softmax(v.double() / t, dim=-1)
        assert_close_rel(student_grad(z, v, t), t * (p - q) / (b * f), rtol=1e-5)
    assert kd_loss(z, z.clone(), 2.0).abs().item() <= 1e-7


def test_kd_loss_3d_with_frame_weights():
    b, f, c = 2, 3, 4
    z, v = rand_logits(b, f, c, seed=36), rand_logits(b, f, c, seed=37)
    w = torch.tensor([[1.0, 0.0, 2.0], [0.5, 1.0, 0.0]])
    t = 2.0
    log_p = F.log_softmax(z.double() / t, dim=-1)
    log_q = F.log_softmax(v.double() / t, dim=-1)
    per = (log_q.exp() * (log_q - log_p)).sum(-1)
    expected = t * t * (per * w.double()).sum() / w.double().sum()
    torch.testing.assert_close(
        kd_loss(z, v, t, sample_weight=w).double(), expected, rtol=1e-5, atol=1e-7
    )
    # All-ones weights are the plain mean.
    torch.testing.assert_close(kd_loss(z, v, t, sample_weight=torch.ones(b, f)), kd_loss(z, v, t))


# --------------------------------------------------------------------------------------------------
# Property-based tests

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def logit_pairs(draw):
    """(student, teacher, target, T): C in 2..50, N in 1..16, scale 10**U(-3, 4), T in [0.05, 100].

    The student is either independent of the teacher or a tiny perturbation of it (the case where
    float32 rounding can push the KL below zero).
    """
    c = draw(st.integers(2, 50))
    n = draw(st.integers(1, 16))
    scale = 10.0 ** draw(st.floats(-3.0, 4.0))
    t = draw(st.floats(0.05, 100.0))
    seed = draw(st.integers(0, 2**31 - 1))
    near = draw(st.booleans())
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    if near:
        z = v + torch.randn(n, c, generator=g, dtype=torch.float64) * scale * 1e-4
    else:
        z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    y = torch.randint(-1, c, (n,), generator=g)
    return z.float(), v.float(), y, t


def kd_rounding_tolerance(c: int, t: float) -> float:
    # KL(q || p) is computed from float32 log-probabilities of size ~log C, so its rounding error is
    # a few eps32 * log C; kd_loss multiplies it by T^2 (observed worst case ~3e-4 at T=100, C=10).
    return 1e-6 + 16 * EPS32 * max(1.0, math.log(c)) * t * t


@PROPERTY_SETTINGS
@given(logit_pairs())
def test_property_kd_loss_finite_and_nonnegative(pair):
    z, v, _, t = pair
    value = kd_loss(z, v, t).item()
    assert math.isfinite(value)
    assert value >= -kd_rounding_tolerance(z.shape[-1], t), value
    # And close to the float64 value of the same inputs (up to the same T^2-scaled rounding).
    assert abs(value - ref_kd(z, v, t).item()) <= kd_rounding_tolerance(
        z.shape[-1], t
    ) + 1e-4 * abs(value)


@PROPERTY_SETTINGS
@given(logit_pairs())
def test_property_kd_loss_zero_for_identical_inputs(pair):
    z, _, _, t = pair
    assert abs(kd_loss(z, z.clone(), t).item()) <= 1e-7


@PROPERTY_SETTINGS
@given(logit_pairs())
def test_property_softened_softmax_sums_to_one(pair):
    z, _, _, t = pair
    soft = soften(z, t)
    assert soft.dtype == torch.float32
    probs = torch.softmax(soft, dim=-1)
    assert torch.isfinite(probs).all()
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(z.shape[0]), rtol=0, atol=1e-5)


@PROPERTY_SETTINGS
@given(logit_pairs(), st.floats(0.0, 1.0))
def test_property_distillation_loss_finite(pair, alpha):
    z, v, y, t = pair
    s = z.clone().requires_grad_(True)
    out = distillation_loss(s, v, y, t, alpha)
    for name, value in out.items():
        assert torch.isfinite(value), (name, value)
    assert out["kd"].item() >= -kd_rounding_tolerance(z.shape[-1], t)
    assert out["ce"].item() >= 0.0
    out["loss"].backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
def test_kd_loss_from_packed_equals_kd_loss(temperature):
    from crosskd.losses import kd_loss_from_packed, packed_soft_targets

    gen = torch.Generator().manual_seed(3)
    s = torch.randn(16, 7, generator=gen) * 3
    t = torch.randn(16, 7, generator=gen) * 3
    packed = packed_soft_targets(t, temperature)
    assert packed.shape == (16, 8)
    torch.testing.assert_close(packed[:, :-1].sum(-1), torch.ones(16))
    torch.testing.assert_close(
        kd_loss_from_packed(s, packed, temperature),
        kd_loss(s, t, temperature),
        rtol=1e-5,
        atol=1e-6,
    )
