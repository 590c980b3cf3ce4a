"""Size and speed of models, measured the same way for teachers and students."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ModelSize", "model_size", "time_inference", "device_description"]


@dataclass(frozen=True)
class ModelSize:
    """Parameters and bytes of a model.

    For a torch module: trainable parameters, and bytes of every tensor in its state dict. For a
    LightGBM model: nodes of all trees (splits + leaves), and bytes of its text model file.
    """

    params: int
    bytes: int


def model_size(model: Any) -> ModelSize:
    """Size of a model, by what it is made of.

    - a torch module: trainable parameters, and bytes of every tensor in its state dict;
    - a LightGBM Booster / LGBMClassifier: nodes of all trees (splits + leaves), and bytes of its
      text model file;
    - a scikit-learn tree or tree ensemble (random forest, extra trees, gradient boosting): nodes,
      and bytes of the node arrays (children, feature, threshold, value);
    - a crosskd teacher: the model it wraps; an :class:`~crosskd.EnsembleTeacher`: its members'
      sizes added up.
    """
    if isinstance(model, nn.Module):
        module = getattr(model, "module", model)
        params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        nbytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
        return ModelSize(params, nbytes)
    booster = getattr(model, "booster_", None) or getattr(model, "booster", None)
    if booster is None and type(model).__name__ == "Booster":
        booster = model
    if booster is not None and hasattr(booster, "model_to_string"):
        text = booster.model_to_string()
        leaves = sum(tree["num_leaves"] for tree in booster.dump_model()["tree_info"])
        n_trees = booster.num_trees()
        return ModelSize(2 * leaves - n_trees, len(text.encode()))
    tree = getattr(model, "tree_", None)
    if tree is not None and hasattr(tree, "node_count"):
        arrays = (tree.children_left, tree.children_right, tree.feature, tree.threshold, tree.value)
        return ModelSize(int(tree.node_count), int(sum(a.nbytes for a in arrays)))
    parts = getattr(model, "estimators_", None)
    if parts is None:
        parts = getattr(model, "members", None)
    if parts is not None:
        sizes = [model_size(part) for part in _flatten(parts)]
        return ModelSize(sum(s.params for s in sizes), sum(s.bytes for s in sizes))
    for attr in ("model", "module"):
        inner = getattr(model, attr, None)
        if inner is not None and inner is not model:
            return model_size(inner)
    raise TypeError(
        f"Cannot measure the size of a {type(model).__name__}: model_size knows torch modules, "
        "LightGBM models, scikit-learn trees and tree ensembles, and crosskd teachers wrapping them."
    )


def _flatten(parts: Any) -> list[Any]:
    out: list[Any] = []
    for part in parts:
        if isinstance(part, (list, tuple)) or getattr(part, "ndim", 0) > 0:
            out.extend(_flatten(part))
        else:
            out.append(part)
    return out


def time_inference(
    predict: Callable[[Any], Any], X: Any, *, repeats: int = 5, warmup: int = 1
) -> float:
    """Best wall-clock seconds of ``predict(X)`` over ``repeats`` calls, after ``warmup`` calls.

    The best (not the mean) of several runs is the least disturbed by other work on the machine.
    Use it to compare models side by side in one process.
    """
    for _ in range(warmup):
        predict(X)
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        predict(X)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def device_description(device: str | torch.device = "cpu") -> str:
    """The machine a measurement ran on, as benchmark results record it.

    ``"cpu: 2 cores (Intel(R) Xeon(R) Processor)"`` (the model name from /proc/cpuinfo where it
    exists) or ``"cuda: NVIDIA H200"``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    from ._machine import cpu_description

    return cpu_description()
