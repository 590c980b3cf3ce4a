"""Training checkpoints of the engine (:class:`crosskd.Distiller`, :class:`crosskd.CTCDistiller`): saved atomically, loaded without pickle.

A checkpoint is one ``.safetensors`` file (default name :data:`CHECKPOINT_NAME` in the
``checkpoint_dir`` given to the Distiller). Every tensor of the training state is a safetensors
tensor; everything else is one JSON document in the file's string metadata under the key
``"crosskd"``::

    tensors                                  JSON ("crosskd" metadata)
    model.<key>        student state_dict    format, format_version, epoch, stopped
    best.<key>         best weights so far   optimizer: param_groups, non-tensor state values
    optimizer.<i>.<n>  AdamW state tensors   scheduler, scaler: their state_dicts
    rng.torch          torch CPU generator   early_stopping: best_value, best_epoch, bad_epochs
    rng.generator      shuffling generator   rng: numpy / python scalars
    rng.numpy          numpy MT19937 keys    history: one dict per finished epoch
    rng.python         python random state   run: settings and fingerprints of data and teacher
    rng.cuda.<i>       CUDA generators       crosskd_version, torch_version

Nothing in the file is imported or executed when it is read, so a checkpoint from an untrusted
source cannot run code. Files are written to a temporary file, flushed and renamed, so a process
killed while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .exceptions import BundleError, ConfigError, DataError

__all__ = [
    "CHECKPOINT_NAME",
    "TrainingState",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "tensor_fingerprint",
    "capture_rng",
    "restore_rng",
    "check_same_run",
]

#: File name of the checkpoint inside a ``checkpoint_dir``.
CHECKPOINT_NAME = "checkpoint.safetensors"
FORMAT = "crosskd-checkpoint"
FORMAT_VERSION = 1
_METADATA_KEY = "crosskd"


@dataclass
class TrainingState:
    """Everything a :class:`~crosskd.Distiller` needs to continue a run after ``epoch`` epochs.

    Attributes:
        epoch: number of finished epochs.
        stopped: True when early stopping ended the run at ``epoch``.
        model: the student's ``state_dict`` after ``epoch`` epochs (CPU tensors).
        optimizer: the optimizer's ``state_dict``.
        scheduler: the learning-rate scheduler's ``state_dict`` (plain JSON values).
        scaler: the gradient scaler's ``state_dict`` (empty when loss scaling is off).
        rng: random generator states: ``torch`` (uint8 tensor), ``generator`` (uint8 tensor, the
            Distiller's shuffling generator), ``numpy`` (the legacy global state tuple),
            ``python`` (``random.getstate()``), ``cuda`` (list of uint8 tensors, may be empty).
        best_value: best validation value so far, or None.
        best_epoch: epoch of ``best_value`` (0 when none).
        bad_epochs: epochs since the last improvement.
        best_state: weights of the best epoch, or None.
        history: the Distiller's ``history_`` so far.
        run: what identifies the run (settings and fingerprints), checked on resume.
        extra: JSON values of the engine: the restart attempt, each callback's state, the
            augmentation's generator states.
    """

    epoch: int
    stopped: bool
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: dict[str, Any]
    best_value: float | None
    best_epoch: int
    bad_epochs: int
    best_state: dict[str, torch.Tensor] | None
    history: list[dict[str, float]] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ helpers


def tensor_fingerprint(*tensors: torch.Tensor | None) -> str:
    """A short hash of the dtypes, shapes and values of ``tensors`` (None allowed).

    Returns:
        A 16-hex-digit string; equal tensors give equal strings in any process.
    """
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        if t is None:
            h.update(b"none;")
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype};{tuple(t.shape)};".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """The states of every random generator a training epoch may use.

    Args:
        generator: the Distiller's shuffling generator.
    """
    np_state = np.random.get_state()  # noqa: NPY002 (user code such as augment may use it)
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": np_state,
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore_rng(rng: Mapping[str, Any], generator: torch.Generator) -> None:
    """Set every generator back to the states :func:`capture_rng` returned."""
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    np.random.set_state(rng["numpy"])  # noqa: NPY002
    random.setstate(rng["python"])
    cuda = rng.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            raise ConfigError(
                f"The checkpoint holds the random states of {len(cuda)} CUDA device(s) but this "
                f"machine has {torch.cuda.device_count()}. Resume on a machine with the same GPUs "
                "(or accept a different random stream by starting afresh)."
            )
        torch.cuda.set_rng_state_all(cuda)


def check_same_run(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint written by a run with other settings, data or teacher.

    Raises:
        ConfigError: a setting differs (named, with both values).
        DataError: the training rows, labels, validation rows or teacher targets differ.
    """
    saved_settings = saved.get("settings", {})
    now_settings = current.get("settings", {})
    changed = [
        f"{k}={saved_settings.get(k)!r} in the checkpoint, {now_settings.get(k)!r} now"
        for k in sorted(set(saved_settings) | set(now_settings))
        if saved_settings.get(k) != now_settings.get(k)
    ]
    if changed:
        raise ConfigError(
            f"Cannot resume from {str(path)!r}: it was written by a run with other settings ("
            + "; ".join(changed)
            + "). Resume with the same settings, or start afresh with resume=None."
        )
    labels = {
        "data": "the training rows",
        "targets": "the training labels",
        "teacher": "the teacher's targets",
        "validation": "the validation rows",
        "student": "the student's architecture",
    }
    differ = [labels.get(k, k) for k in labels if saved.get(k) != current.get(k)]
    if differ:
        listed = differ[0] if len(differ) == 1 else ", ".join(differ[:-1]) + " and " + differ[-1]
        raise DataError(
            f"Cannot resume from {str(path)!r}: {listed} differ from the run that wrote "
            "it (their fingerprints do not match). Pass the same data, labels, eval_set, transfer "
            "rows, teacher and student, or start afresh with resume=None."
        )


def resolve_checkpoint(path: str | os.PathLike[str], must_exist: bool = True) -> Path:
    """The checkpoint file for ``path``: the file itself, or :data:`CHECKPOINT_NAME` in a folder.

    Raises:
        BundleError: ``must_exist`` and there is no checkpoint there.
    """
    p = Path(path)
    target = p / CHECKPOINT_NAME if p.is_dir() else p
    if must_exist and not target.is_file():
        where = f"in the folder {str(p)!r}" if p.is_dir() else f"at {str(p)!r}"
        raise BundleError(
            f"No checkpoint {where} (expected {CHECKPOINT_NAME}). Check the path, or start afresh "
            "with resume=None; Distiller(checkpoint_dir=...) writes checkpoints there."
        )
    return target


# --------------------------------------------------------------------------------------- save


def save_checkpoint(path: str | os.PathLike[str], state: TrainingState) -> Path:
    """Write ``state`` to ``path`` (a file, or a folder that gets :data:`CHECKPOINT_NAME`) atomically.

    Returns:
        The file written.
    """
    from .io import _atomic_write, _crosskd_version

    target = Path(path)
    if target.is_dir() or target.suffix != ".safetensors":
        target = target / CHECKPOINT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)

    tensors: dict[str, torch.Tensor] = {}

    def put(name: str, value: torch.Tensor) -> None:
        # clone: safetensors refuses tensors that share memory (tied weights, views).
        tensors[name] = value.detach().to("cpu").clone().contiguous()

    for key, value in state.model.items():
        put(f"model.{key}", value)
    if state.best_state is not None:
        for key, value in state.best_state.items():
            put(f"best.{key}", value)

    optim_values: dict[str, dict[str, Any]] = {}
    for index, param_state in state.optimizer.get("state", {}).items():
        plain: dict[str, Any] = {}
        for name, value in param_state.items():
            if torch.is_tensor(value):
                put(f"optimizer.{int(index)}.{name}", value)
            else:
                plain[name] = value
        optim_values[str(int(index))] = plain
    optim_state_keys = {
        str(int(i)): sorted(k for k, v in s.items() if torch.is_tensor(v))
        for i, s in state.optimizer.get("state", {}).items()
    }

    rng = state.rng
    put("rng.torch", rng["torch"])
    put("rng.generator", rng["generator"])
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = rng["numpy"]
    put("rng.numpy", torch.from_numpy(np.asarray(np_keys, dtype=np.int64)))
    py_version, py_internal, py_gauss = rng["python"]
    put("rng.python", torch.tensor(py_internal, dtype=torch.int64))
    for i, cuda_state in enumerate(rng.get("cuda") or []):
        put(f"rng.cuda.{i}", cuda_state)

    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "crosskd_version": _crosskd_version(),
        "torch_version": torch.__version__,
        "epoch": int(state.epoch),
        "stopped": bool(state.stopped),
        "has_best": state.best_state is not None,
        "model_keys": list(state.model),
        "optimizer": {
            "param_groups": _jsonable(state.optimizer.get("param_groups", [])),
            "state_values": _jsonable(optim_values),
            "state_tensors": optim_state_keys,
        },
        "scheduler": _jsonable(state.scheduler),
        "scaler": _jsonable(state.scaler),
        "rng": {
            "numpy": [np_name, int(np_pos), int(np_has_gauss), float(np_gauss)],
            "python": [int(py_version), py_gauss],
            "cuda": len(rng.get("cuda") or []),
        },
        "early_stopping": {
            "best_value": state.best_value,
            "best_epoch": int(state.best_epoch),
            "bad_epochs": int(state.bad_epochs),
        },
        "history": _jsonable(state.history),
        "run": _jsonable(state.run),
        "extra": _jsonable(state.extra),
    }
    _atomic_write(target, tensors, {_METADATA_KEY: json.dumps(doc, allow_nan=True)})
    return target


def _jsonable(value: Any) -> Any:
    """Plain JSON types for state dicts (tuples become lists, numpy / 0-d tensors numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(
        f"The training state holds a {type(value).__name__}, which a checkpoint cannot store as "
        "JSON. Checkpoints support torch's built-in optimizers and schedulers."
    )


# --------------------------------------------------------------------------------------- load


def load_checkpoint(path: str | os.PathLike[str]) -> TrainingState:
    """Read a checkpoint written by :func:`save_checkpoint`; never unpickles anything.

    Args:
        path: the checkpoint file, or a folder holding :data:`CHECKPOINT_NAME`.

    Raises:
        BundleError: the file is missing, truncated, corrupt, or not a crosskd checkpoint.
    """
    from safetensors.torch import load

    from .io import _parse_header

    target = resolve_checkpoint(path)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise BundleError(f"Cannot read the checkpoint {target}: {exc.strerror or exc}.") from None
    header = _parse_header(target, data)
    raw = header.get("__metadata__")
    try:
        doc = json.loads(raw[_METADATA_KEY]) if isinstance(raw, dict) else None
    except (KeyError, TypeError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError(
            f"{target} is not a crosskd training checkpoint (no {FORMAT!r} metadata). Pass the "
            f"{CHECKPOINT_NAME} written by Distiller(checkpoint_dir=...), or its folder; student "
            "bundles (Distiller.save) cannot be resumed."
        )
    if not isinstance(doc.get("format_version"), int) or doc["format_version"] > FORMAT_VERSION:
        raise BundleError(
            f"{target} is checkpoint format version {doc.get('format_version')!r}; this crosskd "
            f"reads version {FORMAT_VERSION}. Resume with the crosskd version that wrote it "
            f"({doc.get('crosskd_version')})."
        )
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types for bad content
        raise BundleError(
            f"The checkpoint {target} is corrupt: safetensors could not read its tensors ({exc})."
        ) from None
    try:
        return _state_from(doc, tensors)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BundleError(
            f"The checkpoint {target} is incomplete or corrupt ({type(exc).__name__}: {exc}). "
            "Start afresh with resume=None."
        ) from None


def _state_from(doc: dict[str, Any], tensors: dict[str, torch.Tensor]) -> TrainingState:
    model = {k: tensors[f"model.{k}"] for k in doc["model_keys"]}
    best = {k: tensors[f"best.{k}"] for k in doc["model_keys"]} if doc.get("has_best") else None
    optim = doc["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for index, plain in optim["state_values"].items():
        entry = dict(plain)
        for name in optim["state_tensors"].get(index, []):
            entry[name] = tensors[f"optimizer.{index}.{name}"]
        state[int(index)] = entry
    groups = []
    for group in optim["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    np_name, np_pos, np_has_gauss, np_gauss = doc["rng"]["numpy"]
    py_version, py_gauss = doc["rng"]["python"]
    rng = {
        "torch": tensors["rng.torch"],
        "generator": tensors["rng.generator"],
        "numpy": (
            np_name,
            tensors["rng.numpy"].numpy().astype(np.uint32),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ),
        "python": (
            int(py_version),
            tuple(int(v) for v in tensors["rng.python"].tolist()),
            py_gauss,
        ),
        "cuda": [tensors[f"rng.cuda.{i}"] for i in range(int(doc["rng"]["cuda"]))],
    }
    stopping = doc["early_stopping"]
    return TrainingState(
        epoch=int(doc["epoch"]),
        stopped=bool(doc["stopped"]),
        model=model,
        optimizer={"state": state, "param_groups": groups},
        scheduler=dict(doc["scheduler"]),
        scaler=dict(doc["scaler"]),
        rng=rng,
        best_value=stopping["best_value"],
        best_epoch=int(stopping["best_epoch"]),
        bad_epochs=int(stopping["bad_epochs"]),
        best_state=best,
        history=list(doc["history"]),
        run=dict(doc["run"]),
        extra=dict(doc.get("extra") or {}),
    )
