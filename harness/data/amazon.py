"""Amazon Reviews 2023 (McAuley lab, UCSD): one category, Electronics by default.

Three published files per category (``BASE_URL`` = datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023):

* ``benchmark/5core/rating_only/<Category>.csv.gz``: the official 5-core benchmark,
  gzip CSV with header ``user_id,parent_asin,rating,timestamp`` (rating like ``5.0``,
  timestamp in **milliseconds**). Electronics: 15.5M ratings.
* ``raw/review_categories/<Category>.jsonl.gz``: every review, one JSON object a line::

      {"rating": 5.0, "title": "...", "text": "...", "images": [], "asin": "B00YQ6X8EO",
       "parent_asin": "B00YQ6X8EO", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ",
       "timestamp": 1588687728923, "helpful_vote": 0, "verified_purchase": true}

* ``raw/meta_categories/meta_<Category>.jsonl.gz``: item metadata, one JSON object a line::

      {"main_category": "All Electronics", "title": "...", "average_rating": 4.5,
       "rating_number": 1234, "features": ["..."], "description": ["..."],
       "price": 19.99 | "None" | null, "images": [{"thumb": ..., "large": ..., "variant": "MAIN",
       "hi_res": ...}], "videos": [], "store": "Brand", "categories": ["Electronics", "...", ...],
       "details": {"Brand": "..."}, "parent_asin": "B01CUPMQZE", "bought_together": null}

Items are keyed by ``parent_asin`` (``asin`` names one variant of a product; the
benchmark and the metadata both use ``parent_asin``). Timestamps stay in
milliseconds in :class:`RawData` (``timestamp_unit="ms"``) so that two reviews in
the same second are still ordered; the processed schema stores seconds.
"""
from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from ..paths import display_path
from .arrowcsv import arrow_to_pandas, read_csv_checked
from .download import CorruptFileError
from .preprocess import RawData

BASE_URL = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023"
DEFAULT_CATEGORY = "Electronics"
RATINGS_HEADER = ("user_id", "parent_asin", "rating", "timestamp")
# The "laptop" preset: 5% of users (Electronics 5-core: ~80k of 1.6M users, ~0.8M ratings before
# the 5-core is applied again).
LAPTOP_FRACTION = 0.05
TEXT_LIMIT = 1_500  # characters of item text: enough for a sentence encoder, bounded for memory
_CHUNK_ROWS = 500_000  # reviews parsed into Python objects before they move to Arrow


def ratings_5core_url(category: str = DEFAULT_CATEGORY) -> str:
    return f"{BASE_URL}/benchmark/5core/rating_only/{category}.csv.gz"


def reviews_url(category: str = DEFAULT_CATEGORY) -> str:
    return f"{BASE_URL}/raw/review_categories/{category}.jsonl.gz"


def meta_url(category: str = DEFAULT_CATEGORY) -> str:
    return f"{BASE_URL}/raw/meta_categories/meta_{category}.jsonl.gz"


RATINGS_5CORE_URL = ratings_5core_url()
REVIEWS_URL = reviews_url()
META_URL = meta_url()


# --------------------------------------------------------------------------- sampling

def user_sample_mask(user_ids, fraction: float) -> np.ndarray:
    """True for the users in a deterministic ``fraction`` sample.

    Uses pandas' SipHash with its fixed key (not Python's per-process salted ``hash``),
    so the same users are drawn on every run, machine, and by both readers.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"sample_fraction must be in (0, 1], got {fraction}")
    values = pd.Series(np.asarray(user_ids, dtype=object))
    hashes = pd.util.hash_pandas_object(values, index=False).to_numpy()
    return hashes % 10_000 < round(fraction * 10_000)


def _sample_rows(users: pa.ChunkedArray | pa.Array, fraction: float) -> pa.Array:
    """Row mask of the sampled users; hashes each distinct user once (1.6M, not 15.5M, strings)."""
    codes, uniques = pd.factorize(pd.Series(users, dtype=pd.StringDtype("pyarrow")))
    return pa.array(user_sample_mask(uniques, fraction)[codes])


# --------------------------------------------------------------------------- 5-core ratings CSV

def read_amazon_5core(ratings_csv_gz: Path, meta_jsonl_gz: Path, sample_fraction: float | None = None) -> RawData:
    """The official 5-core benchmark ratings plus item metadata.

    Reads with pyarrow (multi-threaded, ids stay Arrow strings): the 15.5M Electronics
    ratings take about 1 GB. Rows with a wrong field count, an empty id, or a
    non-numeric rating/timestamp are counted and skipped.
    """
    table, malformed = read_csv_checked(
        ratings_csv_gz, {"user_id": "str", "parent_asin": "str", "rating": "float", "timestamp": "int"},
        "ratings csv")
    if sample_fraction is not None:
        table = table.filter(_sample_rows(table.column("user_id"), sample_fraction))
    return _with_metadata(table, meta_jsonl_gz, malformed,
                          {"format": "Amazon Reviews 2023, 5-core rating_only CSV + metadata JSONL",
                           "ratings": str(ratings_csv_gz), "meta": str(meta_jsonl_gz),
                           "sample_fraction": sample_fraction})


def _with_metadata(table: pa.Table, meta_jsonl_gz: Path, malformed: Counter, source: dict) -> RawData:
    """RawData from the interaction table plus the metadata of the items it mentions."""
    interactions = _interaction_frame(table)
    wanted = set(pc.unique(table.column("parent_asin")).to_pylist())
    items, bad = read_amazon_meta(meta_jsonl_gz, wanted)
    malformed.update(bad)
    return RawData(interactions, items, None, malformed, source, timestamp_unit="ms")


def _interaction_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow (user_id, parent_asin, rating, timestamp) -> RawData.interactions, ids kept Arrow-backed."""
    table = pa.table({"raw_user_id": table.column("user_id"), "raw_item_id": table.column("parent_asin"),
                      "rating": table.column("rating").cast(pa.float32()),
                      "timestamp": table.column("timestamp").cast(pa.int64())})
    return arrow_to_pandas(table)


# --------------------------------------------------------------------------- raw reviews JSONL

def read_amazon_raw(reviews_jsonl_gz: Path, meta_jsonl_gz: Path, sample_fraction: float | None = None) -> RawData:
    """Every review (not 5-core filtered), streamed line by line, plus item metadata.

    A line is skipped and counted when it is not valid JSON, not an object, lacks
    ``user_id`` / ``parent_asin`` / ``timestamp`` / ``rating``, or has a non-numeric
    rating or timestamp. Parsed rows move to Arrow every ``_CHUNK_ROWS`` lines, so
    memory holds compact columns, not Python objects (Electronics: 43.9M reviews).
    """
    malformed: Counter = Counter()
    chunks: list[pa.Table] = []
    rows: tuple[list, list, list, list] = ([], [], [], [])
    for line in jsonl_lines(reviews_jsonl_gz):
        parsed = _parse_review(line)
        if isinstance(parsed, str):
            malformed[f"reviews: {parsed}"] += 1
            continue
        for column, value in zip(rows, parsed):
            column.append(value)
        if len(rows[0]) >= _CHUNK_ROWS:
            chunks.append(_review_chunk(rows, sample_fraction))
            rows = ([], [], [], [])
    chunks.append(_review_chunk(rows, sample_fraction))
    table = pa.concat_tables(chunks)
    del chunks
    return _with_metadata(table, meta_jsonl_gz, malformed,
                          {"format": "Amazon Reviews 2023, raw review JSONL + metadata JSONL",
                           "reviews": str(reviews_jsonl_gz), "meta": str(meta_jsonl_gz),
                           "sample_fraction": sample_fraction})


def jsonl_lines(path: Path) -> Iterator[str]:
    """Non-blank lines of a gzip JSONL file; a truncated or non-gzip file raises :class:`CorruptFileError`."""
    try:
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.strip():
                    yield line
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise CorruptFileError(f"{display_path(Path(path))} is truncated or not gzip ({exc}): delete it and run "
                               "`python -m harness data prepare` again to download it afresh") from exc


def _parse_review(line: str) -> tuple[str, str, float, int] | str:
    """(user_id, parent_asin, rating, timestamp ms) of one JSONL line, or the reason it is unusable."""
    try:
        record = json.loads(line)
    except ValueError:
        return "invalid JSON"
    if not isinstance(record, dict):
        return "not a JSON object"
    user, item = record.get("user_id"), record.get("parent_asin")
    if not isinstance(user, str) or not user:
        return "missing user_id"
    if not isinstance(item, str) or not item:
        return "missing parent_asin"
    if record.get("timestamp") is None:
        return "missing timestamp"
    stamp = _number(record["timestamp"])
    if stamp is None:
        return "non-numeric timestamp"
    if record.get("rating") is None:
        return "missing rating"
    rating = _number(record["rating"])
    if rating is None:
        return "non-numeric rating"
    return user, item, rating, int(stamp)


def _number(value) -> float | None:
    """A finite number from a JSON number or numeric string; None otherwise (bools are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _review_chunk(rows: tuple[list, list, list, list], sample_fraction: float | None) -> pa.Table:
    users, items, ratings, stamps = rows
    table = pa.table({"user_id": pa.array(users, pa.string()), "parent_asin": pa.array(items, pa.string()),
                      "rating": pa.array(ratings, pa.float32()), "timestamp": pa.array(stamps, pa.int64())})
    if sample_fraction is not None and table.num_rows:
        table = table.filter(pa.array(user_sample_mask(users, sample_fraction)))
    return table


# --------------------------------------------------------------------------- metadata JSONL

_PARENT_ASIN = re.compile(r'"parent_asin"\s*:\s*"([^"\\]*)"')
_PRICE_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")
ITEM_COLUMNS = ("raw_item_id", "title", "text", "category", "main_category", "store", "price",
                "average_rating", "rating_number")


def read_amazon_meta(meta_jsonl_gz: Path, wanted: set[str] | None = None) -> tuple[pd.DataFrame, Counter]:
    """Item table (``ITEM_COLUMNS``) of the items in ``wanted`` (all when None), and skipped-line counts.

    Streams the file. A cheap regex finds each line's ``parent_asin`` first, so lines
    of unwanted items are skipped without JSON parsing: the Electronics metadata has
    1.6M items, a 5% user sample needs a small part of them. A line counts as
    malformed (``meta: invalid JSON`` / ``meta: missing parent_asin``) when it is
    wanted or cannot be attributed to an item.
    """
    malformed: Counter = Counter()
    records = []
    for line in jsonl_lines(meta_jsonl_gz):
        if wanted is not None:
            ids = _PARENT_ASIN.findall(line)
            if ids and not any(i in wanted for i in ids):
                continue
        try:
            record = json.loads(line)
        except ValueError:
            malformed["meta: invalid JSON"] += 1
            continue
        item = record.get("parent_asin") if isinstance(record, dict) else None
        if not isinstance(item, str) or not item:
            malformed["meta: missing parent_asin"] += 1
            continue
        if wanted is None or item in wanted:
            records.append(item_row(record))
    frame = pd.DataFrame.from_records(records, columns=list(ITEM_COLUMNS))
    frame = frame.astype({"price": np.float64, "average_rating": np.float64, "rating_number": np.float64})
    return frame, malformed


def item_row(record: dict) -> dict:
    """One metadata record -> a row of the item table (``ITEM_COLUMNS``)."""
    title = _text(record.get("title"))
    categories = _strings(record.get("categories"))
    main_category = _text(record.get("main_category"))
    category = categories[1] if len(categories) >= 2 else (main_category or "unknown")
    return {
        "raw_item_id": record["parent_asin"], "title": title,
        "text": item_text(title, categories or ([main_category] if main_category else []),
                          _strings(record.get("features")), _strings(record.get("description"))),
        "category": category, "main_category": main_category, "store": _text(record.get("store")),
        "price": parse_price(record.get("price")), "average_rating": _number(record.get("average_rating")),
        "rating_number": _number(record.get("rating_number")),
    }


def item_text(title: str, categories: list[str], features: list[str], description: list[str],
              limit: int = TEXT_LIMIT) -> str:
    """``"Title. Category: A > B > C. Features: f1; f2. Description: d1 d2"``, cut to ``limit`` characters."""
    parts = [title.strip().rstrip(".")] if title.strip() else []
    if categories:
        parts.append("Category: " + " > ".join(categories))
    if features:
        parts.append("Features: " + "; ".join(f.strip() for f in features))
    if description:
        parts.append("Description: " + " ".join(d.strip() for d in description))
    text = ". ".join(parts)
    if len(text) > limit:  # cut on a word boundary so an encoder never sees half a word
        text = text[:limit].rsplit(" ", 1)[0]
    return text


def parse_price(value) -> float:
    """19.99 -> 19.99; "$1,299.00" -> 1299.0; "from 9.99" -> 9.99; "None", null, "" -> NaN."""
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _PRICE_NUMBER.search(value)
        if match:
            return float(match.group().replace(",", ""))
    return math.nan


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _strings(value) -> list[str]:
    """A list of non-empty strings from a JSON list (or a lone string); anything else -> []."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [v.strip() if isinstance(v, str) else str(v) for v in value
            if v is not None and not isinstance(v, (list, dict)) and str(v).strip()]


# --------------------------------------------------------------------------- writers (tests, benchmarks)

_REVIEW_FIELDS = {"rating": None, "title": "", "text": "", "images": [], "asin": None, "parent_asin": None,
                  "user_id": None, "timestamp": None, "helpful_vote": 0, "verified_purchase": True}
_REVIEW_IDENTITY = ("rating", "asin", "parent_asin", "user_id", "timestamp")
_META_FIELDS = {"main_category": None, "title": "", "average_rating": None, "rating_number": None,
                "features": [], "description": [], "price": "None", "images": [], "videos": [], "store": None,
                "categories": [], "details": {}, "parent_asin": None, "bought_together": None}


def write_ratings_csv_gz(frame: pd.DataFrame, path: Path, *, compresslevel: int = 6) -> Path:
    """Write the 5-core benchmark format: gzip CSV, header ``user_id,parent_asin,rating,timestamp``.

    ``frame`` has those columns (or ``raw_user_id`` / ``raw_item_id``); ratings are
    written like ``5.0``, timestamps as integer milliseconds, nothing quoted. Fast
    enough for the 15.5M-row scale benchmark (Arrow's CSV writer, not a Python loop).
    """
    frame = frame.rename(columns={"raw_user_id": "user_id", "raw_item_id": "parent_asin"})
    ratings = frame["rating"].to_numpy(dtype=np.float64)
    levels, codes = np.unique(ratings, return_inverse=True)  # few distinct ratings: format each once
    rating_text = pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32)), pa.array([repr(float(v)) for v in levels])).cast(pa.string())
    table = pa.table({"user_id": _id_array(frame["user_id"]), "parent_asin": _id_array(frame["parent_asin"]),
                      "rating": rating_text, "timestamp": pa.array(frame["timestamp"].to_numpy(dtype=np.int64))})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Python's gzip, not Arrow's (which compresses 3x slower); header by hand since Arrow quotes it.
    with gzip.open(path, "wb", compresslevel=compresslevel) as out:
        out.write((",".join(RATINGS_HEADER) + "\n").encode())
        pa_csv.write_csv(table, out, write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    return path


def _id_array(column: pd.Series) -> pa.Array:
    """Ids as Arrow strings; refuses characters that would need CSV quoting (the published files have none)."""
    if not (pd.api.types.is_string_dtype(column) or column.dtype == object):
        column = column.astype(str)
    array = pa.array(column, pa.string())
    if pc.any(pc.match_substring_regex(array, '[",\r\n]')).as_py():
        raise ValueError(f"{column.name}: ids with commas, quotes or newlines cannot be written unquoted")
    return array


def write_reviews_jsonl_gz(records: Iterable[dict | str], path: Path) -> Path:
    """Write the raw review format, fields in the published order.

    Omitted descriptive fields get the published empty values; ``rating``, ``asin``
    (defaults to ``parent_asin``), ``parent_asin``, ``user_id`` and ``timestamp`` are
    written only when given, so tests can write incomplete lines. A ``str`` record is
    written verbatim (a malformed line).
    """
    def complete(record: dict) -> dict:
        record = dict(record)
        if "asin" not in record and "parent_asin" in record:
            record["asin"] = record["parent_asin"]
        return _ordered(record, _REVIEW_FIELDS, _REVIEW_IDENTITY)

    return _write_jsonl(records, path, complete)


def write_meta_jsonl_gz(records: Iterable[dict | str], path: Path) -> Path:
    """Write the item metadata format, fields in the published order; a missing price is the string "None"."""
    def complete(record: dict) -> dict:
        record = dict(record)
        if record.get("price") is None:
            record["price"] = "None"
        return _ordered(record, _META_FIELDS, ("parent_asin",))

    return _write_jsonl(records, path, complete)


def _ordered(record: dict, fields: dict, written_only_if_given: tuple[str, ...]) -> dict:
    out = {}
    for name, default in fields.items():
        if name in record:
            out[name] = record[name]
        elif name not in written_only_if_given:
            out[name] = json.loads(json.dumps(default))  # a fresh copy of list/dict defaults
    out.update({k: v for k, v in record.items() if k not in fields})
    return out


def _write_jsonl(records: Iterable[dict | str], path: Path, complete) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as out:
        for record in records:
            out.write(record if isinstance(record, str) else json.dumps(complete(record)))
            out.write("\n")
    return path


__all__ = ["BASE_URL", "DEFAULT_CATEGORY", "LAPTOP_FRACTION", "META_URL", "RATINGS_5CORE_URL", "REVIEWS_URL",
           "item_text", "meta_url", "parse_price", "ratings_5core_url", "read_amazon_5core", "read_amazon_meta",
           "read_amazon_raw", "reviews_url", "user_sample_mask", "write_meta_jsonl_gz", "write_ratings_csv_gz",
           "write_reviews_jsonl_gz"]
