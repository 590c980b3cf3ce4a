"""threads="auto": never more threads than idle cores, one for small steps; settings checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy import LinearTeacher

from crosskd import MLP, ConfigError, Distiller
from crosskd._threads import (
    SMALL_STEP_FLOPS,
    available_cores,
    choose_threads,
    idle_cores,
    step_flops,
    torch_threads,
)


def test_explicit_counts_and_bad_values():
    assert choose_threads(3) == 3
    for bad in (0, -1, 1.5, True, "two"):
        with pytest.raises(ConfigError, match="threads must be a positive integer or 'auto'"):
            choose_threads(bad)


def test_auto_is_one_thread_for_small_steps_and_at_most_the_cores(monkeypatch):
    assert choose_threads("auto", step_flops=SMALL_STEP_FLOPS / 2) == 1
    monkeypatch.setattr("crosskd._threads.available_cores", lambda: 8)
    monkeypatch.setattr("crosskd._threads.idle_cores", lambda window=0.1: 2.6)
    assert choose_threads("auto", step_flops=1e12) == 3  # the idle cores, rounded
    assert choose_threads("auto", step_flops=1e12, processes=2) == 1  # shared by 2 ranks
    monkeypatch.setattr("crosskd._threads.idle_cores", lambda window=0.1: 0.2)
    assert choose_threads("auto", step_flops=1e12) == 1  # a busy machine: never 0
    monkeypatch.setattr("crosskd._threads.idle_cores", lambda window=0.1: 64.0)
    assert choose_threads("auto", step_flops=1e12) == 8  # never more than this process's cores


def test_idle_cores_is_within_the_machine():
    assert 0.0 <= idle_cores(0.02) <= (available_cores() or 1) + 64
    assert idle_cores(0.0) >= 0.0


def test_step_flops_counts_forward_and_backward():
    mlp = torch.nn.Linear(10, 4, bias=False)
    # forward: 2 * 10 * 4 per row; a step: 3x that per row, times the batch
    assert step_flops(mlp, (torch.randn(2, 10),), 32) == pytest.approx(3 * 2 * 40 * 32)


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_the_trainer_records_its_choice_and_restores_torch_threads():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    W = rng.normal(size=(4, 3))
    before = torch.get_num_threads()
    d = Distiller(LinearTeacher(W), MLP(4, 3), epochs=1, progress=False, device="cpu")
    d.fit(X, (X @ W).argmax(1))
    assert d.threads_ == 1  # a tiny MLP: one thread
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="threads"):
        Distiller(LinearTeacher(W), MLP(4, 3), threads=0).fit(X, (X @ W).argmax(1))
