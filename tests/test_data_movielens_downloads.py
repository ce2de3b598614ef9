"""MovieLens-1M and -20M read from zips written in the exact GroupLens formats."""
from __future__ import annotations

import zipfile

import pandas as pd
import pytest

from harness.data import load_dataset, prepare
from harness.data.movielens import read_ml1m_zip, read_ml20m_zip, write_ml1m_zip, write_ml20m_zip
from harness.data.preprocess import PrepConfig, preprocess

ML_CONFIG = PrepConfig(min_user_interactions=5, min_item_interactions=1)
T0 = 978_300_760

ML1M_MOVIES = [
    (1, "Toy Story (1995)", "Animation|Children's|Comedy"),
    (2, "Jumanji (1995)", "Adventure|Children's|Fantasy"),
    (73, "Misérables, Les (1995)", "Drama|Musical"),
    (4, "Waiting to Exhale (1995)", "Comedy|Drama"),
    (5, "Father of the Bride Part II (1995)", "Comedy"),
    (6, "Heat (1995)", "Action|Crime|Thriller"),
    (7, "Never Rated (1996)", "Drama"),
]
ML1M_USERS = [(u, "F" if u % 2 else "M", 25, 4 + u, f"4806{u}") for u in range(1, 5)]


def _ml1m_ratings() -> list[tuple | str]:
    """Users 1-4 rate movies 1-6 (user 4 only two: k-core drops them), a few malformed lines."""
    rows: list[tuple | str] = [(u, m, 1 + (u * m) % 5, T0 + 10 * m + u) for u in range(1, 4)
                               for m in (1, 2, 73, 4, 5, 6)]
    rows += [(4, 1, 5, T0), (4, 2, 4, T0 + 1)]
    rows += ["1::1193::5", "1::abc::5::978300760", "2::3::4::yesterday", ""]
    return rows


@pytest.fixture
def ml1m_zip(tmp_path):
    movies = ML1M_MOVIES + ["99::Broken line without genres"]
    users = ML1M_USERS + ["x::M::25::4::12345"]
    return write_ml1m_zip(tmp_path / "ml-1m.zip", _ml1m_ratings(), movies, users)


def test_ml1m_zip_layout_is_the_published_one(ml1m_zip):
    with zipfile.ZipFile(ml1m_zip) as archive:
        assert {"ml-1m/ratings.dat", "ml-1m/movies.dat", "ml-1m/users.dat"} <= set(archive.namelist())
        movies = archive.read("ml-1m/movies.dat")
        ratings = archive.read("ml-1m/ratings.dat")
        users = archive.read("ml-1m/users.dat")
    assert movies.startswith(b"1::Toy Story (1995)::Animation|Children's|Comedy\n")
    assert b"73::Mis\xe9rables, Les (1995)::Drama|Musical\n" in movies  # latin-1, as published
    assert ratings.startswith(f"1::1::2::{T0 + 11}\n".encode())
    assert users.startswith(b"1::F::25::5::48061\n")


def test_ml1m_reader(ml1m_zip):
    raw = read_ml1m_zip(ml1m_zip)
    assert raw.malformed == {"ratings.dat: wrong number of fields": 1, "ratings.dat: non-numeric MovieID": 1,
                             "ratings.dat: non-numeric Timestamp": 1, "movies.dat: wrong number of fields": 1,
                             "users.dat: non-numeric UserID": 1}
    interactions, items, users, report = preprocess(raw, ML_CONFIG)
    assert (report["n_users"], report["n_items"], report["n_interactions"]) == (3, 6, 18)
    items = items.set_index("raw_item_id")
    assert items.loc[73, "title"] == "Misérables, Les" and items.loc[73, "year"] == 1995
    assert items.loc[1, "text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert items.loc[1, "category"] == "Animation" and items.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert interactions["timestamp"].min() >= T0  # seconds
    assert list(users.columns[:2]) == ["user_id", "raw_user_id"]
    assert users.set_index("raw_user_id").loc[1, "gender"] == "F"
    assert users.set_index("raw_user_id").loc[2, "age"] == 25


ML20M_MOVIES = [
    (1, "Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
    (11, "American President, The (1995)", "Comedy|Drama|Romance"),
    (4973, "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Comedy|Romance"),
    (131260, "Rentun Ruusu (2001)", "(no genres listed)"),
    (108548, "Big Bang Theory, The (2007-)", "Comedy"),
    (27, "Babylon 5", "Sci-Fi"),
]


@pytest.fixture
def ml20m_zip(tmp_path):
    ratings: list[tuple | str] = [(u, m, 0.5 + (u + i) % 10 / 2, 1_112_486_027 + 100 * i + u)
                                  for u in (1, 2) for i, (m, _, _) in enumerate(ML20M_MOVIES)]
    ratings += ["1,2,abc,1112486027", "1,2", "3,,4.0,1112486027"]
    movies = ML20M_MOVIES + ["5,Only two fields"]
    return write_ml20m_zip(tmp_path / "ml-20m.zip", ratings, movies)


def test_ml20m_zip_layout_is_the_published_one(ml20m_zip):
    with zipfile.ZipFile(ml20m_zip) as archive:
        ratings = archive.read("ml-20m/ratings.csv").decode()
        movies = archive.read("ml-20m/movies.csv").decode("utf-8")
    assert ratings.startswith("userId,movieId,rating,timestamp\n1,1,1.0,1112486028\n1,11,1.5,")
    assert movies.startswith("movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n")
    assert '11,"American President, The (1995)",Comedy|Drama|Romance\n' in movies


def test_ml20m_reader(ml20m_zip):
    raw = read_ml20m_zip(ml20m_zip)
    assert raw.malformed == {"ratings.csv: non-numeric rating": 1, "ratings.csv: wrong number of fields": 1,
                             "ratings.csv: missing movieId": 1, "movies.csv: wrong number of fields": 1}
    interactions, items, _, report = preprocess(raw, ML_CONFIG)
    assert (report["n_users"], report["n_items"], report["n_interactions"]) == (2, 6, 12)
    assert sorted(interactions["rating"].unique().tolist())[:2] == [1.0, 1.5]
    items = items.set_index("raw_item_id")
    assert items.loc[11, "title"] == "American President, The" and items.loc[11, "year"] == 1995
    assert items.loc[4973, "title"] == "Amélie (Fabuleux destin d'Amélie Poulain, Le)"
    assert items.loc[131260, "category"] == "unknown" and items.loc[131260, "genres"] == ""
    assert items.loc[108548, "title"] == "Big Bang Theory, The" and items.loc[108548, "year"] == 2007
    assert items.loc[27, "title"] == "Babylon 5" and pd.isna(items.loc[27, "year"])
    assert items.loc[27, "text"] == "Babylon 5. Genres: Sci-Fi."


def test_truncated_zip_says_what_to_do(ml1m_zip):
    from harness.data.download import CorruptFileError

    ml1m_zip.write_bytes(ml1m_zip.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="Delete it"):
        read_ml1m_zip(ml1m_zip)


def test_not_a_movielens_zip_says_so(tmp_path):
    path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("something/else.txt", "hello")
    with pytest.raises(FileNotFoundError, match="ml-1m/ratings.dat"):
        read_ml1m_zip(path)


def test_registry_end_to_end_ml1m(ml1m_zip, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "data" / "raw" / "ml-1m"
    folder.mkdir(parents=True)
    ml1m_zip.rename(folder / "ml-1m.zip")
    meta = prepare("ml-1m", log=lambda m: None)
    assert (meta["n_users"], meta["n_items"], meta["n_interactions"]) == (3, 6, 18)
    assert meta["malformed"]["ratings.dat: wrong number of fields"] == 1
    ds = load_dataset("ml-1m")
    assert "Misérables, Les" in set(ds.items["title"]) and "gender" in ds.users
    assert prepare("ml-1m", log=lambda m: None)["skipped"]


def test_registry_end_to_end_ml20m(ml20m_zip, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "data" / "raw" / "ml-20m"
    folder.mkdir(parents=True)
    ml20m_zip.rename(folder / "ml-20m.zip")
    ds = load_dataset("ml-20m")
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (2, 6, 12)
