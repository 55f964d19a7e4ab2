"""Strict readers: a malformed line is reported with its file and line number."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recarena.errors import DataFileError


def read_table(
    path: Path | str,
    sep: str,
    names: list[str],
    numeric: list[str],
    header: bool = False,
    encoding: str = "utf-8",
    optional_last: bool = False,
    text: str | None = None,
) -> pd.DataFrame:
    """Read a delimited file whose columns ``numeric`` must parse as numbers.

    ``optional_last``: the last column may be missing on every line (ml-1m ratings.dat with
    or without its timestamp). Errors name the file, the line and what was expected.
    """
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding=encoding)
        except FileNotFoundError:
            raise DataFileError(f"Data file {path} does not exist.") from None
        except UnicodeDecodeError as e:
            raise DataFileError(f"{path}: not {encoding} text ({e}).") from None
    shown_sep = sep
    if len(sep) > 1:  # the C parser only takes one-char separators; it is 10x faster
        text = text.replace(sep, "\x1f")
        sep = "\x1f"
    first = next((ln for ln in text.splitlines()[1 if header else 0 :] if ln.strip()), "")
    n_fields = len(first.split(sep))
    cols = list(names)
    if optional_last and n_fields == len(names) - 1:
        cols = names[:-1]
    elif n_fields != len(names) and first:
        raise DataFileError(
            f"{path}:{2 if header else 1}: expected {len(names)} fields ({', '.join(names)}) separated by {shown_sep!r}, got {n_fields}."
        )
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=0 if header else None,
            names=cols,
            dtype=str,
            keep_default_na=False,
            on_bad_lines="error",
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as e:
        m = re.search(r"line (\d+)", str(e))
        line = m.group(1) if m else "?"
        raise DataFileError(
            f"{path}:{line}: malformed line: expected {len(cols)} fields ({', '.join(cols)}) separated by {shown_sep!r}. ({e})"
        ) from None
    # map DataFrame rows back to file lines (blank lines are skipped by the parser)
    line_no = None
    for c in numeric:
        if c not in df.columns:
            continue
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = vals.isna().to_numpy()
        if bad.any():
            if line_no is None:
                lines = text.splitlines()
                nonblank = [k + 1 for k, ln in enumerate(lines) if ln.strip()]
                line_no = np.asarray(nonblank[1:] if header else nonblank)
            r = int(np.flatnonzero(bad)[0])
            raise DataFileError(
                f"{path}:{line_no[r]}: column {c!r} must be a number, got {df[c].iloc[r]!r}."
            )
        df[c] = vals
    return df
