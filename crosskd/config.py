"""Settings of ``crosskd distill``: one schema per data kind, defaults in one place, YAML files.

Each data kind (``"table"``, ``"image"``, ``"textline"``) has one settings schema, built from the
:data:`SETTINGS` below: which keys it takes and their defaults. The library pipelines
(:func:`crosskd.distill_table`, :func:`crosskd.distill_images`, :func:`crosskd.distill_textlines`),
the ``crosskd distill`` flags, their ``--help`` and config files all read them from here.

A config file is a YAML mapping whose keys are the setting names (``batch_size`` or
``batch-size``, the flag without its dashes)::

    data: transactions.csv        # required
    target: is_fraud              # required for tables
    out: run/                     # required
    drop: [transaction_id]
    temperature: 2.0
    alpha: 0.7
    hidden: [32, 16]
    epochs: 30

Rules:

- The file is read with ``yaml.safe_load``: plain values only. A tag that would build a Python
  object (``!!python/object``, ``!!python/name``, ...) is refused; nothing in the file is imported
  or executed.
- Relative paths in the file (``data``, ``test``, ``out``, ``teacher_model``) are relative to the
  folder of the config file, so a config file travels with its data.
- **Flags override the file**, the file overrides the kind's defaults (:func:`defaults`).
- Unknown keys, keys of another kind (``hidden`` for text lines), values of the wrong type and
  missing required keys are errors that say what to change (with a "did you mean" for misspelt
  keys).

Messages name settings in backticks (`` `epochs` ``); the command line shows them as flags
(``--epochs``).

:func:`save_resolved_config` writes the settings a run actually used (defaults, file and flags
merged, paths made absolute) as ``config.yaml`` next to the run's results; ``crosskd distill
run/config.yaml`` repeats the run.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._atomic import write_text
from ._device import PRECISIONS
from .exceptions import ConfigError

__all__ = [
    "KINDS",
    "SETTINGS",
    "Setting",
    "DEFAULTS",
    "KEYS",
    "REQUIRED",
    "CONFIG_NAME",
    "PRECISIONS",
    "defaults",
    "keys_of",
    "load_config",
    "resolve_settings",
    "save_resolved_config",
    "validate_settings",
]

#: File name of the resolved config written next to a run's results.
CONFIG_NAME = "config.yaml"
#: The data kinds ``crosskd distill`` reads.
KINDS = ("table", "image", "textline")
#: What each kind is called in messages.
KIND_NAMES = {"table": "tables", "image": "images", "textline": "text lines"}
#: Keys holding paths (relative ones are resolved against the config file's folder).
PATH_KEYS = ("data", "test", "out", "teacher_model")


class _Invalid(Exception):
    """A value a checker refuses (turned into a ConfigError that names the setting)."""


# ---------------------------------------------------------------------------------- checkers


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(value: Any) -> Any:
        return None if value is None else check(value)

    return checked


def _integer(value: Any, low: int | None = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid
    if low is not None and value < low:
        raise _Invalid
    return int(value)


def _auto_or(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(value: Any) -> Any:
        return "auto" if value == "auto" else check(value)

    return checked


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Invalid
    return float(value)


def _positive(value: Any) -> float:
    number = _number(value)
    if number <= 0:
        raise _Invalid
    return number


def _unit(value: Any) -> float:
    number = _number(value)
    if not 0.0 <= number <= 1.0:
        raise _Invalid
    return number


def _share_or_count(value: Any) -> int | float:
    if isinstance(value, float):
        if not 0.0 < value < 1.0:
            raise _Invalid
        return value
    return _integer(value)


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        raise _Invalid
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise _Invalid
    return [str(v) for v in value]


def _codes(value: Any) -> str | list[str]:
    """``integer_codes``: "auto", "none" (also null or []), or column names."""
    if value is None or value == []:
        return "none"
    if isinstance(value, list) and len(value) == 1 and value[0] in ("auto", "none"):
        value = value[0]  # --integer-codes auto
    if value in ("auto", "none"):
        return value
    return _names(value)


def _widths(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str):  # "32,16" as on the command line
        try:
            value = [int(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise _Invalid from None
    if not isinstance(value, (list, tuple)) or not value:
        raise _Invalid
    return [_integer(v) for v in value]


def _size(value: Any) -> list[int]:
    sizes = _widths(value)
    if len(sizes) != 2:
        raise _Invalid
    return sizes


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid
    return value


def _precision(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # YAML reads `precision: 32` as a number
    if value not in PRECISIONS:
        raise _Invalid
    return value


def _label(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise _Invalid


def _choice(*options: str) -> Callable[[Any], str]:
    def checked(value: Any) -> str:
        if value not in options:
            raise _Invalid
        return value

    return checked


# ---------------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Setting:
    """One setting of ``crosskd distill``: its key, meaning and default for each kind.

    Attributes:
        key: the name (``batch_size``); the flag is ``--batch-size``.
        expected: what a valid value is, for messages (``"a positive integer"``).
        help: what the setting does (for ``--help`` and the docs).
        defaults: ``{kind: default}``; the kinds not listed do not take the setting.
        check: returns the value normalised, or raises ``_Invalid``.
        required: kinds for which the setting must be given (no default).
    """

    key: str
    expected: str
    help: str
    defaults: Mapping[str, Any]
    check: Callable[[Any], Any] = field(repr=False)
    required: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if k in self.defaults or k in self.required)


def _all(value: Any) -> dict[str, Any]:
    return dict.fromkeys(KINDS, value)


_S = Setting
#: Every setting of every kind, in the order of ``--help`` and ``config.yaml``.
SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in [
        _S("data", "a path", "training data: a table, images or text lines", {}, _text, KINDS),
        _S("target", "a column name", "the label column", {}, _text, ("table",)),
        _S(
            "out",
            "a folder path",
            "output folder (created; must be empty or a crosskd run)",
            {},
            _text,
            KINDS,
        ),
        _S(
            "test",
            "a path or null",
            "test data of the same kind; default: a seeded hold-out",
            _all(None),
            _optional(_text),
        ),
        _S(
            "teacher_model",
            "a path or null",
            "a trained teacher to use instead of training one: a LightGBM model file (tables), the "
            "teacher.safetensors of an earlier run (images, text lines)",
            _all(None),
            _optional(_text),
        ),
        _S(
            "teacher",
            "a model name",
            "the teacher to train: lightgbm (tables), timm:NAME or auto (images, auto: a narrow "
            "timm resnet10t sized to the number and size of the images), a CRNN backbone: tiny or "
            "a timm CNN name (text lines)",
            {"table": "lightgbm", "image": "auto", "textline": "resnet18"},
            _text,
        ),
        _S(
            "student",
            "a model name",
            "the student: mlp (tables); mlp, cnn or timm:NAME (images); a CRNN backbone: tiny or a "
            "timm CNN name (text lines)",
            {"table": "mlp", "image": "mlp", "textline": "tiny"},
            _text,
        ),
        _S(
            "hidden",
            "a list of positive integers such as [32, 16]",
            "hidden layer widths of an MLP student",
            {"table": [32, 16], "image": [800, 800]},
            _widths,
        ),
        _S(
            "student_width",
            "a positive integer",
            "channels of the first stage of a tiny CRNN student backbone",
            {"textline": 7},
            _integer,
        ),
        _S(
            "head_width",
            "a positive integer",
            "width of the CRNN student's head",
            {"textline": 40},
            _integer,
        ),
        _S(
            "drop", "a list of column names", "columns to ignore, e.g. an ID", {"table": []}, _names
        ),
        _S(
            "integer_codes",
            "auto, none or a list of column names",
            "integer columns the student also reads as categories (a region, product or branch "
            "number), besides the number: auto: integer columns with 3 to 1,000 distinct values "
            "and at least 5 training rows per value",
            {"table": "auto"},
            _codes,
        ),
        _S(
            "clip",
            "a number > 0",
            "numeric columns are scaled, (value - median) / interquartile range (the standard "
            "deviation where that range is 0), and clipped to [-clip, clip]",
            {"table": 100.0},
            _positive,
        ),
        _S(
            "positive_label",
            "a label value or null",
            "the positive class of a two-class target (default: 1 / True for 0/1 or boolean "
            "labels, else the minority class)",
            {"table": None, "image": None},
            _label,
        ),
        _S(
            "temperature",
            "a number > 0 (tables, images: or auto)",
            "distillation temperature T (auto: chosen on the validation rows from 1, 2, 4, 8 "
            "with short runs, about twice the training time; tables and images)",
            {"table": 2.0, "image": 4.0, "textline": 1.0},
            _auto_or(_positive),
        ),
        _S(
            "alpha",
            "a number in [0, 1] (tables, images: or auto)",
            "weight of the distillation term (auto: chosen on the validation rows from 0.5, "
            "0.9, 1; tables and images)",
            {"table": 0.7, "image": 0.9, "textline": 0.5},
            _auto_or(_unit),
        ),
        _S(
            "method",
            "tables, images: hinton, dkd, dist, ranking or auto; text lines: frame or bag",
            "the distillation loss (docs/methods.md): Hinton's KL, DKD, DIST, pairwise ranking "
            "(two classes), or auto: Hinton, DIST or (3+ classes) Hinton on standardised logits, "
            "chosen on the validation rows (tables, images); the frame term of text lines: frame-wise KL or the blank-masked, "
            "time-averaged bag of characters",
            {"table": "hinton", "image": "hinton", "textline": "frame"},
            _choice("hinton", "dkd", "dist", "ranking", "auto", "frame", "bag"),
        ),
        _S(
            "kd_mode",
            "one of frame, sequence, both",
            "CTC distillation: frame-wise KL, the teacher's decodings as targets, or both",
            {"textline": "both"},
            _choice("frame", "sequence", "both"),
        ),
        _S(
            "mutual",
            "true or false",
            "deep mutual learning (docs/methods.md): the distilled student trains with a peer (a "
            "copy with other initial weights), each distilling from the teacher and from the "
            "other; the one with the lower validation CER is kept (twice the student's training "
            "compute; better than the student alone with its teacher on 2 of 3 line sets and "
            "level on the third in benchmarks/methods.py)",
            {"textline": True},
            _bool,
        ),
        _S(
            "epochs",
            "a positive integer or auto",
            "maximum epochs (auto: enough for 10,000 steps, 20 to 300 epochs, for images at most "
            "300,000 image passes and at least 10 epochs; ended when the validation metric stops "
            "improving)",
            {"table": "auto", "image": "auto", "textline": "auto"},
            _auto_or(_integer),
        ),
        _S(
            "teacher_epochs",
            "a positive integer or null",
            "epochs of the teacher's training (null: the same as epochs)",
            {"image": None, "textline": None},
            _optional(_integer),
        ),
        _S(
            "early_stopping",
            "a positive integer, auto or null",
            "epochs without a better validation metric before the learning rate is cut (tables, "
            "images, auto: a thirtieth of the epoch budget, at least 3; 3 cuts, then training "
            "stops) or training stops (null: never)",
            {"table": "auto", "image": "auto", "textline": None},
            _optional(_auto_or(_integer)),
        ),
        _S(
            "batch_size",
            "a positive integer or auto",
            "rows per step (auto: the largest power of two from 16 to 512 that gives at least "
            "32 steps an epoch)",
            {"table": "auto", "image": "auto", "textline": 32},
            _auto_or(_integer),
        ),
        _S(
            "threads",
            "a positive integer or auto",
            "CPU threads of torch (auto: no more than the idle cores, one for small models)",
            {"table": "auto", "image": "auto", "textline": "auto"},
            _auto_or(_integer),
        ),
        _S(
            "lr",
            "a number > 0",
            "learning rate",
            {"table": 3e-3, "image": 1e-3, "textline": 3e-3},
            _positive,
        ),
        _S(
            "warmup_epochs",
            "a number >= 0",
            "epochs of learning-rate warm-up",
            {"textline": 1.0},
            lambda v: _number(v) if _number(v) >= 0 else _fail(),
        ),
        _S(
            "test_size",
            "a number in (0, 1) or a count >= 1",
            "hold-out for testing when there is no test data",
            {"table": 0.2, "image": 0.15, "textline": 0.1},
            _share_or_count,
        ),
        _S(
            "validation_size",
            "a number in (0, 1) or a count >= 1",
            "hold-out of the training rows for early stopping and best-epoch selection",
            {"table": 0.15, "image": 0.1, "textline": 0.1},
            _share_or_count,
        ),
        _S(
            "skip_unreadable",
            "true or false",
            "leave out image files that cannot be read (listed in a warning) instead of stopping "
            "with the list of them",
            {"image": False, "textline": False},
            _bool,
        ),
        _S(
            "augment",
            "true or false (text lines: or auto)",
            "augment training batches: random shifts (images), affine jitter, blur and noise "
            "(text lines; auto: the teacher trains with and without it and the lower validation "
            "CER decides, for the students too)",
            {"image": True, "textline": "auto"},
            _auto_or(_bool),
        ),
        _S(
            "shift",
            "an integer >= 0",
            "largest random shift in pixels of augmented images",
            {"image": 2},
            lambda v: _integer(v, low=0),
        ),
        _S(
            "image_size",
            "two positive integers [H, W] or null",
            "resize images to H x W (null: they must all have one size)",
            {"image": None},
            _optional(_size),
        ),
        _S(
            "teacher_input_size",
            "two positive integers [H, W] or null",
            "the size the timm teacher reads (null: the images' size, at least 32 x 32)",
            {"image": None},
            _optional(_size),
        ),
        _S("height", "a positive integer", "line height in pixels", {"textline": 32}, _integer),
        _S(
            "channels",
            "1 (grey) or 3 (RGB)",
            "channels the lines are read with",
            {"textline": 1},
            lambda v: v if v in (1, 3) and not isinstance(v, bool) else _fail(),
        ),
        _S(
            "width",
            "a positive integer or null",
            "line width in pixels after padding (null: the widest training line)",
            {"textline": None},
            _optional(_integer),
        ),
        _S(
            "baseline",
            "true or false",
            "also train the student on labels alone, as a baseline",
            _all(True),
            _bool,
        ),
        _S(
            "choose_on_validation",
            "true or false",
            "deploy (save as student.safetensors) the baseline instead of the distilled student "
            "when the baseline scores better on the validation rows (needs `baseline`)",
            _all(True),
            _bool,
        ),
        _S(
            "latency_repeats",
            "a positive integer",
            "timed CPU calls per model (batch 1); the minimum is reported",
            _all(20),
            _integer,
        ),
        _S(
            "device",
            "a device name: auto, cpu, cuda or cuda:N",
            "where to train",
            _all("auto"),
            _text,
        ),
        _S(
            "precision",
            f"one of {', '.join(PRECISIONS)}",
            "training precision",
            _all("32"),
            _precision,
        ),
        _S(
            "seed",
            "an integer",
            "seed of splits and training",
            _all(0),
            lambda v: _integer(v, low=None),
        ),
        _S("quiet", "true or false", "no progress bars", _all(False), _bool),
    ]
}


def _fail() -> Any:
    raise _Invalid


def keys_of(kind: str) -> tuple[str, ...]:
    """The setting keys ``kind`` takes, in schema order."""
    _check_kind(kind)
    return tuple(key for key, s in SETTINGS.items() if kind in s.kinds())


def defaults(kind: str) -> dict[str, Any]:
    """A fresh copy of the defaults of ``kind`` (keys without a default, such as ``data``, left
    out)."""
    import copy

    _check_kind(kind)
    return {k: copy.deepcopy(s.defaults[kind]) for k, s in SETTINGS.items() if kind in s.defaults}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"The data kind must be one of {', '.join(KINDS)}; got {kind!r}.")


#: The table schema's defaults and keys (kept for code written before the other kinds existed).
DEFAULTS: dict[str, Any] = defaults("table")
KEYS: dict[str, str] = {k: SETTINGS[k].expected for k in keys_of("table")}
#: Keys that must be given for tables.
REQUIRED = tuple(k for k, s in SETTINGS.items() if "table" in s.required)


def _wrong(key: str, value: Any, where: str) -> ConfigError:
    expected = SETTINGS[key].expected
    if key in ("test_size", "validation_size") and isinstance(value, float):
        return ConfigError(
            f"{'' if where == 'command line' else where + ': '}`{key}` must be a number in "
            f"(0, 1), got {value!r} (or give a count of rows >= 1)."
        )
    if where == "command line":
        if expected.endswith(" or null"):  # null is for files; the flag takes the rest
            return ConfigError(f"`{key}` must be {expected[: -len(' or null')]}, got {value!r}.")
        return ConfigError(f"`{key}` must be {expected}, got {value!r}.")
    return ConfigError(
        f"{where}: `{key}` must be {expected}, got {value!r} ({type(value).__name__}). Fix it in "
        "the file or give `" + key + "` another value."
    )


def validate_settings(
    settings: Mapping[str, Any], where: str = "config", kind: str | None = None
) -> dict[str, Any]:
    """Check keys and value types of a partial settings mapping; return it normalised.

    Keys may use ``-`` or ``_`` (``batch-size`` is ``batch_size``). Missing keys are not an error
    here (see :func:`resolve_settings`).

    Args:
        settings: ``{key: value}``.
        where: where the settings come from, for messages (``"command line"``, a file name).
        kind: the data kind; None accepts the keys of every kind.

    Raises:
        ConfigError: an unknown key (with the closest known key), a key another kind takes, or a
            value of the wrong type.
    """
    known = keys_of(kind) if kind is not None else tuple(SETTINGS)
    out: dict[str, Any] = {}
    for raw_key, value in settings.items():
        if not isinstance(raw_key, str):
            raise ConfigError(f"{where}: keys must be text, got {raw_key!r}.")
        key = raw_key.strip().replace("-", "_")
        if key not in SETTINGS:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ConfigError(
                f"{where}: unknown setting {raw_key!r}.{hint} Known: "
                f"{', '.join(f'`{k}`' for k in known)}."
            )
        if key not in known:
            takers = ", ".join(KIND_NAMES[k] for k in SETTINGS[key].kinds())
            raise ConfigError(
                f"`{key}` is a setting for {takers}, but the data is read as "
                f"{KIND_NAMES[kind]}. Remove it (or give the data kind with `task`)."
            )
        if key in out:
            raise ConfigError(f"{where}: the setting `{key}` is given twice (as {raw_key!r}).")
        try:
            out[key] = SETTINGS[key].check(value)
        except _Invalid:
            if key == "drop" and isinstance(value, str):
                raise ConfigError(
                    f"{where}: `drop` must be a list of column names, got the string {value!r}. "
                    f"Write drop: [{value}]."
                ) from None
            raise _wrong(key, value, where) from None
    return out


def load_config(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Read and validate a ``crosskd distill`` config file.

    Args:
        path: a YAML (or JSON, which is YAML) file holding one mapping.
        kind: the data kind whose keys are allowed; None: the keys of any kind.

    Returns:
        The settings given in the file (no defaults added), keys normalised to ``snake_case``,
        relative paths resolved against the file's folder.

    Raises:
        ConfigError: the file is missing or not valid YAML, holds a Python object tag, is not a
            mapping, has an unknown key or a value of the wrong type.
    """
    import yaml

    source = Path(path)
    where = f"config file {str(source)!r}"
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"The config file {str(source)!r} does not exist. Check the path."
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read the config file {str(source)!r}: {err}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as err:
        raise ConfigError(
            f"{where} uses a YAML tag that would create a Python object ({err.problem}); config "
            "files hold plain values only (text, numbers, true/false, lists). Remove the tag."
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where} must hold a mapping of settings (key: value lines), got a "
            f"{type(data).__name__}."
        )
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.strip() == "task")}
    settings = validate_settings(data, where, kind)
    base = source.resolve().parent
    for key in PATH_KEYS:
        value = settings.get(key)
        if isinstance(value, str) and not os.path.isabs(os.path.expanduser(value)):
            settings[key] = str(base / value)
        elif isinstance(value, str):
            settings[key] = os.path.expanduser(value)
    return settings


def config_task(path: str | os.PathLike[str]) -> str | None:
    """The ``task`` a config file names (``table``, ``image`` or ``textline``), or None."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # load_config says what is wrong
    task = data.get("task") if isinstance(data, dict) else None
    if task is not None and task not in KINDS:
        raise ConfigError(
            f"config file {str(path)!r}: `task` must be one of {', '.join(KINDS)}, got {task!r}."
        )
    return task


def resolve_settings(
    config_path: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    kind: str = "table",
) -> dict[str, Any]:
    """The settings of a run: the kind's defaults, then the config file, then the flags given.

    Args:
        config_path: the config file, or None.
        flags: the settings given on the command line (or as keyword arguments), ``{key:
            value}``; a value of None means "not given".
        kind: the data kind.

    Returns:
        Every key of the kind's schema, validated.

    Raises:
        ConfigError: as :func:`load_config`, or a required key given neither in the file nor as a
            flag.
    """
    settings = defaults(kind)
    if config_path is not None:
        settings.update(load_config(config_path, kind))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    settings.update(validate_settings(given, "command line", kind))
    missing = [k for k, s in SETTINGS.items() if kind in s.required and settings.get(k) is None]
    if missing:
        listed = ", ".join(f"`{k}`" for k in missing)
        raise ConfigError(
            f"Missing required setting(s) {listed}: give them in the config file or on the "
            "command line."
        )
    return {k: settings[k] for k in keys_of(kind)}


def save_resolved_config(
    out_dir: str | os.PathLike[str], settings: Mapping[str, Any], kind: str = "table"
) -> Path:
    """Write the settings a run used as ``out_dir/config.yaml`` (atomically), paths absolute.

    The file is a valid config: ``crosskd distill out_dir/config.yaml`` repeats the run (it names
    its ``task``).

    Returns:
        The path written.
    """
    import yaml

    resolved = validate_settings(dict(settings), "settings", kind)
    for key in PATH_KEYS:
        if isinstance(resolved.get(key), str):
            resolved[key] = str(Path(resolved[key]).expanduser().resolve())
    ordered = {"task": kind, **{k: resolved[k] for k in keys_of(kind) if k in resolved}}
    target = Path(out_dir) / CONFIG_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Settings of this crosskd distill run (defaults, config file and flags merged).\n"
        "# Repeat it with: crosskd distill " + str(target) + "\n"
    )
    text = header + yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False)
    return write_text(target, text)
