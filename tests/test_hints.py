"""Feature hints (FitNets): the loss, the adapters, the settings, and training through the Distiller."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn
from toy import LinearTeacher

import crosskd
from crosskd import Distiller
from crosskd.checkpoint import load_checkpoint
from crosskd.exceptions import ConfigError, DataError
from crosskd.hints import (
    ConvAdapter,
    FeatureHint,
    HintSession,
    as_feature_hint,
    build_adapter,
    hint_loss,
)
from crosskd.io import load_bundle
from crosskd.teachers import ModuleTeacher
from crosskd.vision import SmallCNN

# ---------------------------------------------------------------- the loss


@pytest.mark.parametrize("shape", [(3, 4, 5, 5), (6, 7)])
def test_hint_loss_matches_float64_formula_and_its_gradient(shape):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(shape, generator=g).requires_grad_(True)
    t = torch.randn(shape, generator=g) * 3 + 1
    loss = hint_loss(s, t)
    loss.backward()
    s64, t64 = s.detach().double(), t.double()
    expected = ((s64 - t64) ** 2).sum() / s64.numel()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    grad = 2 * (s64 - t64) / s64.numel()
    torch.testing.assert_close(s.grad.double(), grad, rtol=1e-5, atol=1e-8)
    # float64 inputs stay float64
    exact = hint_loss(s64, t64)
    assert exact.dtype == torch.float64 and exact.item() == pytest.approx(
        expected.item(), rel=1e-12
    )


def test_hint_loss_is_zero_for_equal_features_and_detaches_the_teacher():
    t = torch.randn(4, 3, requires_grad=True)
    s = torch.randn(4, 3, requires_grad=True)
    assert hint_loss(t.detach(), t.detach()).item() == 0.0
    hint_loss(s, t).backward()
    assert t.grad is None and s.grad is not None


@pytest.mark.parametrize(
    "dtype, scale", [(torch.float16, 6e4), (torch.bfloat16, 1e18), (torch.float32, 1e15)]
)
def test_hint_loss_finite_with_finite_gradient_at_extreme_values(dtype, scale):
    g = torch.Generator().manual_seed(1)
    s = (torch.rand(2, 3, 4, 4, generator=g) * 2 - 1).mul(scale).to(dtype).requires_grad_(True)
    t = (-s.detach()).clone()  # the largest differences: 2 * scale
    loss = hint_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert torch.isfinite(s.grad.float()).all()
    s64, t64 = s.detach().double(), t.double()
    assert loss.item() == pytest.approx(((s64 - t64) ** 2).mean().item(), rel=1e-5)


def test_hint_loss_refuses_other_shapes():
    with pytest.raises(DataError, match=r"the student's \(2, 3\) and the teacher's \(2, 4\)"):
        hint_loss(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------- the setting


@pytest.mark.parametrize("weight", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_feature_hint_refuses_bad_weights(weight):
    with pytest.raises(ConfigError, match=r"weight must be a finite number > 0, got .*hint=None"):
        FeatureHint("a", "b", weight)


@pytest.mark.parametrize("field", ["student_layer", "teacher_layer"])
@pytest.mark.parametrize("value", ["", None, 3])
def test_feature_hint_refuses_bad_layer_names(field, value):
    names = {"student_layer": "a", "teacher_layer": "b", field: value}
    with pytest.raises(ConfigError, match=f"FeatureHint {field} must name a submodule"):
        FeatureHint(**names)


def test_feature_hint_from_a_mapping_and_back():
    hint = FeatureHint("features.5", "layer2", 2)
    assert hint.weight == 2.0 and isinstance(hint.weight, float)
    assert as_feature_hint(hint.to_dict()) == hint
    assert as_feature_hint({"student_layer": "a", "teacher_layer": "b"}) == FeatureHint("a", "b")
    assert as_feature_hint(None) is None
    with pytest.raises(ConfigError, match=r"has unknown keys \['wieght'\]; expected the keys"):
        as_feature_hint({"student_layer": "a", "teacher_layer": "b", "wieght": 1.0})
    with pytest.raises(ConfigError, match=r"lacks \['teacher_layer'\]"):
        as_feature_hint({"student_layer": "a"})
    with pytest.raises(ConfigError, match="hint must be a crosskd.hints.FeatureHint, .* got a str"):
        as_feature_hint("features.5")
    with pytest.raises(AttributeError):
        hint.weight = 3.0  # frozen


# ---------------------------------------------------------------- adapters


@pytest.mark.parametrize(
    "student_hw, teacher_hw",
    [((4, 4), (4, 4)), ((8, 8), (4, 4)), ((2, 3), (4, 6)), ((8, 2), (4, 4))],
)
def test_conv_adapter_maps_channels_and_size(student_hw, teacher_hw):
    s, t = torch.randn(2, 3, *student_hw), torch.randn(2, 5, *teacher_hw)
    adapter = build_adapter(s, t)
    assert isinstance(adapter, ConvAdapter)
    assert adapter(s).shape == t.shape
    assert hint_loss(adapter(s), t).requires_grad


def test_conv_adapter_average_pools_a_larger_map():
    adapter = ConvAdapter(1, 1, (2, 2))
    with torch.no_grad():
        adapter.conv.weight.fill_(1.0)
        adapter.conv.bias.zero_()
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])
    torch.testing.assert_close(adapter(x), expected)


def test_linear_adapter_for_vectors_and_mismatched_kinds():
    adapter = build_adapter(torch.randn(2, 5), torch.randn(2, 16))
    assert isinstance(adapter, nn.Linear) and (adapter.in_features, adapter.out_features) == (5, 16)
    with pytest.raises(ConfigError, match=r"the student's 'fc' gives shape \(2, 5\) and the "):
        build_adapter(torch.randn(2, 5), torch.randn(2, 8, 4, 4), "fc", "layer1")


# ---------------------------------------------------------------- training


def _images(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 1, 8, 8), dtype=np.float32)
    y = (X[:, :, :4].mean(axis=(1, 2, 3)) > X[:, :, 4:].mean(axis=(1, 2, 3))).astype(int)
    return X, y


def _conv_teacher(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, stride=2),
        nn.ReLU(),  # "3": (N, 8, 4, 4)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    return ModuleTeacher(net, classes=(0, 1))


def _small_cnn(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(in_chans=1, num_classes=2, width=4)  # "features.5": (N, 4, 8, 8)


def _no_forward_hooks(*modules: nn.Module) -> bool:
    return all(not m._forward_hooks for module in modules for m in module.modules())


SETTINGS = dict(epochs=2, batch_size=16, lr=1e-2, device="cpu", progress=False, threads=1)


def test_conv_student_learns_the_hint_and_keeps_no_adapter(tmp_path):
    X, y = _images(64)
    teacher, student = _conv_teacher(), _small_cnn()
    hint = FeatureHint("features.5", "3", weight=2.0)
    d = Distiller(teacher, student, hint=hint, alpha=0.5, **SETTINGS)
    d.fit(X[:48], y[:48], eval_set=(X[48:], y[48:]))

    first, last = d.history_[0], d.history_[-1]
    for key in ("train_hint", "val_hint"):
        assert np.isfinite(first[key]) and first[key] > 0
        assert last[key] < first[key]
    a = d.alpha_  # the total is the weighted sum of the terms (row-weighted means are linear)
    for split in ("train", "val"):
        total = (
            a * last[f"{split}_kd"] + (1 - a) * last[f"{split}_ce"] + 2.0 * last[f"{split}_hint"]
        )
        assert last[f"{split}_loss"] == pytest.approx(total, rel=1e-5)
    assert d.hint_ == hint
    assert d.hint_shapes_ == {"student": [4, 8, 8], "teacher": [8, 4, 4]}

    # student_ is the student alone: no adapter parameters, hooks removed on both sides
    assert type(d.student_) is SmallCNN
    assert d.student_.state_dict().keys() == student.state_dict().keys()
    assert sum(p.numel() for p in d.student_.parameters()) == sum(
        p.numel() for p in student.parameters()
    )
    assert _no_forward_hooks(d.student_, student, teacher.module)
    proba = d.predict_proba(X[48:])
    assert proba.shape == (16, 2) and np.allclose(proba.sum(axis=1), 1.0)

    # the setting is recorded: repr, the saved bundle, and a bundle that loads and predicts alike
    assert "hint=FeatureHint(student_layer='features.5', teacher_layer='3', weight=2.0)" in repr(d)
    path = d.save(tmp_path / "student")
    _, settings = load_bundle(path)
    assert settings["hint"] == {"student_layer": "features.5", "teacher_layer": "3", "weight": 2.0}
    np.testing.assert_allclose(crosskd.load(path).predict_proba(X[48:]), proba, rtol=1e-6)


def test_vector_features_get_a_linear_adapter_from_a_config_mapping():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    torch.manual_seed(0)
    t_net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    student = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    hint = {"student_layer": "1", "teacher_layer": "1", "weight": 0.5}
    d = Distiller(ModuleTeacher(t_net, classes=(0, 1)), student, hint=hint, **SETTINGS)
    d.fit(X[:64], y[:64], eval_set=(X[64:], y[64:]))
    assert d.hint_ == FeatureHint("1", "1", 0.5)
    assert d.hint_shapes_ == {"student": [5], "teacher": [16]}
    assert all(np.isfinite(r["train_hint"]) and np.isfinite(r["val_hint"]) for r in d.history_)
    assert d.history_[-1]["train_hint"] < d.history_[0]["train_hint"]
    assert type(d.student_) is nn.Sequential and len(d.student_.state_dict()) == 4
    assert _no_forward_hooks(d.student_, t_net)


def test_hint_none_is_unchanged_and_a_hinted_fit_leaves_no_trace():
    """``hint=None`` trains exactly as without the argument; a hinted fit in between (same teacher
    and student objects) leaves no hook or module behind that would change a later fit."""
    X, y = _images(48)
    teacher, student = _conv_teacher(), _small_cnn()
    settings = dict(SETTINGS, teacher_mode="online")

    def weights(d):
        return {k: v.clone() for k, v in d.student_.state_dict().items()}

    plain = Distiller(teacher, student, **settings).fit(X, y)
    before = weights(plain)
    assert "train_hint" not in plain.history_[0]
    explicit = Distiller(teacher, student, hint=None, **settings).fit(X, y)
    hinted = Distiller(teacher, student, hint=FeatureHint("features.5", "3"), **settings).fit(X, y)
    again = Distiller(teacher, student, **settings).fit(X, y)
    assert not all(torch.equal(before[k], v) for k, v in weights(hinted).items())
    for other in (explicit, again):
        assert before.keys() == weights(other).keys()
        assert all(torch.equal(before[k], v) for k, v in weights(other).items())
        assert other.history_[0].keys() == plain.history_[0].keys()
        assert [r["train_loss"] for r in other.history_] == [
            r["train_loss"] for r in plain.history_
        ]


def test_hooks_are_removed_when_training_fails():
    X, y = _images(48)
    teacher, student = _conv_teacher(), _small_cnn()
    calls = {"n": 0}

    def crash(module, args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")

    d = Distiller(
        teacher, student, hint=FeatureHint("features.5", "3"), warm_start=True, **SETTINGS
    )
    handle = student.register_forward_pre_hook(crash)
    with pytest.raises(RuntimeError, match="boom"):
        d.fit(X, y)
    handle.remove()
    assert _no_forward_hooks(student, teacher.module)
    # a layer pair that cannot be adapted fails in the dry forward, also without leaving hooks
    bad = Distiller(teacher, student, hint=FeatureHint("features.5", "6"), **SETTINGS)
    with pytest.raises(ConfigError, match=r"the student's 'features.5' gives shape \(2, 4, 8, 8\)"):
        bad.fit(X, y)
    assert _no_forward_hooks(student, teacher.module)


def test_resume_with_a_hint_equals_the_uninterrupted_run(tmp_path):
    X, y = _images(48)
    hint = FeatureHint("features.5", "3")
    settings = dict(SETTINGS, epochs=3, checkpoint_every=1)

    def run(folder, student):
        return Distiller(_conv_teacher(), student, hint=hint, checkpoint_dir=folder, **settings)

    reference = run(tmp_path / "ref", _small_cnn()).fit(X, y)
    crashing, calls = _small_cnn(), {"n": 0}

    def crash(module, args):
        calls["n"] += 1
        # the output check, the dry forward, two epochs of 3 steps, then the first step of epoch 3
        if calls["n"] == 1 + 1 + 3 + 3 + 1:
            raise RuntimeError("crash")

    crashing.register_forward_pre_hook(crash)
    with pytest.raises(RuntimeError, match="crash"):
        run(tmp_path / "ckpt", crashing).fit(X, y)
    assert load_checkpoint(tmp_path / "ckpt").epoch == 2
    resumed = run(tmp_path / "ckpt", _small_cnn()).fit(X, y, resume=True)
    ref, got = reference.student_.state_dict(), resumed.student_.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert [r["train_hint"] for r in resumed.history_] == [
        r["train_hint"] for r in reference.history_
    ]
    # a checkpoint written with another hint (or none) is refused, naming the setting
    other = Distiller(_conv_teacher(), _small_cnn(), hint=FeatureHint("features.2", "3"),
                      checkpoint_dir=tmp_path / "ckpt", **settings)  # fmt: skip
    with pytest.raises(ConfigError, match=r"other settings \(hint=\{'student_layer': 'features.5'"):
        other.fit(X, y, resume=True)
    plain = Distiller(_conv_teacher(), _small_cnn(), checkpoint_dir=tmp_path / "ckpt", **settings)
    with pytest.raises(
        ConfigError, match=r"other settings \(hint=.* in the checkpoint, None now\)"
    ):
        plain.fit(X, y, resume=True)


# ---------------------------------------------------------------- errors and settings


def test_unknown_layer_names_list_close_matches():
    X, y = _images(16)
    teacher, student = _conv_teacher(), _small_cnn()
    d = Distiller(teacher, student, hint=FeatureHint("featurs.5", "3"), **SETTINGS)
    with pytest.raises(ConfigError, match=r"student \(SmallCNN\) has no layer named 'featurs.5'\. "
                       r"Close matches: \['features.5'"):  # fmt: skip
        d.fit(X, y)
    d = Distiller(teacher, student, hint=FeatureHint("features.5", "layer9"), **SETTINGS)
    with pytest.raises(ConfigError, match=r"teacher \(Sequential\) has no layer named 'layer9'\. "
                       r"Available: \['0', '1', .*of teacher.module\)"):  # fmt: skip
        d.fit(X, y)
    assert _no_forward_hooks(student, teacher.module)


def test_hints_need_an_online_torch_teacher():
    X, y = _images(16)
    flat = X.reshape(16, -1)
    hint = FeatureHint("features.5", "3")
    linear = LinearTeacher(np.zeros((64, 2)))
    with pytest.raises(
        ConfigError, match="Feature hints need an online torch teacher .* got Linear"
    ):
        Distiller(linear, _small_cnn(), hint=hint, **SETTINGS).fit(flat, y)
    with pytest.raises(ConfigError, match=r"but teacher is None\. Pass a torch teacher"):
        Distiller(None, _small_cnn(), hint=hint, alpha=0.0, **SETTINGS).fit(X, y)
    with pytest.raises(ConfigError, match="must run online, but teacher_mode='cached'"):
        Distiller(_conv_teacher(), _small_cnn(), hint=hint, teacher_mode="cached", **SETTINGS).fit(
            X, y
        )
    with pytest.raises(ConfigError, match="weight must be a finite number > 0, got 0"):
        bad = {"student_layer": "features.5", "teacher_layer": "3", "weight": 0}
        Distiller(_conv_teacher(), _small_cnn(), hint=bad, **SETTINGS).fit(X, y)


def test_task_with_a_hint_needs_its_online_teacher():
    from crosskd.tasks.classification import ClassificationTask

    session = HintSession(FeatureHint("features.5", "3"), _small_cnn(), _conv_teacher().module)
    with pytest.raises(ConfigError, match="the task has no online teacher"):
        ClassificationTask(temperature=1.0, alpha=0.5, num_classes=2, hint=session)


def test_get_params_and_clone_keep_the_hint():
    hint = FeatureHint("features.5", "3", 0.3)
    d = Distiller(_conv_teacher(), _small_cnn(), hint=hint, alpha=0.7)
    params = d.get_params()
    assert params["hint"] is hint and params["alpha"] == 0.7
    copy = clone(d)
    assert copy.hint == hint and copy.alpha == 0.7 and copy is not d
    assert d.set_params(hint=None).hint is None
    with pytest.raises(ConfigError, match=r"Distiller has no settings \['hints'\]"):
        d.set_params(hints=hint)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_hint_on_cuda_with_bf16_autocast():
    X, y = _images(64)
    torch.manual_seed(0)
    net = _conv_teacher().module
    teacher = ModuleTeacher(net, device="cuda", precision="bf16-mixed", classes=(0, 1))
    settings = dict(SETTINGS, device="cuda", precision="bf16-mixed")
    d = Distiller(teacher, _small_cnn(), hint=FeatureHint("features.5", "3"), **settings)
    d.fit(X[:48], y[:48], eval_set=(X[48:], y[48:]))
    for record in d.history_:
        assert np.isfinite(record["train_hint"]) and np.isfinite(record["val_hint"])
    assert next(d.student_.parameters()).device.type == "cuda"
    assert type(d.student_) is SmallCNN and _no_forward_hooks(d.student_, net)
    assert np.allclose(d.predict_proba(X[48:]).sum(axis=1), 1.0)


def test_timm_teacher_layers_are_named_under_model():
    from crosskd.teachers import TimmTeacher

    X, y = _images(32)
    net = _conv_teacher().module
    teacher = TimmTeacher(net, num_classes=2)  # its module: preprocessing, then the network
    d = Distiller(teacher, _small_cnn(), hint=FeatureHint("features.5", "3"), **SETTINGS)
    with pytest.raises(ConfigError, match=r"no layer named '3'\. Close matches: \['model.3'\]"):
        d.fit(X, y)
    d.set_params(hint=FeatureHint("features.5", "model.3"), epochs=1).fit(X, y)
    assert d.hint_shapes_["teacher"] == [8, 4, 4] and "train_hint" in d.history_[0]
    assert _no_forward_hooks(teacher.module, d.student_)
