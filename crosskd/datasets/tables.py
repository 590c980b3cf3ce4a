"""Reading a user's table (CSV or parquet) with clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ..exceptions import DataError

__all__ = ["read_table"]

SUFFIXES = (".csv", ".parquet", ".pq", ".tsv")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a ``.csv``, ``.tsv`` or ``.parquet`` file into a DataFrame.

    CSV and TSV files must be UTF-8 text (a UTF-8 byte-order mark is accepted) with unique column
    names in the header line.

    Raises:
        DataError: the file is missing or is a folder, has another suffix, is not UTF-8, has
            duplicate column names, cannot be parsed, or has no rows.
    """
    p = Path(path)
    if p.is_dir():
        raise DataError(
            f"Data file {str(p)!r} is a folder, not a file. Pass the path of a .csv, .tsv or "
            ".parquet file inside it."
        )
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
            sep = "\t" if suffix == ".tsv" else ","
            _check_csv_header(p, sep)
            frame = pd.read_csv(p, sep=sep, low_memory=False, encoding="utf-8-sig")
    except DataError:
        raise
    except UnicodeDecodeError as err:
        raise DataError(
            f"Could not read {str(p)!r} as {suffix[1:]}: it is not UTF-8 text (byte "
            f"{err.object[err.start : err.start + 1]!r} at position {err.start}). Save the file as "
            "UTF-8, e.g. pd.read_csv(path, encoding='latin-1').to_csv(new_path, index=False)."
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"Could not read {str(p)!r} as {suffix[1:]}: {first}") from None
    if len(frame) == 0:
        raise DataError(
            f"Data file {str(p)!r} has no rows (only a header with columns "
            f"{[str(c) for c in frame.columns][:20]})."
        )
    return frame


def _check_csv_header(path: Path, sep: str) -> None:
    """Refuse duplicate column names, which pandas would silently rename to ``name.1``."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle, delimiter=sep), None)
    if not header:
        return
    dupes = sorted({n for n in header if header.count(n) > 1 and n})
    if dupes:
        raise DataError(
            f"Data file {str(path)!r} has duplicate column names {dupes} in its header line. "
            "Give every column a unique name (pandas would rename the copies to 'name.1' and train "
            "on both)."
        )
