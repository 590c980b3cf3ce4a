"""Reading a user's table (CSV or parquet) with clear errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..exceptions import DataError

__all__ = ["read_table"]

SUFFIXES = (".csv", ".parquet", ".pq", ".tsv")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a ``.csv``, ``.tsv`` or ``.parquet`` file into a DataFrame.

    Raises:
        DataError: the file is missing, has another suffix, cannot be parsed, or has no rows.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Data file {str(p)!r} does not exist. Check the path.")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"Data file {str(p)!r} has suffix {suffix!r}; expected one of {', '.join(SUFFIXES)}."
        )
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(p)
        else:
            frame = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", low_memory=False)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"Could not read {str(p)!r} as {suffix[1:]}: {first}") from None
    if len(frame) == 0:
        raise DataError(f"Data file {str(p)!r} has no rows.")
    return frame
