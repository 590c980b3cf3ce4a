"""Logits computed elsewhere (or cached from another teacher), tied to the rows they belong to.

A :class:`PrecomputedTeacher` holds one logit row per data row. Nothing in the logits themselves says
which data row they belong to, so a reordered, filtered or different DataFrame would silently get
the wrong targets. To prevent that, the teacher stores a fingerprint of the rows (a hash of their
values, order and column names, :func:`crosskd.teachers.base.fingerprint`) and checks it on every
call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exceptions import BundleError, ConfigError, DataError
from .base import Teacher, TeacherInfo, num_rows
from .base import fingerprint as row_fingerprint

__all__ = ["PrecomputedTeacher"]

_FORMAT = "crosskd.precomputed_logits"
_VERSION = 1


class PrecomputedTeacher(Teacher):
    """Fixed logits for a fixed set of rows.

    Args:
        logits: ``(n_samples, num_classes)`` (or ``(n_samples, frames, num_classes)``) array or
            tensor, or the path of a ``.npy`` or ``.parquet`` file written by :meth:`save` (or of any
            ``.npy`` file / parquet file of numeric columns; its columns are the classes).
        rows: the rows the logits were computed for (DataFrame, array, tensor); their fingerprint is
            stored and checked on every :meth:`logits` call.
        fingerprint: a fingerprint computed earlier with ``crosskd.teachers.base.fingerprint(rows)``,
            instead of ``rows``.
        classes: class labels in logit order; default the labels saved with the file, else
            ``0..num_classes-1``.

    Without ``rows``, ``fingerprint`` or a fingerprint saved with the file, only the number of rows
    is checked: the caller is then responsible for passing the same rows in the same order.

    Raises:
        DataError: the logits are not finite or not 2-D/3-D, ``rows`` has a different number of rows,
            or the fingerprints of ``rows``, ``fingerprint`` and the file disagree.
        BundleError: the file is missing, corrupt, or not a logits file.
    """

    def __init__(
        self,
        logits: np.ndarray | torch.Tensor | str | os.PathLike[str],
        rows: Any = None,
        fingerprint: str | None = None,
        classes: Sequence[Any] | None = None,
    ) -> None:
        stored_fp: str | None = None
        stored_classes: Sequence[Any] | None = None
        if isinstance(logits, (str, os.PathLike)):
            values, stored_fp, stored_classes = _load(Path(logits))
        elif torch.is_tensor(logits):
            values = logits.detach().cpu().double().numpy()
        else:
            try:
                values = np.asarray(logits, dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(
                    "PrecomputedTeacher takes logits as a numeric array, a tensor, or the path of a "
                    f".npy or .parquet file; got a {type(logits).__name__}."
                ) from None
        self._values = _check_values(values)
        n = self._values.shape[0]

        candidates = {"the file": stored_fp, "fingerprint=": fingerprint}
        if rows is not None:
            if num_rows(rows) != n:
                raise DataError(
                    f"PrecomputedTeacher has {n} logits but rows= has {num_rows(rows)} rows. Pass "
                    "the rows the logits were computed for."
                )
            candidates["rows="] = row_fingerprint(rows)
        given = {k: v for k, v in candidates.items() if v is not None}
        if len(set(given.values())) > 1:
            listed = ", ".join(f"{k} {v}" for k, v in given.items())
            raise DataError(
                f"PrecomputedTeacher: the row fingerprints disagree ({listed}), so the logits were "
                "computed for other rows than those given. Pass the rows the logits were computed "
                "for, or recompute the logits."
            )
        self.fingerprint: str | None = next(iter(given.values()), None)

        num_classes = self._values.shape[-1]
        if classes is None:
            classes = stored_classes if stored_classes is not None else range(num_classes)
        classes = tuple(c.item() if isinstance(c, np.generic) else c for c in classes)
        if len(classes) != num_classes:
            raise ConfigError(
                f"PrecomputedTeacher has {num_classes} logits per row but {len(classes)} class "
                f"labels were given ({classes!r}). Give one label per logit, in logit order."
            )
        self.info = TeacherInfo(
            num_classes=num_classes,
            classes=classes,
            kind="precomputed",
            extra={"n_rows": n, "fingerprint": self.fingerprint},
        )

    @classmethod
    def from_teacher(
        cls, teacher: Teacher, X: Any, batch_size: int | None = None
    ) -> PrecomputedTeacher:
        """Compute another teacher's logits for ``X`` once, and keep them tied to ``X``.

        Args:
            teacher: any teacher.
            X: the rows to score (the same rows must be passed to :meth:`logits` later).
            batch_size: passed to ``teacher.logits``.

        Returns:
            A teacher with ``teacher``'s logits and classes, and ``X``'s fingerprint.
        """
        out = cls(teacher.logits(X, batch_size=batch_size), rows=X, classes=teacher.info.classes)
        out.info.extra["source"] = teacher.info.kind
        return out

    def logits(self, X: Any, batch_size: int | None = None) -> torch.Tensor:
        """All stored logits, after checking that ``X`` is the rows they were computed for.

        Args:
            X: the rows the logits were computed for, in the same order.
            batch_size: ignored (nothing is computed).

        Returns:
            ``(n_samples, num_classes)`` float32 CPU tensor (a copy).

        Raises:
            DataError: ``X`` has a different number of rows, or (when a fingerprint is known) other
                values, order or columns.
        """
        n = self._values.shape[0]
        m = num_rows(X)
        if m != n:
            raise DataError(
                f"PrecomputedTeacher has {n} logits but {m} rows were given. Precomputed logits "
                "belong to the exact rows they were computed for: pass those rows, or compute "
                "logits for these rows (PrecomputedTeacher.from_teacher(teacher, X))."
            )
        if self.fingerprint is not None:
            got = row_fingerprint(X)
            if got != self.fingerprint:
                raise DataError(
                    f"These {m} rows are not the rows the precomputed logits were computed for "
                    f"(fingerprint {got}, expected {self.fingerprint}): they were reordered, "
                    "filtered, changed, or are different data. Pass the same rows in the same order "
                    "with the same columns, or recompute the logits with "
                    "PrecomputedTeacher.from_teacher(teacher, X)."
                )
        return torch.from_numpy(self._values.copy())

    def _logits(self, X: Any) -> torch.Tensor:
        return self.logits(X)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the logits with their fingerprint and class labels.

        ``.npy``: the float32 array, plus a JSON sidecar ``<path>.json`` with the fingerprint, class
        labels and shape. ``.parquet``: columns ``logit_0 .. logit_{C-1}`` (float32), with the
        fingerprint and class labels in the schema metadata (key ``crosskd``). Loading the file with
        ``PrecomputedTeacher(path)`` restores both.

        Args:
            path: a file name ending in ``.npy`` or ``.parquet``.

        Returns:
            The path written.

        Raises:
            ConfigError: another suffix, class labels that JSON cannot store, or 3-D logits to a
                parquet file.
        """
        path = Path(path)
        meta = {
            "format": _FORMAT,
            "version": _VERSION,
            "fingerprint": self.fingerprint,
            "classes": list(self.info.classes),
            "shape": list(self._values.shape),
        }
        try:
            meta_text = json.dumps(meta)
        except TypeError:
            raise ConfigError(
                f"Cannot save class labels {self.info.classes!r}: only str, int, float and bool "
                "labels can be stored. Give the teacher such classes."
            ) from None
        suffix = path.suffix.lower()
        if suffix == ".npy":
            np.save(path, self._values)
            _sidecar(path).write_text(meta_text, encoding="utf-8")
        elif suffix == ".parquet":
            if self._values.ndim != 2:
                raise ConfigError(
                    f"Parquet stores 2-D logits only; these have shape {self._values.shape}. "
                    "Save to a .npy file instead."
                )
            import pyarrow as pa
            import pyarrow.parquet as pq

            columns = {f"logit_{i}": self._values[:, i] for i in range(self._values.shape[1])}
            table = pa.table(columns).replace_schema_metadata({"crosskd": meta_text})
            pq.write_table(table, path)
        else:
            raise ConfigError(
                f"PrecomputedTeacher.save writes .npy or .parquet files; got {str(path)!r}. "
                "Use a name ending in .npy or .parquet."
            )
        return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _check_values(values: np.ndarray) -> np.ndarray:
    if values.ndim not in (2, 3) or values.shape[0] == 0 or values.shape[-1] == 0:
        hint = (
            " For a binary model's margins use crosskd.teachers.base.binary_logits_from_margin."
            if values.ndim == 1
            else ""
        )
        raise DataError(
            "Precomputed logits must have shape (n_samples, num_classes) (or (n_samples, frames, "
            f"num_classes)) with at least one row and class; got shape {values.shape}.{hint}"
        )
    finite = np.isfinite(values)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.reshape(values.shape[0], -1).all(axis=1))
        raise DataError(
            f"Precomputed logits contain {int((~finite).sum())} non-finite values (NaN or inf), in "
            f"{bad_rows.size} rows (first: row {int(bad_rows[0])}). Logits must be finite; for "
            "probabilities of exactly 0 use logits_from_proba, which clips them."
        )
    return np.ascontiguousarray(values, dtype=np.float32)


def _load(path: Path) -> tuple[np.ndarray, str | None, list[Any] | None]:
    if not path.exists():
        raise BundleError(f"Precomputed logits file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise BundleError(
                f"{str(path)!r} is not a readable .npy array ({err}). It may be truncated; save "
                "the logits again."
            ) from None
        meta = None
        side = _sidecar(path)
        if side.exists():
            try:
                meta = json.loads(side.read_text(encoding="utf-8"))
            except (ValueError, OSError) as err:
                raise BundleError(f"Cannot read the sidecar {str(side)!r}: {err}.") from None
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, ValueError, pa.ArrowException) as err:
            raise BundleError(
                f"{str(path)!r} is not a readable parquet file ({err}). It may be truncated; save "
                "the logits again."
            ) from None
        raw_meta = (table.schema.metadata or {}).get(b"crosskd")
        try:
            meta = None if raw_meta is None else json.loads(raw_meta)
        except ValueError:
            raise BundleError(f"{str(path)!r} has unreadable crosskd metadata.") from None
        names = table.column_names
        logit_cols = sorted(
            (c for c in names if c.startswith("logit_") and c[6:].isdigit()),
            key=lambda c: int(c[6:]),
        )
        chosen = logit_cols or names
        try:
            values = np.column_stack(
                [table.column(c).to_numpy(zero_copy_only=False) for c in chosen]
            ).astype(np.float64)
        except (TypeError, ValueError, pa.ArrowException):
            raise BundleError(
                f"{str(path)!r} has non-numeric columns; a logits file has one numeric column per "
                "class (logit_0, logit_1, ...)."
            ) from None
    else:
        raise BundleError(
            f"PrecomputedTeacher reads .npy or .parquet files; got {str(path)!r}. Load other "
            "formats yourself and pass the array."
        )
    if meta is None:
        return values, None, None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise BundleError(
            f"The metadata of {str(path)!r} is not crosskd precomputed-logits metadata."
        )
    shape = meta.get("shape")
    if shape is not None and list(shape) != list(values.shape):
        raise BundleError(
            f"The metadata of {str(path)!r} describes logits of shape {tuple(shape)} but the file "
            f"holds {values.shape}: the array and its metadata come from different saves. Save "
            "the logits again."
        )
    return values, meta.get("fingerprint"), meta.get("classes")
