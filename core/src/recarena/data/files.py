"""Your own data: a CSV/TSV/Parquet file, read with a column mapping and checked line by line.

A file is named on the command line (``-d ratings.csv``) or by a dataset YAML
(``configs/datasets/<name>.yaml``, or a path to one), and the way it is read is the run
configuration's ``data`` section (``--set data.user=userId``)::

    user: userId            # column holding the user id (a name; a 0-based position without header)
    item: movieId
    rating: rating          # null: no rating column (implicit feedback)
    timestamp: timestamp    # numbers, or dates pandas can parse (stored as epoch seconds)
    sep: ","                # default: "," (".tsv"/".tab": tab)
    header: true
    rating_scale: [0.5, 5]  # ratings outside are an error; predictions are clipped to it
    implicit_threshold: 4   # keep rows rated >= 4 as positives and drop the ratings

Every problem is reported before any training, with the file and its line (CSV) or row
(Parquet): an empty or non-UTF-8 file, a missing column, a missing or non-finite value.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recarena.errors import DataFileError, RecArenaError, UnknownNameError
from recarena.params import Constraint, Interval, validate_mapping

TEXT_SUFFIXES = (".csv", ".tsv", ".tab")
PARQUET_SUFFIXES = (".parquet", ".pq")
FILE_SUFFIXES = TEXT_SUFFIXES + PARQUET_SUFFIXES
ROLES = ("user", "item", "rating", "timestamp")
_NA = {"", "nan", "NaN", "NA", "N/A", "null", "NULL", "None"}


class _Scale(Constraint):
    """Two numbers, low < high."""

    def is_satisfied_by(self, value):
        return (isinstance(value, (list, tuple)) and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
                and value[0] < value[1])

    def invalid_example(self):
        return [5, 1]

    def __str__(self):
        return "two numbers [low, high] with low < high"


_COLUMN = [str, Interval(int, 0, None)]
#: the ``data`` section's keys and what each accepts, checked like plugin parameters
DATA_CONSTRAINTS: dict[str, list] = {
    "user": _COLUMN, "item": _COLUMN, "rating": [*_COLUMN, None], "timestamp": [*_COLUMN, None],
    "sep": [str], "header": [bool], "rating_scale": [_Scale(), None], "implicit_threshold": [Interval(float, None, None), None],
}
DATASET_YAML_KEYS = {"name", "description", "path", *DATA_CONSTRAINTS}


def dataset_yaml(name: str) -> Path | None:
    """The dataset YAML ``name`` stands for: a path ending in .yaml/.yml, or
    ``configs/datasets/<name>.yaml``; None for anything else."""
    from recarena.config import find_config

    if name.endswith((".yaml", ".yml")):
        return Path(name)
    return find_config("datasets", name)


def is_file_dataset(name: str) -> bool:
    """Whether ``name`` is the user's own data (a file or a dataset YAML), not a registered dataset."""
    from recarena.data.datasets import REGISTRY

    if name in REGISTRY or name == "synthetic" or name.startswith("synthetic-"):
        return False
    return Path(name).suffix.lower() in FILE_SUFFIXES or dataset_yaml(name) is not None


def resolve_source(name: str, options: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """``(file, options)`` for a file or dataset YAML: the YAML's keys, then ``options``
    (the run's ``data`` section) over them; every value checked."""
    from recarena.config import read_yaml

    options = dict(options or {})
    for k in options:
        if k not in DATA_CONSTRAINTS:
            raise UnknownNameError("data key", k, DATA_CONSTRAINTS)
    where = "the data section (--set data.KEY=VALUE)"
    y = dataset_yaml(name) if Path(name).suffix.lower() not in FILE_SUFFIXES else None
    if y is not None:
        spec = read_yaml(y)
        for k in spec:
            if k not in DATASET_YAML_KEYS:
                raise UnknownNameError("dataset key", k, DATASET_YAML_KEYS, where=str(y))
        if "path" not in spec:
            raise RecArenaError(f"{y}: a dataset file needs 'path', the data file (relative to {y.parent}).")
        path = Path(str(spec["path"])).expanduser()
        path = path if path.is_absolute() else (y.parent / path).resolve()
        base = {k: v for k, v in spec.items() if k in DATA_CONSTRAINTS}
        validate_mapping(DATA_CONSTRAINTS, base, {k: str(y) for k in base}, owner=f"dataset {name}")
        options = {**base, **options}
        where = f"{y} or the data section"
    else:
        path = Path(name).expanduser()
    validate_mapping(DATA_CONSTRAINTS, options, {k: where for k in options}, owner="the data settings")
    return path, options


def _line_numbers(text: str, header: bool) -> np.ndarray:
    """File line number of each parsed row (blank lines are skipped by the parser)."""
    nonblank = [k + 1 for k, ln in enumerate(text.splitlines()) if ln.strip()]
    return np.asarray(nonblank[1:] if header else nonblank, dtype=np.int64)


def _read_raw(path: Path, opts: dict[str, Any]) -> tuple[pd.DataFrame, Any]:
    """The file as a frame of strings (CSV) or its own types (Parquet), and ``where(row)``
    naming a row's line (CSV) or row number (Parquet)."""
    if not path.exists():
        raise DataFileError(f"Data file {path} does not exist.")
    if path.is_dir():
        raise DataFileError(f"{path} is a folder; name a .csv, .tsv or .parquet file.")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: the file is empty (0 bytes); expected a header line and one row per interaction.")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise DataFileError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e}).") from None
        return df, lambda r: f"{path} row {r}"
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataFileError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)."
        ) from None
    header = bool(opts.get("header", True))
    sep = opts.get("sep") or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    import io

    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, header=0 if header else None, dtype=str, keep_default_na=False,
                         skip_blank_lines=True, engine="c" if len(sep) == 1 else "python")
    except pd.errors.EmptyDataError:
        raise DataFileError(f"{path}: no columns (the file holds only blank lines).") from None
    except pd.errors.ParserError as e:
        m = re.search(r"line (\d+)", str(e))
        raise DataFileError(f"{path}:{m.group(1) if m else '?'}: malformed line ({e}); separator {sep!r}.") from None
    lines = _line_numbers(text, header)
    return df, lambda r: f"{path}:{lines[r] if r < len(lines) else '?'}"


def _column(df: pd.DataFrame, role: str, col: Any, path: Path, required: bool) -> pd.Series | None:
    if col in df.columns:
        return df[col]
    if required:
        raise DataFileError(
            f"{path}: no column {col!r} for the {role} id; the file has {[str(c) for c in df.columns]}. "
            f"Map it with --set data.{role}=COLUMN (or '{role}:' in a dataset YAML)."
        )
    return None


def _ids(values: pd.Series, role: str, where) -> np.ndarray:
    """Raw ids: missing ones are an error; a text column of integers becomes int64 (ids that
    mix digits and letters, like Amazon's ASINs, stay text)."""
    if pd.api.types.is_numeric_dtype(values):
        arr = values.to_numpy(dtype=np.float64)
        bad = np.isnan(arr) | (np.mod(arr, 1) != 0)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            what = "is missing" if np.isnan(arr[r]) else f"{values.iloc[r]!r} is not an integer"
            raise DataFileError(f"{where(r)}: the {role} id {what}; {int(bad.sum())} such row(s).")
        return arr.astype(np.int64)
    text = values.astype(str).str.strip()
    missing = (values.isna() | text.isin(_NA)).to_numpy()
    if missing.any():
        r = int(np.flatnonzero(missing)[0])
        raise DataFileError(f"{where(r)}: the {role} id is missing ({values.iloc[r]!r}); {int(missing.sum())} such row(s).")
    if text.str.fullmatch(r"-?\d{1,18}").all():
        return text.astype(np.int64).to_numpy()
    return text.to_numpy(dtype=object)


def _numbers(values: pd.Series, role: str, col: Any, where, allow_dates: bool = False) -> np.ndarray:
    text = values.astype(str).str.strip() if not pd.api.types.is_numeric_dtype(values) else None
    nums = pd.to_numeric(text if text is not None else values, errors="coerce")
    if allow_dates and nums.isna().all() and text is not None and not text.isin(_NA).any():
        try:  # ISO dates and the like: epoch seconds
            return (pd.to_datetime(text).astype("int64") // 10**9).to_numpy()
        except (ValueError, TypeError):
            pass
    arr = nums.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        shown = values.iloc[r]
        what = "is missing (a line with fewer fields than the header?)" if (
            (text is not None and text.iloc[r] in _NA) or (text is None and pd.isna(shown))) else (
            f"must be a finite number, got {shown!r}")
        raise DataFileError(f"{where(r)}: column {col!r} ({role}) {what}; {int(bad.sum())} such row(s).")
    return arr


def read_frame(path: Path, opts: dict[str, Any]) -> tuple[pd.DataFrame, Any]:
    """The file as a checked frame with columns user, item[, rating][, timestamp] (raw ids),
    and the function naming a row's place in the file."""
    df, where = _read_raw(path, opts)
    header = bool(opts.get("header", True)) or path.suffix.lower() in PARQUET_SUFFIXES
    defaults = dict(zip(ROLES, ROLES)) if header else dict(zip(ROLES, range(4)))
    cols = {r: opts.get(r, defaults[r]) for r in ROLES}
    if len(df) == 0:
        raise DataFileError(f"{path}: no rows after the header (columns {[str(c) for c in df.columns]}).")
    out = pd.DataFrame({"user": _ids(_column(df, "user", cols["user"], path, True), "user", where),
                        "item": _ids(_column(df, "item", cols["item"], path, True), "item", where)})
    for role in ("rating", "timestamp"):
        if cols[role] is None:
            continue
        s = _column(df, role, cols[role], path, required=role in opts)
        if s is not None:
            v = _numbers(s, role, cols[role], where, allow_dates=role == "timestamp")
            out[role] = v if role == "rating" else v.astype(np.int64)
    scale = opts.get("rating_scale")
    if scale is not None:
        if "rating" not in out:
            raise DataFileError(f"{path}: rating_scale is set but the file has no rating column.")
        off = ((out["rating"] < scale[0]) | (out["rating"] > scale[1])).to_numpy()
        if off.any():
            r = int(np.flatnonzero(off)[0])
            raise DataFileError(f"{where(r)}: rating {out['rating'].iloc[r]:g} is outside rating_scale {list(scale)}; "
                                f"{int(off.sum())} such row(s).")
    return out, where


def load_file(name: str, options: dict[str, Any] | None = None) -> Any:
    """An :class:`~recarena.data.interactions.Interactions` from the user's file or dataset YAML."""
    from recarena.data.interactions import Interactions

    path, opts = resolve_source(name, options)
    df, _ = read_frame(path, opts)
    t = opts.get("implicit_threshold")
    if t is not None:
        if "rating" not in df:
            raise DataFileError(f"{path}: implicit_threshold is set but the file has no rating column.")
        df = df[df["rating"] >= t].drop(columns="rating")
        if len(df) == 0:
            raise DataFileError(f"{path}: no row has a rating >= implicit_threshold {t:g}.")
    data = Interactions.from_frame(df, rating="rating" if "rating" in df else None)
    scale = opts.get("rating_scale")
    data.rating_scale = tuple(float(x) for x in scale) if scale is not None and "rating" in df else None
    # a dataset YAML found by name keeps the name; a path is known by its file's stem
    data.name = Path(name).stem if Path(name).suffix else name
    return data


def inspect(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``load_file`` would load, summarised: rows, users, items, rating range,
    duplicate (user, item) rows, time span."""
    path, opts = resolve_source(name, options)
    df, _ = read_frame(path, opts)
    out: dict[str, Any] = {
        "file": str(path), "rows": len(df), "users": int(df["user"].nunique()), "items": int(df["item"].nunique()),
        "columns": {r: opts.get(r, r) for r in ROLES if r in df},
        "duplicates": int(df.duplicated(["user", "item"]).sum()),
    }
    out["density"] = out["rows"] / max(1, out["users"] * out["items"])
    if "rating" in df:
        r = df["rating"]
        out["rating"] = {"min": float(r.min()), "max": float(r.max()), "mean": float(r.mean()),
                         "distinct": int(r.nunique())}
    if "timestamp" in df:
        ts = df["timestamp"]
        out["time"] = {"min": int(ts.min()), "max": int(ts.max())}
    t = opts.get("implicit_threshold")
    if t is not None and "rating" in df:
        out["kept_by_implicit_threshold"] = int((df["rating"] >= t).sum())
    return out


def format_inspect(info: dict[str, Any]) -> str:
    lines = [f"{info['file']}: {info['rows']:,} rows, {info['users']:,} users, {info['items']:,} items "
             f"(density {info['density']:.4%})",
             "  columns: " + ", ".join(f"{k} <- {v!r}" for k, v in info["columns"].items())]
    if "rating" in info:
        r = info["rating"]
        lines.append(f"  ratings: {r['min']:g} to {r['max']:g}, mean {r['mean']:.3f}, {r['distinct']} distinct values")
    else:
        lines.append("  ratings: none (implicit feedback)")
    if "time" in info:
        t = info["time"]
        span = ""
        if t["min"] > 10**8:  # epoch seconds: show dates
            fmt = lambda s: pd.Timestamp(s, unit="s").strftime("%Y-%m-%d")  # noqa: E731
            span = f" ({fmt(t['min'])} to {fmt(t['max'])})"
        lines.append(f"  time: {t['min']} to {t['max']}{span}")
    else:
        lines.append("  time: no timestamp column")
    d = info["duplicates"]
    lines.append(f"  duplicates: {d:,} repeated (user, item) row(s)" + (
        " (the protocol's `duplicates:` rule decides what happens to them; default keep)" if d else ""))
    if "kept_by_implicit_threshold" in info:
        lines.append(f"  implicit_threshold keeps {info['kept_by_implicit_threshold']:,} rows")
    return "\n".join(lines)
