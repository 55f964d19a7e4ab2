"""Loaders on small files written here (same formats as the originals), strict errors, and
the real files in ../shared/data when present."""

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from recarena.data import datasets
from recarena.data.filtering import apply_filters
from recarena.errors import DataFileError, UnknownNameError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def write_ml100k(root: Path, lines=None):
    d = root / "ml-100k"
    d.mkdir(parents=True)
    lines = lines or ["1\t10\t4\t881250949", "1\t20\t3\t881250950", "2\t10\t5\t881250951"]
    (d / "u.data").write_text("\n".join(lines) + "\n")
    genres = ["0"] * 19
    g1 = genres.copy()
    g1[1] = g1[5] = "1"  # Action, Comedy
    (d / "u.item").write_bytes(
        ("10|Caf\xe9 (1995)|01-Jan-1995||http://x|" + "|".join(g1) + "\n" + "20|B (1996)|01-Jan-1996||http://y|" + "|".join(genres) + "\n").encode("latin-1")
    )
    (d / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    return d


def test_ml100k_with_side_features(tmp_path):
    write_ml100k(tmp_path)
    data = datasets.load("ml-100k", tmp_path)
    assert len(data) == 3 and data.n_users == 2 and data.n_items == 2
    assert data.rating_scale == (1.0, 5.0) and data.timestamp is not None
    assert data.item_features.loc[0, "title"] == "Caf\xe9 (1995)"
    assert data.item_features.loc[0, "genres"] == "Action|Comedy"
    assert data.user_features.loc[1, "gender"] == "F"
    assert list(data.users.to_raw([0, 1])) == [1, 2]


def test_malformed_line_names_file_and_line(tmp_path):
    write_ml100k(tmp_path, ["1\t10\t4\t881250949", "1\t20\tfive\t881250950"])
    with pytest.raises(DataFileError, match=r"u\.data:2: column 'rating' must be a number, got 'five'"):
        datasets.load("ml-100k", tmp_path)
    (tmp_path / "b").mkdir()
    write_ml100k(tmp_path / "b", ["1\t10\t4\t881250949", "1\t20\t3"])
    with pytest.raises(DataFileError, match=r"u\.data:2"):
        datasets.load("ml-100k", tmp_path / "b")


def test_missing_file_says_what_to_place_where(tmp_path):
    with pytest.raises(DataFileError) as e:
        datasets.load("ml-100k", tmp_path)
    msg = str(e.value)
    assert "u.data" in msg and str(tmp_path / "ml-100k") in msg and "RECARENA_OFFLINE" in msg


def test_unknown_dataset_lists_available():
    with pytest.raises(UnknownNameError, match="ml-100k") as e:
        datasets.load("ml-100kk")
    assert "Did you mean 'ml-100k'" in str(e.value)


@pytest.mark.parametrize("with_ts", [True, False])
def test_ml1m_ratings_with_or_without_timestamp(tmp_path, with_ts):
    d = tmp_path / "ml-1m"
    d.mkdir()
    rows = ["1::1193::5", "1::661::3", "2::1193::4"]
    if with_ts:
        rows = [r + "::97830076" + str(k) for k, r in enumerate(rows)]
    (d / "ratings.dat").write_text("\n".join(rows) + "\n")
    (d / "movies.dat").write_bytes("1193::One Flew (1975)::Drama\n661::James (1996)::Animation|Children's\n".encode("latin-1"))
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    data = datasets.load("ml-1m", tmp_path)
    assert len(data) == 3 and (data.timestamp is not None) == with_ts
    assert data.item_features.set_index(data.items.raw).loc[661, "genres"] == "Animation|Children's"
    assert list(data.meta["item_first_seen"]) == [1193, 661]


def test_amazon_zip_and_plain(tmp_path):
    d = tmp_path / "amazon-musical-instruments-5core"
    d.mkdir()
    recs = [{"reviewerID": "A", "asin": "X", "overall": 5.0, "unixReviewTime": 1}, {"reviewerID": "B", "asin": "X", "overall": 3.0, "unixReviewTime": 2}]
    with zipfile.ZipFile(d / "Musical_Instruments.zip", "w") as z:
        z.writestr("Musical_Instruments.json", "\n".join(json.dumps(r) for r in recs))
    data = datasets.load("amazon-musical-instruments-5core", tmp_path)
    assert len(data) == 2 and data.n_users == 2 and data.n_items == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(recs[0]) + "\n{\"reviewerID\": \"A\"}\n")
    with pytest.raises(DataFileError, match=r"bad\.json:2"):
        datasets.load_amazon_5core(tmp_path, "bad.json")


def test_sequences(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("1 5 6 7\n2 6\n")
    data = datasets.load_sequences(p, pairs=False)
    assert len(data) == 4 and data.timestamp.tolist() == [0, 1, 2, 0]
    p.write_text("1 5\n1 x\n")
    with pytest.raises(DataFileError, match=r"s\.txt:2"):
        datasets.load_sequences(p, pairs=True)


def test_generic_csv_and_parquet_with_column_mapping(tmp_path):
    df = pd.DataFrame({"uid": ["a", "b", "a"], "iid": [1, 2, 2], "stars": [4.0, 2.0, 5.0]})
    df.to_csv(tmp_path / "r.csv", index=False)
    data = datasets.load_table(tmp_path / "r.csv", {"user": "uid", "item": "iid", "rating": "stars"})
    assert len(data) == 3 and list(data.users.raw) == ["a", "b"] and data.rating.tolist() == [4.0, 2.0, 5.0]
    df.to_parquet(tmp_path / "r.parquet")
    assert len(datasets.load_table(tmp_path / "r.parquet", {"user": "uid", "item": "iid", "rating": "stars"})) == 3
    with pytest.raises(DataFileError, match="'userid'"):
        datasets.load_table(tmp_path / "r.csv", {"user": "userid", "item": "iid"})


def test_offline_download_is_not_attempted(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(datasets, "_download", lambda *a: called.append(a))
    with pytest.raises(DataFileError):
        datasets.dataset_dir("ml-100k", tmp_path)
    assert not called


def test_download_verifies_checksum(tmp_path, monkeypatch):
    """A download whose file does not match its md5 writes nothing."""
    import io
    import urllib.request

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/u.data", "1\t2\t3\t4\n")
        z.writestr("ml-100k/u.item", "x")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=0: io.BytesIO(buf.getvalue()))
    monkeypatch.delenv("RECARENA_OFFLINE")
    with pytest.raises(DataFileError, match="Checksum mismatch for u.data"):
        datasets.dataset_dir("ml-100k", tmp_path)
    assert not (tmp_path / "ml-100k").exists()


@pytest.mark.data
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")
def test_shared_data_loads_with_known_counts():
    ml100k = datasets.load("ml-100k", SHARED)
    assert (len(ml100k), ml100k.n_users, ml100k.n_items) == (100_000, 943, 1682)
    ml1m = datasets.load("ml-1m", SHARED)
    assert (len(ml1m), ml1m.n_users, ml1m.n_items) == (1_000_209, 6040, 3706)
    f = apply_filters(ml1m, {"min_rating": 3, "user_core": 10, "item_core": 10, "implicit": True})
    assert (len(f), f.n_users, f.n_items) == (834_449, 6033, 3123)
    assert len(datasets.load("ml-latest-small", SHARED)) == 100_004
    assert datasets.load("hetrec2011-lastfm-2k", SHARED).n_users == 1892
    assert len(datasets.load("amazon-musical-instruments-5core", SHARED)) == 10_261
    assert datasets.load("sasrec-video", SHARED).n_users > 1000
    assert datasets.load("s3rec-beauty", SHARED).n_users == 22_363


def test_runs_record_the_checksums_of_the_files_they_read(tmp_path):
    import hashlib

    from recarena import runner
    from recarena.data.datasets import checksums
    from recarena.store import ResultsStore

    f = tmp_path / "mine.csv"
    f.write_text("user,item,rating\n" + "".join(f"{u},{i},{1 + (u * i) % 5}\n" for u in range(30) for i in range(12) if (u + i) % 3))
    assert checksums(str(f)) == {"mine.csv": hashlib.sha256(f.read_bytes()).hexdigest()}
    assert checksums("synthetic-2000") == {}
    s = runner.train("pop", "synthetic-rank", dataset=str(f), progress=False, log=lambda *a, **k: None)
    rec = ResultsStore().get(s["run_id"])
    assert rec["data_checksums"] == checksums(str(f)) and rec["protocol_hash"] == rec["config"]["protocol_hash"]
