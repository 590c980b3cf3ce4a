"""Tabular data larger than memory: a parquet data set read in row groups, and cached teacher logits.

:class:`ParquetStream` names a parquet file, its label column and how many rows to hold at once;
``Distiller.fit(stream)`` then trains without loading the table:

1. the student's encoder is fitted on a sample (``sample_rows`` rows from row groups spread over the
   file): medians, IQRs and category vocabularies come from that sample, and categories never seen
   in it share the "unknown" index;
2. teacher logits are computed chunk by chunk and written to ``teacher-logits.npy`` (a float32
   memory-mapped array) in ``cache_dir``, next to ``teacher-logits.json`` holding the fingerprints of
   the data and of the teacher; a later run with the same file and teacher reuses them, any
   mismatch recomputes them;
3. every epoch visits the row groups in a seeded random order, ``batch_rows`` rows at a time,
   shuffled within that buffer (rows left over at the end of a buffer join the next one, so every
   row is used once per epoch).

Memory holds one buffer of rows (plus pyarrow's read buffers) and the pages of the logits file in
use, whatever the size of the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._atomic import write_json
from ..exceptions import ConfigError, DataError

__all__ = ["ParquetStream", "teacher_fingerprint"]

LOGITS_NAME = "teacher-logits.npy"
LOGITS_META = "teacher-logits.json"


class ParquetStream:
    """A parquet file read in row groups: training rows that need not fit in memory.

    Args:
        path: a ``.parquet`` file (write it with row groups of 64k-1M rows; one huge row group
            cannot be streamed).
        target: the label column; rows where it is empty are unlabelled (teacher targets only).
        columns: feature columns; None: every column but ``target``.
        batch_rows: rows held in memory at once (a shuffle buffer of whole row groups).
        sample_rows: rows used to fit the student's encoder.
        cache_dir: folder of the cached teacher logits; None: ``<path>.crosskd/`` next to the file.

    Raises:
        DataError: the file is missing, not parquet, or lacks ``target`` / ``columns``.
        ConfigError: ``batch_rows`` or ``sample_rows`` is not a positive integer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        target: str,
        columns: Sequence[str] | None = None,
        *,
        batch_rows: int = 262_144,
        sample_rows: int = 200_000,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        import pyarrow.parquet as pq

        for name, value in (("batch_rows", batch_rows), ("sample_rows", sample_rows)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(
                    f"ParquetStream {name} must be a positive integer, got {value!r}."
                )
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"ParquetStream: {str(self.path)!r} is not a file. Check the path.")
        try:
            self._file = pq.ParquetFile(self.path)
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError for non-parquet files
            raise DataError(
                f"ParquetStream: {str(self.path)!r} could not be read as parquet ({err})."
            ) from None
        names = list(self._file.schema_arrow.names)
        if target not in names:
            raise DataError(
                f"ParquetStream: target column {target!r} is not in {str(self.path)!r}; its "
                f"columns are {names[:20]}."
            )
        if columns is None:
            columns = [c for c in names if c != target]
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(
                f"ParquetStream: columns {missing[:10]} are not in {str(self.path)!r}; its columns "
                f"are {names[:20]}."
            )
        if target in columns:
            raise ConfigError(f"ParquetStream: columns must not include the target {target!r}.")
        self.target = target
        self.columns = list(columns)
        self.batch_rows = int(batch_rows)
        self.sample_rows = int(sample_rows)
        self.cache_dir = (
            Path(cache_dir)
            if cache_dir is not None
            else self.path.with_name(self.path.name + ".crosskd")
        )
        meta = self._file.metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.row_group_sizes = np.asarray(sizes, dtype=np.int64)
        self.row_group_starts = np.concatenate([[0], np.cumsum(self.row_group_sizes)[:-1]])
        self.num_rows = int(self.row_group_sizes.sum())
        if self.num_rows == 0:
            raise DataError(f"ParquetStream: {str(self.path)!r} has no rows.")

    def __repr__(self) -> str:
        return (
            f"ParquetStream({str(self.path)!r}, target={self.target!r}, rows={self.num_rows:,}, "
            f"row_groups={len(self.row_group_sizes)}, batch_rows={self.batch_rows:,})"
        )

    # ------------------------------------------------------------------ reading

    def read_row_groups(self, groups: Sequence[int], columns: Sequence[str]) -> pd.DataFrame:
        """Rows of the given row groups, in that order, as a DataFrame of ``columns``."""
        table = self._file.read_row_groups(list(groups), columns=list(columns))
        return table.to_pandas()

    def chunks(
        self, columns: Sequence[str], order: Sequence[int] | None = None
    ) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        """Yield ``(row_ids, frame)`` buffers of whole row groups of about ``batch_rows`` rows.

        Args:
            columns: the columns to read.
            order: row-group order; default file order.
        """
        order = list(range(len(self.row_group_sizes))) if order is None else list(order)
        group: list[int] = []
        rows = 0
        for g in order:
            group.append(int(g))
            rows += int(self.row_group_sizes[g])
            if rows >= self.batch_rows:
                yield self._ids(group), self.read_row_groups(group, columns)
                group, rows = [], 0
        if group:
            yield self._ids(group), self.read_row_groups(group, columns)

    def _ids(self, groups: Sequence[int]) -> np.ndarray:
        return np.concatenate(
            [
                np.arange(
                    self.row_group_starts[g], self.row_group_starts[g] + self.row_group_sizes[g]
                )
                for g in groups
            ]
        )

    def sample(self, seed: int = 0) -> pd.DataFrame:
        """About ``sample_rows`` feature rows from row groups spread evenly over the file."""
        n_groups = len(self.row_group_sizes)
        mean_size = max(1, self.num_rows // n_groups)
        take = min(n_groups, max(1, -(-self.sample_rows // mean_size)))
        groups = np.unique(np.linspace(0, n_groups - 1, take).round().astype(int))
        frame = self.read_row_groups(groups, self.columns)
        if len(frame) > self.sample_rows:
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(len(frame), self.sample_rows, replace=False))
            frame = frame.iloc[keep].reset_index(drop=True)
        return frame

    def label_counts(self) -> pd.Series:
        """Rows per label value (missing labels left out), from one pass over the target column."""
        import pyarrow.compute as pc

        totals: dict[Any, int] = {}
        for g in range(len(self.row_group_sizes)):
            column = self._file.read_row_group(g, columns=[self.target]).column(0)
            counts = pc.value_counts(column.drop_null())
            for value, count in zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
            ):
                totals[value] = totals.get(value, 0) + int(count)
        return pd.Series(totals, dtype="int64")

    # ------------------------------------------------------------------ identity

    def fingerprint(self) -> str:
        """A short hash of the file: its size, parquet footer (schema, row groups, column
        statistics) and its first and last MiB. Any rewrite of the data changes it; reading it does
        not need a pass over the rows."""
        h = hashlib.blake2b(digest_size=8)
        size = self.path.stat().st_size
        h.update(f"{size};{self.num_rows};{self.columns};{self.target};".encode())
        h.update(json.dumps(self._file.metadata.to_dict(), sort_keys=True, default=str).encode())
        with open(self.path, "rb") as handle:
            h.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            h.update(handle.read(1 << 20))
        return h.hexdigest()

    # ------------------------------------------------------------------ teacher cache

    def teacher_logits(self, teacher: Any, chunk_size: int = 65536) -> tuple[np.memmap, dict]:
        """The teacher's logits for every row, from the cache or computed chunk by chunk.

        Returns:
            ``(logits, info)``: a read-only ``(num_rows, num_classes)`` float32 memory map, and
            ``{"path", "reused", "reason"}`` describing the cache.
        """
        data_fp, teacher_fp = self.fingerprint(), teacher_fingerprint(teacher)
        k = int(teacher.info.num_classes)
        path, meta_path = self.cache_dir / LOGITS_NAME, self.cache_dir / LOGITS_META
        reason = "no cache yet"
        if path.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                meta = {}
            if meta.get("data") != data_fp:
                reason = "the data changed since the cache was written"
            elif teacher_fp is None or meta.get("teacher") != teacher_fp:
                reason = "the teacher differs from the cached one (or has no fingerprint)"
            elif meta.get("shape") != [self.num_rows, k]:
                reason = "the cached shape differs"
            else:
                values = np.load(path, mmap_mode="r")
                return values, {"path": str(path), "reused": True, "reason": "fingerprints match"}
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(self.num_rows, k))
        try:
            for ids, frame in self.chunks(self.columns):
                logits = teacher.logits(frame, batch_size=chunk_size)
                if logits.ndim != 2 or logits.shape[1] != k:
                    raise DataError(
                        f"The teacher returned logits of shape {tuple(logits.shape)} for a parquet "
                        f"chunk; expected ({len(frame)}, {k})."
                    )
                if not bool(np.isfinite(logits.numpy()).all()):
                    raise DataError(
                        f"The teacher returned non-finite logits for rows {ids[0]}..{ids[-1]} of "
                        f"{str(self.path)!r}. Check those rows for values the teacher cannot score."
                    )
                out[ids[0] : ids[-1] + 1] = logits.numpy()
            out.flush()
            del out
            os.replace(tmp, path)
        except BaseException:
            if tmp.exists():
                tmp.unlink()
            raise
        meta = {"data": data_fp, "teacher": teacher_fp, "shape": [self.num_rows, k]}
        write_json(meta_path, meta)
        return np.load(path, mmap_mode="r"), {"path": str(path), "reused": False, "reason": reason}


def teacher_fingerprint(teacher: Any) -> str | None:
    """A short hash that changes when the teacher's predictions may change, or None if unknown.

    LightGBM: the model text; a torch teacher: its class and weights; any teacher with a
    ``fingerprint()`` method: its result. Others get None, so their cached logits are never reused.
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(type(teacher).__name__.encode())
    custom = getattr(teacher, "fingerprint", None)
    if callable(custom):
        h.update(str(custom()).encode())
        return h.hexdigest()
    booster = getattr(teacher, "booster", None)
    if booster is not None and hasattr(booster, "model_to_string"):
        h.update(booster.model_to_string().encode())
        return h.hexdigest()
    module = getattr(teacher, "module", None)
    if module is not None and hasattr(module, "state_dict"):
        from ..checkpoint import tensor_fingerprint

        state = module.state_dict()
        h.update(repr(sorted(state)).encode())
        h.update(tensor_fingerprint(*state.values()).encode())
        return h.hexdigest()
    return None
