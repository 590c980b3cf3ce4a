"""Saving and loading trained students as safe, self-describing bundles (no pickle anywhere).

A bundle is one ``.safetensors`` file: the student's ``state_dict`` tensors, plus, in the file's
string metadata under the key ``"crosskd"``, a JSON document::

    {"format": "crosskd-student", "format_version": 1,
     "student_class": "TabularStudent", "student_config": {...},   # student.config()
     "crosskd_version": "...", "torch_version": "...",
     "metadata": {...}}                                            # what the caller passed

Loading rebuilds the student with ``cls.from_config(student_config)`` and copies the tensors in with
``load_state_dict``. The class is looked up by name in a fixed table of crosskd student classes
(:func:`register_student` adds one); nothing in the file is ever imported or executed, so a bundle
from an untrusted source cannot run code. Files made with ``torch.save`` (pickle) are refused.

File names: :func:`save_bundle` appends ``.safetensors`` to a path that does not end with it
(``"model"`` -> ``"model.safetensors"``) and returns the path it wrote; :func:`load_bundle` reads the
path as given, or, when that does not exist, the same path with ``.safetensors`` appended.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._atomic import atomic_path
from .exceptions import BundleError, ConfigError, CrossKDError, NotFittedError
from .tabular.students import MLP, TabularStudent

__all__ = ["save_bundle", "load_bundle", "read_bundle_info", "register_student", "BUNDLE_SUFFIX"]

#: File name suffix of a bundle.
BUNDLE_SUFFIX = ".safetensors"
FORMAT = "crosskd-student"
FORMAT_VERSION = 1
_METADATA_KEY = "crosskd"
# safetensors refuses headers above 100 MB; anything bigger is not a bundle.
_MAX_HEADER_BYTES = 100_000_000

_STUDENT_CLASSES: dict[str, type[nn.Module]] = {"TabularStudent": TabularStudent, "MLP": MLP}


#: Modules whose students register themselves when imported (crosskd's own).
_BUILTIN_STUDENT_MODULES = (
    "crosskd.tabular.students",
    "crosskd.vision.students",
    "crosskd.vision.crnn",
)


def _import_builtin_students() -> None:
    import importlib

    for module in _BUILTIN_STUDENT_MODULES:
        importlib.import_module(module)


def register_student(cls: type[nn.Module]) -> type[nn.Module]:
    """Make a student class loadable by :func:`load_bundle` (usable as a class decorator).

    The class must be an ``nn.Module`` with a ``config()`` method returning a JSON-safe dict and a
    ``from_config(cfg)`` classmethod returning a module whose ``state_dict`` matches the saved one.
    It is registered under its ``__name__``, which is what bundles store.

    Raises:
        ConfigError: not such a class, or another class is registered under the same name.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"register_student expects an nn.Module subclass, got {cls!r}.")
    if not (callable(getattr(cls, "config", None)) and callable(getattr(cls, "from_config", None))):
        raise ConfigError(
            f"{cls.__name__} needs a config() method and a from_config(cfg) classmethod to be saved "
            "in a bundle."
        )
    known = _STUDENT_CLASSES.get(cls.__name__)
    if known is not None and known is not cls:
        raise ConfigError(
            f"A different student class is already registered as {cls.__name__!r} "
            f"({known.__module__}.{known.__qualname__}). Give the new class another name."
        )
    _STUDENT_CLASSES[cls.__name__] = cls
    return cls


# ---------------------------------------------------------------------------------------- save


def save_bundle(
    path: str | os.PathLike[str], student: nn.Module, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``student`` and ``metadata`` to one ``.safetensors`` file, atomically.

    The file is written to a temporary file in the same directory, flushed to disk, then renamed
    over ``path``: a crash or an error never leaves a half-written bundle, and an existing bundle at
    ``path`` stays untouched until the new one is complete. Parent directories are created.

    Args:
        path: where to write; ``.safetensors`` is appended when the name does not end with it.
        student: a built student of a registered class (``TabularStudent``, ``MLP``, or one added
            with :func:`register_student`); a ``DistributedDataParallel`` / ``torch.compile``
            wrapper is unwrapped.
        metadata: JSON-safe information to keep with the weights (temperature, class labels,
            metrics, ...). Numpy scalars and arrays, tuples and paths are converted.

    Returns:
        The path written.

    Raises:
        ConfigError: the student's class is not registered, or ``metadata`` holds something that
            cannot be stored as JSON (the message names the key).
        NotFittedError: the student has not been built.
    """
    student = _unwrap(student)
    name = type(student).__name__
    if _STUDENT_CLASSES.get(name) is not type(student):
        raise ConfigError(
            f"Cannot save a {name}: bundles store only registered student classes "
            f"({sorted(_STUDENT_CLASSES)}). Decorate the class with crosskd.io.register_student."
        )
    if getattr(student, "is_built", True) is False:
        raise NotFittedError(
            f"The {name} has not been built, so there is nothing to save. Train it with "
            "Distiller.fit, or call student.build(X, num_classes), first."
        )
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "student_class": name,
        "student_config": _json_safe(student.config(), "student_config"),
        "crosskd_version": _crosskd_version(),
        "torch_version": torch.__version__,
        "metadata": _json_safe({} if metadata is None else metadata, "metadata"),
    }
    if not isinstance(header["metadata"], dict):
        raise ConfigError(
            f"metadata must be a dict, got {type(metadata).__name__}. Pass e.g. "
            "metadata={'temperature': 4.0}."
        )
    text = json.dumps(header, allow_nan=True)
    tensors = {
        key: value.detach().to("cpu").contiguous() for key, value in student.state_dict().items()
    }

    target = Path(path)
    if not target.name.endswith(BUNDLE_SUFFIX):
        target = target.with_name(target.name + BUNDLE_SUFFIX)
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, tensors, {_METADATA_KEY: text})
    return target


def _atomic_write(target: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _unwrap(student: nn.Module) -> nn.Module:
    if not isinstance(student, nn.Module):
        raise ConfigError(
            f"save_bundle expects a torch nn.Module student, got {type(student).__name__}."
        )
    while True:
        if isinstance(student, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            student = student.module
        elif isinstance(getattr(student, "_orig_mod", None), nn.Module):  # torch.compile
            student = student._orig_mod
        else:
            return student


def _json_safe(value: Any, where: str) -> Any:
    """``value`` with numpy / torch / tuple / path values turned into plain JSON types."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, np.generic):
        return _json_safe(value.item(), where)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if value.dtype.kind not in "biuf":
            raise ConfigError(
                f"{where} is an array of dtype {value.dtype}, which cannot be stored as JSON. "
                "Convert it to a list of numbers or strings."
            )
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise ConfigError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; JSON keys must be "
                    "strings. Convert the key with str()."
                )
            out[str(key)] = _json_safe(item, f"{where}[{str(key)!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise ConfigError(
        f"{where} is a {type(value).__name__} ({value!r:.60}), which cannot be stored as JSON. "
        "Use numbers, strings, bools, None, lists and dicts with string keys."
    )


def _crosskd_version() -> str:
    import crosskd

    return str(getattr(crosskd, "__version__", "unknown"))


# ---------------------------------------------------------------------------------------- load


def read_bundle_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a bundle, without building the student.

    Returns:
        ``{"format", "format_version", "student_class", "student_config", "crosskd_version",
        "torch_version", "metadata"}``.

    Raises:
        BundleError: the file is missing, not a safetensors file, corrupt, or not a crosskd bundle.
    """
    target = _resolve(path)
    info, _ = _read(target)
    return info


def load_bundle(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a student saved with :func:`save_bundle`.

    Args:
        path: the bundle; when it does not exist and does not end with ``.safetensors``, the path
            with ``.safetensors`` appended is tried.

    Returns:
        ``(student, metadata)``: the student in eval mode on the CPU, and the ``metadata`` dict given
        to :func:`save_bundle` (the whole header is available from :func:`read_bundle_info`).

    Raises:
        BundleError: the file is missing, is not a safetensors file (a pickle / ``torch.save`` file,
            random bytes), is truncated or corrupt, lacks crosskd metadata, names an unknown student
            class, or its tensors do not match the student its config describes.
    """
    target = _resolve(path)
    info, tensors = _read(target)
    name = info["student_class"]
    cls = _STUDENT_CLASSES.get(name)
    if cls is None:
        _import_builtin_students()  # `import crosskd` is lazy: crosskd's own students register here
        cls = _STUDENT_CLASSES.get(name)
    if cls is None:
        raise BundleError(
            f"{target} holds a student of class {name!r}, which this crosskd does not know (known: "
            f"{sorted(_STUDENT_CLASSES)}). Import the module that defines it (it must call "
            "crosskd.io.register_student), or upgrade crosskd."
        )
    try:
        student = cls.from_config(info["student_config"])
    except CrossKDError as exc:
        raise BundleError(
            f"{target} has a {name} config that cannot be rebuilt: {exc} The file is corrupt or was "
            "written by an incompatible crosskd version."
        ) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(
            f"{target} has a {name} config that cannot be rebuilt ({type(exc).__name__}: {exc}). "
            "The file is corrupt or was written by an incompatible crosskd version."
        ) from exc
    _check_tensors(target, name, student.state_dict(), tensors)
    student.load_state_dict(tensors, strict=True)
    student.eval()
    return student, info["metadata"]


def _resolve(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if not target.exists() and not target.name.endswith(BUNDLE_SUFFIX):
        with_suffix = target.with_name(target.name + BUNDLE_SUFFIX)
        if with_suffix.exists():
            target = with_suffix
    if not target.exists():
        raise BundleError(
            f"No bundle at {target}: the file does not exist. Check the path (save_bundle returns "
            f"the path it wrote, ending in {BUNDLE_SUFFIX})."
        )
    if not target.is_file():
        raise BundleError(
            f"{target} is a directory, not a bundle file; pass the .safetensors file."
        )
    return target


def _read(target: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Validate the file byte by byte, then parse it; never unpickles anything."""
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise BundleError(f"Cannot read {target}: {exc.strerror or exc}.") from exc
    header = _parse_header(target, data)
    raw = header.get("__metadata__")
    if not isinstance(raw, dict) or _METADATA_KEY not in raw:
        raise BundleError(
            f"{target} is a safetensors file but not a crosskd bundle (no {_METADATA_KEY!r} "
            "metadata). Bundles are written by crosskd.io.save_bundle; raw weights can be read with "
            "safetensors.torch.load_file."
        )
    try:
        info = json.loads(raw[_METADATA_KEY])
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{target} has corrupt crosskd metadata (invalid JSON: {exc}).") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise BundleError(
            f"{target} has crosskd metadata of an unknown format "
            f"{info.get('format') if isinstance(info, dict) else None!r}; expected {FORMAT!r}."
        )
    version = info.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BundleError(
            f"{target} has an invalid format_version {version!r}; the file is corrupt."
        )
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{target} was written in bundle format version {version} (crosskd "
            f"{info.get('crosskd_version')}), newer than the {FORMAT_VERSION} this crosskd "
            f"{_crosskd_version()} reads. Upgrade crosskd."
        )
    for key in ("student_class", "student_config", "metadata"):
        if key not in info:
            raise BundleError(f"{target} crosskd metadata lacks {key!r}; the file is corrupt.")
    if not isinstance(info["student_class"], str) or not isinstance(info["metadata"], dict):
        raise BundleError(f"{target} crosskd metadata is malformed; the file is corrupt.")
    from safetensors.torch import load

    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types for bad content
        raise BundleError(
            f"{target} is corrupt: safetensors could not read its tensors ({exc}). Save the student "
            "again."
        ) from None
    return info, tensors


def _parse_header(target: Path, data: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors file, after checking that the byte layout is consistent."""
    hint = ""
    if data[:2] == b"PK" or data[:1] == b"\x80":
        hint = (
            " It looks like a pickle / torch.save file; crosskd never loads those, because unpickling "
            "can run arbitrary code. Load it only if you trust its source and re-save the student "
            "with crosskd.io.save_bundle."
        )
    not_bundle = f"{target} is not a crosskd bundle (expected a safetensors file)."
    if len(data) < 8:
        raise BundleError(
            f"{not_bundle} It has {len(data)} bytes, too few: empty or truncated.{hint}"
        )
    (size,) = struct.unpack("<Q", data[:8])
    if size < 2 or size > _MAX_HEADER_BYTES:
        raise BundleError(f"{not_bundle} Its first 8 bytes do not give a valid header size.{hint}")
    if 8 + size > len(data):
        raise BundleError(
            f"{target} is truncated or not a safetensors file: the header says {size} bytes but the "
            f"file has only {len(data) - 8} after the size field.{hint}"
        )
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BundleError(f"{not_bundle} Its header is not valid JSON.{hint}") from None
    if not isinstance(header, dict):
        raise BundleError(f"{not_bundle} Its header is not a JSON object.{hint}")
    end = 8 + size
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
        ):
            raise BundleError(f"{target} is corrupt: tensor {key!r} has no valid data offsets.")
        if 8 + size + offsets[1] > len(data):
            raise BundleError(
                f"{target} is truncated: tensor {key!r} ends at byte {8 + size + offsets[1]} but "
                f"the file has {len(data)} bytes. Save the student again."
            )
        end = max(end, 8 + size + offsets[1])
    if end != len(data):
        raise BundleError(
            f"{target} is corrupt: its tensors cover {end} bytes but the file has {len(data)}."
        )
    return header


def _check_tensors(
    target: Path, name: str, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]
) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise BundleError(
            f"{target} does not match the {name} its config describes: missing tensors "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected tensors "
            f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}. The file is corrupt or was "
            "edited."
        )
    wrong = [
        f"{key}: expected {tuple(expected[key].shape)}, found {tuple(found[key].shape)}"
        for key in expected
        if tuple(expected[key].shape) != tuple(found[key].shape)
    ]
    if wrong:
        raise BundleError(
            f"{target} does not match the {name} its config describes; tensor shapes differ: "
            f"{'; '.join(wrong[:5])}. The file is corrupt or was edited."
        )
