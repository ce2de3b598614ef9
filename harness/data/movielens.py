"""MovieLens parsers.

* ``ml-100k`` is embedded: the ``recbole==1.2.1`` wheel ships it as RecBole atomic
  files (``ml-100k.inter``, ``ml-100k.item``, ``ml-100k.user``: tab-separated with
  typed headers such as ``user_id:token``). Same 943 users, 1,682 items and 100,000
  ratings as GroupLens' ``u.data``, in the same row order.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .preprocess import RawData


def recbole_ml100k_dir() -> Path:
    """Folder of the MovieLens-100K atomic files inside the installed recbole package."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MovieLens-100K ships inside the recbole wheel, which is not installed: "
            "run ./setup.sh, or `pip install --no-deps recbole==1.2.1`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise FileNotFoundError(f"{folder}/ml-100k.inter is missing: reinstall with `pip install --no-deps --force-reinstall recbole==1.2.1`")
    return folder


def read_atomic(path: Path) -> tuple[pd.DataFrame, Counter]:
    """Read a RecBole atomic file; header fields are ``name:type``. Rows with the wrong field count are skipped."""
    malformed: Counter = Counter()
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [field.split(":")[0] for field in next(reader)]
        rows = []
        for row in reader:
            if len(row) != len(header):
                if row:
                    malformed[f"{path.name}: wrong number of fields"] += 1
                continue
            rows.append(row)
    return pd.DataFrame(rows, columns=header), malformed


def _to_int(series: pd.Series, reason: str, malformed: Counter) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        malformed[reason] += int(bad.sum())
    return values


def read_ml100k_recbole(folder: Path | None = None) -> RawData:
    folder = folder or recbole_ml100k_dir()
    inter, malformed = read_atomic(folder / "ml-100k.inter")
    users = _to_int(inter["user_id"], "non-numeric user id", malformed)
    items = _to_int(inter["item_id"], "non-numeric item id", malformed)
    ratings = _to_int(inter["rating"], "non-numeric rating", malformed)
    stamps = _to_int(inter["timestamp"], "non-numeric timestamp", malformed)
    ok = users.notna() & items.notna() & ratings.notna() & stamps.notna()
    interactions = pd.DataFrame({
        "raw_user_id": users[ok].astype(np.int64), "raw_item_id": items[ok].astype(np.int64),
        "rating": ratings[ok].astype(np.float32), "timestamp": stamps[ok].astype(np.int64)})

    meta, bad = read_atomic(folder / "ml-100k.item")
    malformed.update(bad)
    genres = meta["class"].fillna("").str.split()
    year = meta["release_year"].fillna("")
    items_meta = pd.DataFrame({
        "raw_item_id": pd.to_numeric(meta["item_id"], errors="coerce").astype("Int64"),
        "title": meta["movie_title"].fillna(""),
        "year": pd.to_numeric(year, errors="coerce").astype("Int64"),
        "genres": genres.map(lambda g: "|".join(g)),
        "category": genres.map(lambda g: g[0] if g else "unknown"),
    })
    items_meta["text"] = [
        f"{title} ({y})" if pd.notna(y) else title for title, y in zip(items_meta["title"], items_meta["year"])]
    items_meta["text"] = items_meta["text"] + ". Genres: " + genres.map(lambda g: ", ".join(g) or "unknown") + "."
    items_meta = items_meta.dropna(subset=["raw_item_id"]).astype({"raw_item_id": np.int64})

    user_meta, bad = read_atomic(folder / "ml-100k.user")
    malformed.update(bad)
    user_meta = user_meta.rename(columns={"user_id": "raw_user_id"})
    user_meta["raw_user_id"] = pd.to_numeric(user_meta["raw_user_id"], errors="coerce")
    user_meta = user_meta.dropna(subset=["raw_user_id"]).astype({"raw_user_id": np.int64})
    user_meta["age"] = pd.to_numeric(user_meta["age"], errors="coerce")
    return RawData(interactions, items_meta, user_meta, malformed,
                   {"format": "recbole atomic files", "path": str(folder)})


# =========================================================================== MovieLens-1M and -20M
#
# Read straight from the GroupLens zips (no extraction):
#
# * ml-1m.zip: ``ml-1m/ratings.dat`` ``UserID::MovieID::Rating::Timestamp`` (integer
#   ratings 1-5, seconds), ``ml-1m/movies.dat`` ``MovieID::Title::Genres`` (latin-1,
#   e.g. ``1::Toy Story (1995)::Animation|Children's|Comedy``), ``ml-1m/users.dat``
#   ``UserID::Gender::Age::Occupation::Zip-code``.
# * ml-20m.zip: ``ml-20m/ratings.csv`` (header ``userId,movieId,rating,timestamp``,
#   half-star ratings like ``3.5``, 20M rows), ``ml-20m/movies.csv`` (header
#   ``movieId,title,genres``, quoted CSV, utf-8).

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML20M_URL = "https://files.grouplens.org/datasets/movielens/ml-20m.zip"
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")  # "Title (1995)", "Show (1975-1979)"
_NO_GENRES = "(no genres listed)"


def read_ml1m_zip(path: Path) -> RawData:
    """MovieLens-1M (6,040 users, 3,706 rated of 3,883 movies, 1,000,209 ratings) from ``ml-1m.zip``.

    Lines with the wrong number of ``::`` fields or a non-numeric id, rating or
    timestamp are counted by reason and skipped.
    """
    malformed: Counter = Counter()
    with _open_zip(path) as archive:
        ratings = _read_dat(archive, "ml-1m", "ratings.dat", 4, malformed)
        movies = _read_dat(archive, "ml-1m", "movies.dat", 3, malformed)
        users = _read_dat(archive, "ml-1m", "users.dat", 5, malformed)
    frame = _numeric(pd.DataFrame(ratings, columns=["raw_user_id", "raw_item_id", "rating", "timestamp"]),
                     {"raw_user_id": "UserID", "raw_item_id": "MovieID", "rating": "Rating",
                      "timestamp": "Timestamp"}, "ratings.dat", malformed)
    interactions = frame.astype({"raw_user_id": np.int64, "raw_item_id": np.int64, "rating": np.float32,
                                 "timestamp": np.int64})
    movie_frame = pd.DataFrame(movies, columns=["raw_item_id", "title", "genres"])
    items = _movie_items(movie_frame, "movies.dat", "MovieID", malformed)
    user_frame = _numeric(pd.DataFrame(users, columns=["raw_user_id", "gender", "age", "occupation", "zip_code"]),
                          {"raw_user_id": "UserID"}, "users.dat", malformed)
    user_frame = user_frame.astype({"raw_user_id": np.int64})
    user_frame["age"] = pd.to_numeric(user_frame["age"], errors="coerce").astype("Int64")
    user_frame["occupation"] = pd.to_numeric(user_frame["occupation"], errors="coerce").astype("Int64")
    return RawData(interactions, items, user_frame, malformed, {"format": "GroupLens ml-1m.zip", "path": str(path)})


def read_ml20m_zip(path: Path) -> RawData:
    """MovieLens-20M (138,493 users, 26,744 rated of 27,278 movies, 20,000,263 ratings) from ``ml-20m.zip``.

    ``ratings.csv`` is read with pyarrow straight out of the zip (about 1 GB of RAM);
    rows with a wrong field count or a non-numeric value are counted and skipped.
    """
    from .arrowcsv import read_csv_checked

    with _open_zip(path) as archive:
        with archive.open(_member(archive, "ml-20m", "ratings.csv")) as handle:
            table, malformed = read_csv_checked(
                handle, {"userId": "int", "movieId": "int", "rating": "float", "timestamp": "int"}, "ratings.csv")
        with archive.open(_member(archive, "ml-20m", "movies.csv")) as handle:
            movies = _read_movies_csv(io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline=""),
                                      malformed)
    interactions = pd.DataFrame({
        "raw_user_id": table.column("userId").to_numpy(), "raw_item_id": table.column("movieId").to_numpy(),
        "rating": table.column("rating").to_numpy().astype(np.float32),
        "timestamp": table.column("timestamp").to_numpy()})
    items = _movie_items(movies, "movies.csv", "movieId", malformed)
    return RawData(interactions, items, None, malformed, {"format": "GroupLens ml-20m.zip", "path": str(path)})


def _open_zip(path: Path) -> zipfile.ZipFile:
    """Open a GroupLens zip; a truncated download raises :class:`CorruptFileError` saying what to do."""
    from .download import verify_zip

    verify_zip(path)
    return zipfile.ZipFile(path)


def _member(archive: zipfile.ZipFile, folder: str, name: str) -> str:
    """``folder/name`` inside the zip, tolerating a re-zipped archive with another folder name."""
    names = archive.namelist()
    if f"{folder}/{name}" in names:
        return f"{folder}/{name}"
    for candidate in names:
        if candidate == name or candidate.endswith("/" + name):
            return candidate
    raise FileNotFoundError(f"{archive.filename} has no {folder}/{name}: it is not the GroupLens {folder}.zip. "
                            f"Delete it and run `python -m harness data prepare {folder}` again.")


def _read_dat(archive: zipfile.ZipFile, folder: str, name: str, n_fields: int, malformed: Counter) -> list[list[str]]:
    """Rows of a ``::``-separated .dat file (latin-1: the ml-1m titles are not utf-8)."""
    text = archive.read(_member(archive, folder, name)).decode("latin-1")
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != n_fields:
            malformed[f"{name}: wrong number of fields"] += 1
            continue
        rows.append(fields)
    return rows


def _read_movies_csv(handle, malformed: Counter) -> pd.DataFrame:
    """``movieId,title,genres`` rows of ml-20m's quoted movies.csv."""
    reader = csv.reader(handle)
    header = next(reader, None)
    if header != ["movieId", "title", "genres"]:
        raise ValueError(f"movies.csv: expected header movieId,title,genres, found {header}: "
                         "is this the GroupLens ml-20m.zip?")
    rows = []
    for row in reader:
        if len(row) != 3:
            if row:
                malformed["movies.csv: wrong number of fields"] += 1
            continue
        rows.append(row)
    return pd.DataFrame(rows, columns=["raw_item_id", "title", "genres"])


def _numeric(frame: pd.DataFrame, columns: dict[str, str], label: str, malformed: Counter) -> pd.DataFrame:
    """Drop rows whose ``columns`` are not numeric, counting each row once (under its first bad column)."""
    ok = np.ones(len(frame), dtype=bool)
    for column, published_name in columns.items():
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ok & values.isna().to_numpy()
        if bad.any():
            malformed[f"{label}: non-numeric {published_name}"] += int(bad.sum())
        ok &= ~bad
        frame = frame.assign(**{column: values})
    return frame[ok].reset_index(drop=True)


def _movie_items(movies: pd.DataFrame, label: str, id_name: str, malformed: Counter) -> pd.DataFrame:
    """(raw_item_id, title with year, genres) -> items: title without the year, year, genres, category, text."""
    movies = _numeric(movies, {"raw_item_id": id_name}, label, malformed)
    parsed = [_split_title(t) for t in movies["title"]]
    genres = [[] if g.strip() in ("", _NO_GENRES) else g.strip().split("|") for g in movies["genres"]]
    items = pd.DataFrame({
        "raw_item_id": movies["raw_item_id"].astype(np.int64),
        "title": [t for t, _ in parsed],
        "year": pd.array([y for _, y in parsed], dtype="Int64"),
        "genres": ["|".join(g) for g in genres],
        "category": [g[0] if g else "unknown" for g in genres],
    })
    items["text"] = [f"{t} ({y}). " if y is not None else f"{t}. " for t, y in parsed]
    items["text"] += ["Genres: " + (", ".join(g) or "unknown") + "." for g in genres]
    return items


def _split_title(title: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; a title without a year keeps its text."""
    match = _TITLE_YEAR.match(title.strip())
    if match and match.group(1):
        return match.group(1), int(match.group(2))
    return title.strip(), None


# --------------------------------------------------------------------------- writers (tests)

Rows = pd.DataFrame | Iterable[tuple | list | str]


def write_ml1m_zip(path: Path, ratings: Rows, movies: Rows, users: Rows = ()) -> Path:
    """Write ``ml-1m.zip`` in the GroupLens layout: ``ml-1m/{ratings,movies,users}.dat``, ``::``-separated.

    Rows are tuples in the published field order (a DataFrame's columns in order);
    a ``str`` row is written verbatim (a malformed line). movies.dat is latin-1.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ml-1m/ratings.dat", _dat_text(ratings).encode("latin-1"))
        archive.writestr("ml-1m/movies.dat", _dat_text(movies).encode("latin-1"))
        archive.writestr("ml-1m/users.dat", _dat_text(users).encode("latin-1"))
        archive.writestr("ml-1m/README", "MovieLens 1M (test copy written by harness.data.movielens)\n")
    return Path(path)


def write_ml20m_zip(path: Path, ratings: Rows, movies: Rows) -> Path:
    """Write ``ml-20m.zip`` in the GroupLens layout: ``ml-20m/ratings.csv`` and ``ml-20m/movies.csv`` (utf-8).

    Ratings are written like ``3.5`` / ``4.0``; titles are quoted only when needed
    (``"American President, The (1995)"``). A ``str`` row is written verbatim.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ml-20m/ratings.csv", _csv_text(["userId", "movieId", "rating", "timestamp"], ratings,
                                                         float_columns=(2,)).encode("utf-8"))
        archive.writestr("ml-20m/movies.csv", _csv_text(["movieId", "title", "genres"], movies).encode("utf-8"))
        archive.writestr("ml-20m/README.txt", "MovieLens 20M (test copy written by harness.data.movielens)\n")
    return Path(path)


def _rows(rows: Rows) -> Iterable[tuple | str]:
    if isinstance(rows, pd.DataFrame):
        return rows.itertuples(index=False, name=None)
    return rows


def _dat_field(value) -> str:
    if isinstance(value, (list, tuple)):
        return "|".join(value)  # genres
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # ml-1m ratings are integers
    return str(value)


def _dat_text(rows: Rows) -> str:
    lines = [row if isinstance(row, str) else "::".join(_dat_field(v) for v in row) for row in _rows(rows)]
    return "".join(line + "\n" for line in lines)


def _csv_text(header: list[str], rows: Rows, float_columns: tuple[int, ...] = ()) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in _rows(rows):
        if isinstance(row, str):
            out.write(row + "\n")
            continue
        writer.writerow([repr(float(v)) if i in float_columns else _dat_field(v) for i, v in enumerate(row)])
    return out.getvalue()
