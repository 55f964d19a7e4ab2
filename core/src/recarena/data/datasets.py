"""Dataset loaders. Layout: ``<data-dir>/<dataset>/<original file names>``.

``load(name, data_dir)`` finds the files (or downloads and checks them when online), parses
them strictly, and returns :class:`Interactions` with side features where the data has them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recarena.data.interactions import Interactions
from recarena.data.io import read_table
from recarena.errors import DataFileError, RecArenaError, UnknownNameError
from recarena.paths import file_digest

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip


@dataclass
class DatasetSpec:
    name: str
    loader: Callable[[Path], Interactions]
    required: list[str]  # files that must exist in the dataset folder
    #: other folder names this dataset is commonly stored under (e.g. a release-dated copy)
    aliases: list[str] = field(default_factory=list)
    url: str | None = None  # archive to download when online
    #: md5 of files after extraction; verified after every download
    md5: dict[str, str] = field(default_factory=dict)
    description: str = ""


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    REGISTRY[spec.name] = spec
    return spec


def default_data_dir() -> Path:
    env = os.environ.get("RECARENA_DATA_DIR")
    if env:
        return Path(env)
    from recarena.paths import home

    return home() / "data"


def dataset_dir(name: str, data_dir: Path | str | None = None, download: bool = True) -> Path:
    """The folder holding ``name``'s files, downloading them when missing and allowed."""
    spec = get_spec(name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    for cand in [spec.name, *spec.aliases]:
        d = root / cand
        if all((d / f).exists() for f in spec.required):
            return d
    target = root / spec.name
    offline = os.environ.get("RECARENA_OFFLINE", "").lower() in ("1", "true", "yes")
    if download and spec.url and not offline:
        try:
            _download(spec, target)
            return target
        except OSError as e:
            reason = f"Download from {spec.url} failed ({e})."
    else:
        reason = "Downloads are off (RECARENA_OFFLINE)." if offline else "No download source is known."
    missing = [f for f in spec.required if not (target / f).exists()]
    where = spec.url or "the dataset's publisher"
    raise DataFileError(
        f"Dataset {name!r}: file(s) {', '.join(missing)} not found in {target}. {reason} "
        f"Get them from {where} and place {', '.join(spec.required)} in {target}/ "
        f"(or point --data-dir / RECARENA_DATA_DIR at a folder that has {spec.name}/)."
    )


def _md5(path: Path) -> str:
    return file_digest(path, "md5")


def _download(spec: DatasetSpec, target: Path) -> None:
    """Fetch the archive, extract the files flat into ``target`` and verify their md5."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / Path(spec.url).name
        with urllib.request.urlopen(spec.url, timeout=30) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f)
        staged = Path(tmp) / "staged"
        staged.mkdir()
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    if info.is_dir():
                        continue
                    (staged / Path(info.filename).name).write_bytes(z.read(info))
        else:
            shutil.copy(archive, staged / archive.name)
        for fname, digest in spec.md5.items():
            got = _md5(staged / fname) if (staged / fname).exists() else "missing"
            if got != digest:
                raise DataFileError(
                    f"Checksum mismatch for {fname} from {spec.url}: expected md5 {digest}, got {got}. Nothing was written."
                )
        target.mkdir(parents=True, exist_ok=True)
        for p in staged.iterdir():
            os.replace(p, target / p.name) if p.stat().st_dev == target.stat().st_dev else shutil.move(p, target / p.name)


def get_spec(name: str) -> DatasetSpec:
    if name not in REGISTRY:
        raise UnknownNameError("dataset", name, list(REGISTRY))
    return REGISTRY[name]


def load(name: str, data_dir: Path | str | None = None, download: bool = True) -> Interactions:
    spec = get_spec(name)
    d = dataset_dir(name, data_dir, download=download)
    data = spec.loader(d)
    data.name = name
    data.meta["source"] = str(d)
    return data


# ---- MovieLens ---------------------------------------------------------------------------


def _frame_to_interactions(df, user_features=None, item_features=None, scale=None, user_key=None, item_key=None):
    data = Interactions.from_frame(df, rating="rating" if "rating" in df else None)
    if user_features is not None:
        data.user_features = user_features.set_index(user_key).reindex(data.users.raw).reset_index(drop=True)
    if item_features is not None:
        data.item_features = item_features.set_index(item_key).reindex(data.items.raw).reset_index(drop=True)
    data.rating_scale = scale
    return data


def load_ml100k(d: Path) -> Interactions:
    df = read_table(d / "u.data", "\t", ["user", "item", "rating", "timestamp"], ["user", "item", "rating", "timestamp"])
    df = df.astype({"user": np.int64, "item": np.int64, "timestamp": np.int64})
    items = read_table(
        d / "u.item", "|", ["item", "title", "release", "video_release", "url", *ML100K_GENRES],
        ["item"], encoding="latin-1",
    )
    flags = items[ML100K_GENRES].astype(int).to_numpy().astype(bool)
    items = pd.DataFrame({
        "item": items["item"].astype(np.int64),
        "title": items["title"],
        "genres": ["|".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags],
    })
    users = None
    if (d / "u.user").exists():
        users = read_table(d / "u.user", "|", ["user", "age", "gender", "occupation", "zip"], ["user", "age"])
        users["user"] = users["user"].astype(np.int64)
    return _frame_to_interactions(df, users, items, (1.0, 5.0), "user", "item")


def load_ml100k_file(d: Path, fname: str) -> pd.DataFrame:
    """One of ml-100k's predefined split files (u1.base, ua.test, ...) as raw ids."""
    df = read_table(d / fname, "\t", ["user", "item", "rating", "timestamp"], ["user", "item", "rating", "timestamp"])
    return df.astype({"user": np.int64, "item": np.int64, "timestamp": np.int64})


def load_ml1m(d: Path) -> Interactions:
    df = read_table(
        d / "ratings.dat", "::", ["user", "item", "rating", "timestamp"],
        ["user", "item", "rating", "timestamp"], optional_last=True,
    )
    df = df.astype({"user": np.int64, "item": np.int64})
    movies = read_table(d / "movies.dat", "::", ["item", "title", "genres"], ["item"], encoding="latin-1")
    movies["item"] = movies["item"].astype(np.int64)
    users = None
    if (d / "users.dat").exists():
        users = read_table(d / "users.dat", "::", ["user", "gender", "age", "occupation", "zip"], ["user", "age", "occupation"])
        users["user"] = users["user"].astype(np.int64)
    data = _frame_to_interactions(df, users, movies, (1.0, 5.0), "user", "item")
    data.meta["item_first_seen"] = pd.unique(df["item"].to_numpy())  # NCF's item numbering
    return data


def load_ml_latest(d: Path) -> Interactions:
    df = read_table(
        d / "ratings.csv", ",", ["user", "item", "rating", "timestamp"],
        ["user", "item", "rating", "timestamp"], header=True,
    )
    df = df.astype({"user": np.int64, "item": np.int64, "timestamp": np.int64})
    movies = None
    if (d / "movies.csv").exists():
        movies = pd.read_csv(d / "movies.csv").rename(columns={"movieId": "item"})
    return _frame_to_interactions(df, None, movies, (0.5, 5.0), None, "item")


# ---- other sources -------------------------------------------------------------------------


def load_hetrec_lastfm(d: Path) -> Interactions:
    """Last.fm HetRec 2011: (user, artist, play count). The count goes to ``rating``."""
    df = read_table(d / "user_artists.dat", "\t", ["user", "item", "rating"], ["user", "item", "rating"], header=True)
    df = df.astype({"user": np.int64, "item": np.int64})
    artists = None
    if (d / "artists.dat").exists():
        artists = read_table(d / "artists.dat", "\t", ["item", "title", "url", "picture"], ["item"], header=True)
        artists["item"] = artists["item"].astype(np.int64)
    return _frame_to_interactions(df, None, artists, None, None, "item")


def load_amazon_5core(d: Path, fname: str) -> Interactions:
    """Amazon 5-core review JSON lines (``reviewerID, asin, overall, unixReviewTime``), zip or plain."""
    path = d / fname
    if not path.exists():
        raise DataFileError(f"Data file {path} does not exist.")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            member = next((n for n in z.namelist() if n.endswith(".json")), None)
            if member is None:
                raise DataFileError(f"{path}: the archive holds no .json file.")
            lines = z.read(member).decode("utf-8").splitlines()
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            rows.append((r["reviewerID"], r["asin"], float(r["overall"]), int(r["unixReviewTime"])))
        except (ValueError, KeyError, TypeError) as e:
            raise DataFileError(
                f"{path}:{no}: expected a JSON object with reviewerID, asin, overall, unixReviewTime ({e!r})."
            ) from None
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return _frame_to_interactions(df, scale=(1.0, 5.0))


def load_sequences(path: Path, pairs: bool) -> Interactions:
    """SASRec (``user item`` per line, chronological) or S3-Rec (``user item item ...``) files.

    The timestamp is each item's position in its user's sequence.
    """
    if not path.exists():
        raise DataFileError(f"Data file {path} does not exist.")
    users, items = [], []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if (pairs and len(parts) != 2) or len(parts) < 2 or not all(p.isdigit() for p in parts):
                want = "two integers 'user item'" if pairs else "integers 'user item item ...'"
                raise DataFileError(f"{path}:{no}: expected {want}, got {line.strip()[:80]!r}.")
            u = int(parts[0])
            users += [u] * (len(parts) - 1)
            items += [int(p) for p in parts[1:]]
    u = np.asarray(users, np.int64)
    i = np.asarray(items, np.int64)
    order = np.argsort(u, kind="stable")
    pos = np.empty(len(u), np.int64)
    uu = u[order]
    starts = np.flatnonzero(np.r_[True, uu[1:] != uu[:-1]])
    sizes = np.diff(np.r_[starts, len(uu)])
    pos[order] = np.arange(len(uu)) - np.repeat(starts, sizes)
    df = pd.DataFrame({"user": u, "item": i, "timestamp": pos})
    return Interactions.from_frame(df, rating=None)


def load_table(
    path: Path | str,
    columns: dict[str, str] | None = None,
    sep: str | None = None,
    rating_scale: tuple[float, float] | None = None,
) -> Interactions:
    """A generic CSV/TSV/Parquet file; ``columns`` maps our names (user, item, rating,
    timestamp) to the file's column names (:func:`recarena.data.files.load_file`)."""
    from recarena.data.files import load_file

    opts: dict = dict(columns or {})
    if sep is not None:
        opts["sep"] = sep
    if rating_scale is not None:
        opts["rating_scale"] = list(rating_scale)
    return load_file(str(path), opts)


ML100K_MD5 = {"u.data": "6e47046882bad158b0efbb84cd5cb987", "u.item": "c9e7f390115d79079537301d5204f3f7", "u.user": "1b53539edc13caad0282c8500608a319", "u1.base": "4325f44281c9f8c119a3694662d63fc2", "u1.test": "62d5d837e7c8e36550cc956b09c2ecc8"}  # fmt: skip

register(DatasetSpec("ml-100k", load_ml100k, ["u.data", "u.item"], url="https://files.grouplens.org/datasets/movielens/ml-100k.zip", md5=ML100K_MD5, description="MovieLens 100K: 100,000 ratings 1-5 with timestamps, u1..u5/ua/ub splits, demographics, genres"))
register(DatasetSpec("ml-1m", load_ml1m, ["ratings.dat", "movies.dat"], url="https://files.grouplens.org/datasets/movielens/ml-1m.zip", description="MovieLens 1M: 1,000,209 ratings 1-5 (timestamp optional), demographics, genres"))
register(DatasetSpec("ml-latest-small", load_ml_latest, ["ratings.csv"], aliases=["ml-latest-small-2016"], url="https://files.grouplens.org/datasets/movielens/ml-latest-small.zip", description="MovieLens latest-small (CSV, 0.5-5 stars)"))
register(DatasetSpec("ml-latest", load_ml_latest, ["ratings.csv"], url="https://files.grouplens.org/datasets/movielens/ml-latest.zip", description="MovieLens latest full (CSV)"))
register(DatasetSpec("hetrec2011-lastfm-2k", load_hetrec_lastfm, ["user_artists.dat"], aliases=["lastfm-hetrec"], url="https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip", description="Last.fm HetRec 2011: play counts of 1,892 users"))
for _cat, _file in [("musical-instruments", "Musical_Instruments.zip")]:
    register(DatasetSpec(f"amazon-{_cat}-5core", lambda d, f=_file: load_amazon_5core(d, f), [_file], description=f"Amazon 2014 5-core reviews: {_cat}"))
register(DatasetSpec("sasrec-video", lambda d: load_sequences(d / "Video.txt", pairs=True), ["Video.txt"], aliases=["sasrec"], description="SASRec's Amazon Video Games sequences"))
for _n in ["Beauty", "Sports_and_Outdoors", "Toys_and_Games", "Yelp", "LastFM"]:
    register(DatasetSpec(f"s3rec-{_n.lower().replace('_', '-')}", lambda d, n=_n: load_sequences(d / f"{n}.txt", pairs=False), [f"{_n}.txt"], aliases=["s3rec"], description=f"S3-Rec's {_n} sequences"))


def synthetic_loader(spec: str) -> Interactions:
    """``synthetic`` or ``synthetic-<n>`` (e.g. synthetic-1e6) as a dataset name."""
    from recarena.data.synthetic import synthetic

    _, _, size = spec.partition("-")
    try:
        n = int(float(size)) if size else 20_000
    except ValueError:
        raise UnknownNameError("dataset", spec, list(REGISTRY)) from None
    data = synthetic(n)
    data.name = spec
    return data


def checksums(name: str, data_dir=None) -> dict[str, str]:
    """sha256 of each file a dataset is read from (every file of its folder; the file itself
    for a path; nothing for synthetic data), recorded with each run: what the figures were
    measured on, without keeping the data."""
    if name == "synthetic" or name.startswith("synthetic-"):
        return {}
    from recarena.data.files import is_file_dataset, resolve_source

    if is_file_dataset(name):
        files = [resolve_source(name)[0]]
    else:
        folder = dataset_dir(name, data_dir, download=False)
        spec = get_spec(name)
        # a folder several datasets share (S3-Rec's five sequences) is read for one of them:
        # its own files only; otherwise every file, since loaders read more than they require
        sharing = [sp for sp in REGISTRY.values() if folder.name in (sp.name, *sp.aliases)]
        files = ([folder / f for f in spec.required] if len(sharing) > 1
                 else sorted(f for f in folder.iterdir() if f.is_file()))
    return {f.name: file_digest(f) for f in files}


def load_any(name: str, data_dir=None, options: dict | None = None) -> Interactions:
    """Registry name, ``synthetic[-N]``, a path to a CSV/TSV/Parquet file or a dataset YAML;
    ``options``: the run's ``data`` section, for the last two only."""
    from recarena.data.files import is_file_dataset, load_file

    if is_file_dataset(name):
        return load_file(name, options)
    if options:
        raise RecArenaError(
            f"The data settings ({', '.join(sorted(options))}) say how to read your own file; dataset {name!r} "
            "is a registered one, read by its own loader. Drop them, or name a .csv/.tsv/.parquet file."
        )
    if name == "synthetic" or name.startswith("synthetic-"):
        return synthetic_loader(name)
    return load(name, data_dir)
