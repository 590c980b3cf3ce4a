"""Config files for ``crosskd distill config.yaml``: plain keys, validated, no code execution.

A config file is a YAML mapping whose keys are the ``crosskd distill`` flags without the leading
dashes (``batch_size`` or ``batch-size``)::

    data: transactions.csv        # required
    target: is_fraud              # required
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
- **Flags override the file**: ``crosskd distill config.yaml --epochs 5`` takes everything from the
  file except ``epochs``. Then the file overrides the defaults (:data:`DEFAULTS`).
- Unknown keys, values of the wrong type and missing required keys are errors that say what to
  change (with a "did you mean" for misspelt keys).

:func:`save_resolved_config` writes the settings a run actually used (defaults, file and flags
merged, paths made absolute) as ``config.yaml`` next to the run's results; ``crosskd distill
run/config.yaml`` repeats the run.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._atomic import write_text
from .exceptions import ConfigError

__all__ = [
    "DEFAULTS",
    "KEYS",
    "REQUIRED",
    "CONFIG_NAME",
    "load_config",
    "resolve_settings",
    "save_resolved_config",
    "validate_settings",
]

#: File name of the resolved config written next to a run's results.
CONFIG_NAME = "config.yaml"
#: Keys that must be given, in the file or as flags.
REQUIRED = ("data", "target", "out")
#: Keys holding paths (relative ones are resolved against the config file's folder).
PATH_KEYS = ("data", "test", "out", "teacher_model")
#: Default of every optional key (the ``crosskd distill`` flag defaults).
DEFAULTS: dict[str, Any] = {
    "test": None,
    "teacher_model": None,
    "drop": [],
    "temperature": 2.0,
    "alpha": 0.7,
    "hidden": [32, 16],
    "epochs": 30,
    "batch_size": 512,
    "test_size": 0.2,
    "device": "auto",
    "precision": "32",
    "seed": 0,
    "quiet": False,
}
PRECISIONS = ("32", "bf16-mixed", "16-mixed")

# key -> (description of the expected type, for messages)
KEYS: dict[str, str] = {
    "data": "a path to a .csv or .parquet file",
    "target": "a column name",
    "out": "a folder path",
    "test": "a path to a .csv or .parquet file, or null",
    "teacher_model": "a path to a LightGBM model file, or null",
    "drop": "a list of column names",
    "temperature": "a number > 0",
    "alpha": "a number in [0, 1]",
    "hidden": "a list of positive integers such as [32, 16]",
    "epochs": "a positive integer",
    "batch_size": "a positive integer",
    "test_size": "a number in (0, 1)",
    "device": "a device name: auto, cpu, cuda or cuda:N",
    "precision": f"one of {', '.join(PRECISIONS)}",
    "seed": "an integer",
    "quiet": "true or false",
}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _wrong(key: str, value: Any, where: str) -> ConfigError:
    if where == "command line":
        return ConfigError(
            f"{_flag(key)} must be {KEYS[key]}, got {value!r}. Pass a valid {_flag(key)}."
        )
    return ConfigError(
        f"{where}: {key} must be {KEYS[key]}, got {value!r} ({type(value).__name__}). "
        f"Fix it in the file or pass {_flag(key)}."
    )


def _check_value(key: str, value: Any, where: str) -> Any:
    """``value`` checked and normalised for ``key`` (lists for sequences, str for precision)."""
    if key in ("data", "target", "out", "device"):
        if not isinstance(value, str) or not value.strip():
            raise _wrong(key, value, where)
        return value
    if key in ("test", "teacher_model"):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise _wrong(key, value, where)
        return value
    if key == "drop":
        if isinstance(value, str):
            raise ConfigError(
                f"{where}: drop must be a list of column names, got the string {value!r}. "
                f"Write drop: [{value}]."
            )
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            raise _wrong(key, value, where)
        return [str(v) for v in value]
    if key == "hidden":
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, str):  # "32,16" as on the command line
            try:
                value = [int(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise _wrong(key, value, where) from None
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise _wrong(key, value, where)
        return [int(v) for v in value]
    if key in ("temperature", "alpha", "test_size"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong(key, value, where)
        value = float(value)
        ok = {
            "temperature": value > 0 and math.isfinite(value),
            "alpha": 0.0 <= value <= 1.0,
            "test_size": 0.0 < value < 1.0,
        }[key]
        if not ok:
            raise _wrong(key, value, where)
        return value
    if key in ("epochs", "batch_size", "seed"):
        if isinstance(value, bool) or not isinstance(value, int) or (key != "seed" and value < 1):
            raise _wrong(key, value, where)
        return int(value)
    if key == "precision":
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # YAML reads `precision: 32` as a number
        if value not in PRECISIONS:
            raise _wrong(key, value, where)
        return value
    if key == "quiet":
        if not isinstance(value, bool):
            raise _wrong(key, value, where)
        return value
    raise AssertionError(f"unhandled key {key}")  # pragma: no cover (KEYS and this agree)


def validate_settings(settings: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """Check keys and value types of a partial settings mapping; return it normalised.

    Keys may use ``-`` or ``_`` (``batch-size`` is ``batch_size``). Missing keys are not an error
    here (see :func:`resolve_settings`).

    Raises:
        ConfigError: an unknown key (with the closest known key), or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    for raw_key, value in settings.items():
        if not isinstance(raw_key, str):
            raise ConfigError(
                f"{where}: keys must be text, got {raw_key!r}. Known keys: {', '.join(KEYS)}."
            )
        key = raw_key.strip().replace("-", "_")
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where}: unknown key {raw_key!r}.{hint} Known keys: {', '.join(KEYS)}."
            )
        if key in out:
            raise ConfigError(f"{where}: the key {key!r} is given twice (as {raw_key!r}).")
        out[key] = _check_value(key, value, where)
    return out


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a ``crosskd distill`` config file.

    Args:
        path: a YAML (or JSON, which is YAML) file holding one mapping.

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
    settings = validate_settings(data, where)
    base = source.resolve().parent
    for key in PATH_KEYS:
        value = settings.get(key)
        if isinstance(value, str) and not os.path.isabs(os.path.expanduser(value)):
            settings[key] = str(base / value)
        elif isinstance(value, str):
            settings[key] = os.path.expanduser(value)
    return settings


def resolve_settings(
    config_path: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings of a run: defaults, then the config file, then the flags given (highest).

    Args:
        config_path: the config file, or None.
        flags: the flags given on the command line, ``{key: value}``; a value of None means
            "not given" (so give argparse ``default=None``).

    Returns:
        Every key of :data:`KEYS`, validated.

    Raises:
        ConfigError: as :func:`load_config`, or a required key (``data``, ``target``, ``out``)
            given neither in the file nor as a flag.
    """
    settings = dict(DEFAULTS)
    if config_path is not None:
        settings.update(load_config(config_path))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    settings.update(validate_settings(given, "command line"))
    missing = [k for k in REQUIRED if settings.get(k) is None]
    if missing:
        listed = ", ".join(f"{k!r} ({_flag(k)})" for k in missing)
        raise ConfigError(
            f"Missing required setting(s) {listed}: give them in the config file or as flags, "
            "e.g. crosskd distill config.yaml or crosskd distill --data FILE --target COLUMN "
            "--out DIR."
        )
    return settings


def save_resolved_config(out_dir: str | os.PathLike[str], settings: Mapping[str, Any]) -> Path:
    """Write the settings a run used as ``out_dir/config.yaml`` (atomically), paths absolute.

    The file is a valid config: ``crosskd distill out_dir/config.yaml`` repeats the run.

    Returns:
        The path written.
    """

    import yaml

    resolved = validate_settings(dict(settings), "settings")
    for key in PATH_KEYS:
        if isinstance(resolved.get(key), str):
            resolved[key] = str(Path(resolved[key]).expanduser().resolve())
    ordered = {k: resolved[k] for k in KEYS if k in resolved}
    target = Path(out_dir) / CONFIG_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Settings of this crosskd distill run (defaults, config file and flags merged).\n"
        "# Repeat it with: crosskd distill " + str(target) + "\n"
    )
    text = header + yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None)
    return write_text(target, text)
