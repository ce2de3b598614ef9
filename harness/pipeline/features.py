"""Ranking features: what a ranker (the DLRM of session 07, and every ranker after it) sees about a pair.

A ranker scores (user, candidate item) pairs. This module turns pairs into a batch of tensors,
on every prepared dataset, with no leakage from the future:

    from harness.pipeline.features import FeatureBuilder

    builder = FeatureBuilder.fit(ds, upto="valid")           # vocabularies and statistics from train only
    print(builder.spec.describe())                           # sparse / bag / dense features, table sizes
    pos = builder.positives()                                # the training examples: (users, items, positions)
    batch = builder.batch(pos.users, pos.items, positions=pos.positions)   # dict of tensors, one row per pair
    at_test = builder.at(ds, "test")                         # same spec, histories and counts up to test
    batch = at_test.batch(users, candidates)                 # features to rank test candidates
    batch = at_test.batch(0, candidates, histories=[[12, 50, 7]])   # serving: no user id, an explicit history

**The spec** (:class:`FeatureSpec`) is the contract between the features and a model: the
single-valued sparse features (``spec.sparse``: name, table rows), the multi-valued bag features
(``spec.bags``: name, table rows, maximum length) and the dense features (``spec.dense``, with
their training mean and standard deviation, which the model uses to standardise them). Index
0 of every sparse and bag feature means *unknown, missing or padding*: a model's tables keep
row 0 at zero (``padding_idx=0``).

**The batch** (:meth:`FeatureBuilder.batch`) is a flat dict of CPU tensors:

=======================  ====================  =================================================
key                      dtype, shape          meaning
=======================  ====================  =================================================
``"user"``, ``"item"``   int64 (B,)            the raw ids of the pair (0 = unknown user); not features
one key per sparse       int64 (B,)            code 1..cardinality-1, or 0 = unknown / missing
one key per bag          int64 (B, max_len)    codes, left-padded with 0 (the history: most recent last)
``"dense"``              float32 (B, D)        raw values, columns in ``spec.dense`` order (not standardised)
=======================  ====================  =================================================

**Which features.** The builder uses the columns a dataset has (others are ignored):

* user side: ``user_id``; ``age`` (MovieLens age groups), ``gender``, ``occupation`` when the
  users table has them (MovieLens; Amazon and the synthetic data have no demographics);
  ``history``, a bag of the user's most recent ``history_len`` items before the example.
* item side: ``item_id``; ``genres`` (a bag, from ``"A|B|C"``) when the items table has it, else
  ``category``; ``year`` (5-year buckets) and ``store`` when present.
* dense: ``log_item_count`` (item popularity, log1p of its interactions), ``log_user_count``
  (user activity, log1p of the interactions before the example), and ``log_price`` with a
  ``price_missing`` flag when items have a price (a missing price is imputed with the training
  mean). Item metadata that summarises reviews (``average_rating``, ``rating_number``) is left
  out: it counts reviews written after the split.

**No leakage.** Everything is fit on ``dataset.history(upto)``, the interactions visible before
the split ``upto``:

* vocabularies: a value (an id, a category, a genre, a store...) gets a code only if it occurs
  in that history (``min_count`` times, at most ``max_vocab`` values per attribute); anything
  else is 0. An item or user with no interaction in the history therefore has id code 0: its
  table row would never have been trained.
* counts: item popularity and user activity come from the history only; a training example's
  own interaction (and any later one of the same user with the item) is not counted, so a
  positive does not carry its own label in its popularity.
* the history bag of a training example at position ``t`` of the user's sequence holds items
  ``< t`` only: never the target, never anything after it.
* dense statistics (mean, std) are those of the training examples (every interaction of the
  fit history, with its features as above).

A model is trained with the fitted builder; to rank the candidates of a later split, move the
*state* (histories and counts) forward with :meth:`FeatureBuilder.at` and keep the spec (the
vocabularies and statistics the model was trained with).

**Extension points** (for later sessions): :meth:`FeatureBuilder.with_extra_dense` declares dense
columns the caller provides per pair (a retriever's score of the candidate, say), and
:meth:`FeatureBuilder.with_item_feature` adds an item-side sparse or bag feature from a table of
codes (semantic IDs, say). :func:`example_batch` makes a random valid batch for any spec (tests,
shape checks, compilation, warm-up).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

RESERVED_KEYS = ("user", "item", "dense")

# MovieLens age groups (the ones MovieLens-1M publishes): < 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+.
AGE_EDGES = (18, 25, 35, 45, 50, 56)
YEAR_BUCKET = 5
ITEM_CATEGORICAL = ("store",)  # plus "category" when the items have no "genres"
USER_CATEGORICAL = ("gender", "occupation")


@dataclass(frozen=True)
class SparseFeature:
    """A single-valued categorical feature: one code per row, ``cardinality`` table rows (0 = unknown)."""

    name: str
    cardinality: int
    side: str  # "user" or "item": whose attribute it is


@dataclass(frozen=True)
class BagFeature:
    """A multi-valued categorical feature: up to ``max_len`` codes per row, padded with 0."""

    name: str
    cardinality: int
    max_len: int
    side: str


@dataclass(frozen=True)
class FeatureSpec:
    """What a batch holds: sparse features, bag features, dense columns with their training statistics.

    ``tables`` is the order a model stacks its embeddings in: ``sparse`` first, then ``bags``.
    ``dense_std`` is always positive (a constant column gets 1).
    """

    sparse: tuple[SparseFeature, ...]
    bags: tuple[BagFeature, ...]
    dense: tuple[str, ...]
    dense_mean: tuple[float, ...]
    dense_std: tuple[float, ...]

    def __post_init__(self):
        names = [f.name for f in self.tables]
        if len(set(names)) != len(names) or set(names) & set(RESERVED_KEYS):
            raise ValueError(f"feature names must be distinct and not one of {RESERVED_KEYS}: {names}")
        if not (len(self.dense) == len(self.dense_mean) == len(self.dense_std)):
            raise ValueError("dense, dense_mean and dense_std must have the same length")
        if any(not s > 0 for s in self.dense_std):
            raise ValueError(f"dense_std must be positive: {self.dense_std}")
        if any(f.cardinality < 2 for f in self.tables):
            raise ValueError("every sparse or bag feature needs cardinality >= 2 (row 0 is unknown)")

    @property
    def tables(self) -> tuple[SparseFeature | BagFeature, ...]:
        """Every categorical feature, in embedding order: ``sparse`` then ``bags``."""
        return tuple(self.sparse) + tuple(self.bags)

    def dense_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) as float32 tensors of shape (D,), for a model's standardisation buffers."""
        return (torch.tensor(self.dense_mean, dtype=torch.float32), torch.tensor(self.dense_std, dtype=torch.float32))

    def with_dense(self, names: Sequence[str], mean: Sequence[float], std: Sequence[float]) -> "FeatureSpec":
        """A spec with dense columns appended (after the existing ones)."""
        clash = set(names) & set(self.dense)
        if clash:
            raise ValueError(f"dense columns already in the spec: {sorted(clash)}")
        return dataclasses.replace(self, dense=self.dense + tuple(names),
                                   dense_mean=self.dense_mean + tuple(float(m) for m in mean),
                                   dense_std=self.dense_std + tuple(float(s) for s in std))

    def with_table(self, feature: SparseFeature | BagFeature) -> "FeatureSpec":
        """A spec with one more sparse or bag feature (appended to its group)."""
        if isinstance(feature, BagFeature):
            return dataclasses.replace(self, bags=self.bags + (feature,))
        return dataclasses.replace(self, sparse=self.sparse + (feature,))

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for a model bundle's manifest); :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "FeatureSpec":
        return cls(sparse=tuple(SparseFeature(**f) for f in data["sparse"]),
                   bags=tuple(BagFeature(**f) for f in data["bags"]),
                   dense=tuple(data["dense"]), dense_mean=tuple(data["dense_mean"]),
                   dense_std=tuple(data["dense_std"]))

    def describe(self) -> str:
        """A table of every feature: kind, side, table rows or statistics."""
        lines = [f"{'feature':<16}{'kind':<8}{'side':<6}{'rows':>8}{'max_len':>9}   mean / std"]
        for f in self.sparse:
            lines.append(f"{f.name:<16}{'sparse':<8}{f.side:<6}{f.cardinality:>8,}{'':>9}")
        for f in self.bags:
            lines.append(f"{f.name:<16}{'bag':<8}{f.side:<6}{f.cardinality:>8,}{f.max_len:>9}")
        for name, m, s in zip(self.dense, self.dense_mean, self.dense_std):
            lines.append(f"{name:<16}{'dense':<8}{'':<6}{'':>8}{'':>9}   {m:.3f} / {s:.3f}")
        return "\n".join(lines)


class Positives(NamedTuple):
    """The training examples of a builder's history: user ``users[k]`` interacted with ``items[k]``
    as the ``positions[k]``-th interaction of their sequence (0-based), so ``positions[k]`` items
    come before it. int64 tensors of equal length, ordered by user, then time."""

    users: torch.Tensor
    items: torch.Tensor
    positions: torch.Tensor


@dataclass
class _State:
    """Histories and counts as they stand before a split (what moves with :meth:`FeatureBuilder.at`)."""

    upto: str
    flat_items: np.ndarray  # every visible interaction's item id, by user then time
    offsets: np.ndarray  # (n_users + 2,): user u's items are flat_items[offsets[u]:offsets[u + 1]]
    item_counts: np.ndarray  # (n_items + 1,)
    _pair_keys: np.ndarray | None = None  # sorted user * (n_items + 1) + item, for "own interaction" lookups
    _pair_positions: np.ndarray | None = None

    @classmethod
    def from_dataset(cls, dataset, upto: str) -> "_State":
        frame = dataset.history(upto)
        users = frame["user_id"].to_numpy(np.int64)
        items = frame["item_id"].to_numpy(np.int64)
        offsets = np.searchsorted(users, np.arange(dataset.n_users + 2)).astype(np.int64)
        counts = np.bincount(items, minlength=dataset.n_items + 1).astype(np.int64)
        return cls(upto, items, offsets, counts)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)  # (n_users + 1,): index = user id

    def pair_position(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Position of each item in its user's sequence, or -1 where the user never interacted with it."""
        if len(self.flat_items) == 0:
            return np.full(len(users), -1, dtype=np.int64)
        if self._pair_keys is None:  # built on first use: sorted (user, item) keys of every interaction
            rows = self.item_counts.shape[0]
            owner = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))
            keys = owner * rows + self.flat_items
            order = np.argsort(keys, kind="stable")
            self._pair_keys = keys[order]
            self._pair_positions = (np.arange(len(keys)) - self.offsets[owner])[order]
        keys = users * self.item_counts.shape[0] + items
        where = np.minimum(np.searchsorted(self._pair_keys, keys), len(self._pair_keys) - 1)
        return np.where(self._pair_keys[where] == keys, self._pair_positions[where], -1)


def _vocabulary(values: pd.Series, weights: np.ndarray, min_count: int, max_vocab: int) -> dict:
    """value -> code 1..V for values whose weight (interactions) reaches min_count; most frequent first."""
    frame = pd.DataFrame({"value": values.to_numpy(), "weight": weights})
    frame = frame[frame["value"].notna() & (frame["value"].astype(str) != "")]
    totals = frame.groupby("value", sort=False)["weight"].sum()
    totals = totals[totals >= max(min_count, 1)]
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], str(kv[0])))[:max_vocab]
    return {value: code + 1 for code, (value, _) in enumerate(ordered)}


def _encode(values: pd.Series, vocab: dict) -> np.ndarray:
    return values.map(vocab).fillna(0).to_numpy(np.int64)


def _age_bucket(age: pd.Series) -> pd.Series:
    """MovieLens age groups as labels (None where the age is missing)."""
    ages = pd.to_numeric(age, errors="coerce")
    edges = np.asarray(AGE_EDGES)
    return ages.map(lambda a: None if pd.isna(a) or a < 0 else f"age group {np.searchsorted(edges, a, side='right')}")


def _year_bucket(year: pd.Series) -> pd.Series:
    years = pd.to_numeric(year, errors="coerce")
    return years.map(lambda y: None if pd.isna(y) else f"{int(y) // YEAR_BUCKET * YEAR_BUCKET}s")


def _check_ids(ids: np.ndarray, high: int, what: str) -> None:
    if ids.size and (ids.min() < 0 or ids.max() > high):
        bad = ids[(ids < 0) | (ids > high)][0]
        raise ValueError(f"{what} id {int(bad)} is out of range: ids run 1..{high} (0 = unknown / padding)")


def _as_ids(x: Any, what: str) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"{what} must be integer ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _left_pack(codes: np.ndarray, width: int) -> np.ndarray:
    """(B, L) codes with zeros anywhere -> (B, width): the last ``width`` non-zero codes of each row,
    in order, left-padded with 0."""
    keep = codes != 0
    order = np.argsort(keep, axis=1, kind="stable")  # zeros first, order of non-zeros kept
    packed = np.take_along_axis(codes, order, axis=1)
    if packed.shape[1] >= width:
        return np.ascontiguousarray(packed[:, packed.shape[1] - width:])
    return np.concatenate([np.zeros((len(codes), width - packed.shape[1]), dtype=np.int64), packed], axis=1)


class FeatureBuilder:
    """Features for (user, item) pairs of one dataset; build it with :meth:`fit` (see the module docstring).

    Attributes:
        spec: the :class:`FeatureSpec` of every batch this builder makes.
        upto: the split whose visible history the state (histories, counts) holds.
        fit_upto: the split the vocabularies and statistics were fit before.
        n_users, n_items: id ranges (1..n; 0 = unknown).
        fingerprint: the dataset's fingerprint, to check a builder belongs to a dataset.
    """

    def __init__(self, *, spec: FeatureSpec, state: _State, n_users: int, n_items: int, fit_upto: str,
                 fingerprint: str | None, item_codes: dict, user_codes: dict, item_bags: dict,
                 item_dense: np.ndarray, item_dense_names: tuple[str, ...], history_len: int,
                 extra_dense: tuple[str, ...] = ()):
        self.spec = spec
        self._state = state
        self.n_users, self.n_items = n_users, n_items
        self.fit_upto = fit_upto
        self.fingerprint = fingerprint
        self._item_codes = item_codes  # name -> (n_items + 1,) int64
        self._user_codes = user_codes  # name -> (n_users + 1,) int64
        self._item_bags = item_bags  # name -> (n_items + 1, max_len) int64
        self._item_dense = item_dense  # (n_items + 1, k) float32, imputed
        self._item_dense_names = item_dense_names
        self.history_len = history_len
        self._extra_dense = extra_dense

    # ------------------------------------------------------------------ construction

    @classmethod
    def fit(cls, dataset, upto: str = "valid", *, history_len: int = 20, min_count: int = 1,
            max_vocab: int = 10_000) -> "FeatureBuilder":
        """Fit vocabularies and dense statistics on ``dataset.history(upto)``.

        Args:
            dataset: a :class:`harness.data.RecDataset` (any prepared dataset).
            upto: the split to predict: ``"valid"`` fits on train, ``"test"`` on train + valid.
            history_len: the history bag keeps the user's ``history_len`` most recent items.
            min_count: an attribute value (category, genre, store...) needs this many interactions
                in the history to get a code; ids need one.
            max_vocab: at most this many values per attribute (the most frequent); ids are not capped.
        """
        if history_len < 1:
            raise ValueError("history_len must be >= 1")
        state = _State.from_dataset(dataset, upto)
        n_users, n_items = dataset.n_users, dataset.n_items
        items_table = dataset.items.set_index("item_id").reindex(np.arange(n_items + 1))
        users_table = dataset.users.set_index("user_id").reindex(np.arange(n_users + 1))
        item_weight = state.item_counts.astype(np.float64)  # interactions per item id (row 0: 0)
        user_weight = state.lengths.astype(np.float64)

        sparse, bags = [], []
        user_codes: dict[str, np.ndarray] = {}
        item_codes: dict[str, np.ndarray] = {}
        item_bags: dict[str, np.ndarray] = {}

        # ids: known when seen in the history; the table keeps one row per id either way
        user_codes["user_id"] = np.where(user_weight > 0, np.arange(n_users + 1), 0).astype(np.int64)
        sparse.append(SparseFeature("user_id", n_users + 1, "user"))
        user_columns = {"age": _age_bucket(users_table["age"]) if "age" in users_table else None}
        for column in USER_CATEGORICAL:
            if column in users_table:
                user_columns[column] = users_table[column].reset_index(drop=True)
        for name, values in user_columns.items():
            if values is None:
                continue
            values = values.reset_index(drop=True)
            vocab = _vocabulary(values, user_weight, min_count, max_vocab)
            user_codes[name] = _encode(values, vocab)
            sparse.append(SparseFeature(name, len(vocab) + 1, "user"))

        item_codes["item_id"] = np.where(item_weight > 0, np.arange(n_items + 1), 0).astype(np.int64)
        sparse.append(SparseFeature("item_id", n_items + 1, "item"))
        item_columns = {}
        if "genres" not in items_table and "category" in items_table:
            item_columns["category"] = items_table["category"]
        if "year" in items_table:
            item_columns["year"] = _year_bucket(items_table["year"])
        for column in ITEM_CATEGORICAL:
            if column in items_table:
                item_columns[column] = items_table[column]
        for name, values in item_columns.items():
            values = values.reset_index(drop=True)
            vocab = _vocabulary(values, item_weight, min_count, max_vocab)
            item_codes[name] = _encode(values, vocab)
            sparse.append(SparseFeature(name, len(vocab) + 1, "item"))

        bags.append(BagFeature("history", n_items + 1, history_len, "user"))
        if "genres" in items_table:
            genres = items_table["genres"].fillna("").astype(str).str.split("|").map(
                lambda gs: [g for g in gs if g and g != "unknown"])
            per_item = genres.map(len).to_numpy()
            flat = pd.Series([g for gs in genres for g in gs], dtype=object)
            vocab = _vocabulary(flat, np.repeat(item_weight, per_item), min_count, max_vocab)
            width = max(1, int(per_item.max()))
            table = np.zeros((n_items + 1, width), dtype=np.int64)
            for i, gs in enumerate(genres):  # a few thousand movies: a loop is fine
                codes = [vocab[g] for g in gs if g in vocab]
                if codes:
                    table[i, width - len(codes):] = codes
            item_bags["genres"] = table
            bags.append(BagFeature("genres", len(vocab) + 1, width, "item"))

        dense_names = ["log_item_count", "log_user_count"]
        item_dense_names: tuple[str, ...] = ()
        item_dense = np.zeros((n_items + 1, 0), dtype=np.float32)
        if "price" in items_table:
            price = pd.to_numeric(items_table["price"], errors="coerce").to_numpy(np.float64)
            missing = ~np.isfinite(price) | (price < 0)
            log_price = np.log1p(np.where(missing, 0.0, price))
            known = ~missing & (item_weight > 0)
            fill = (np.average(log_price[known], weights=item_weight[known]) if known.any() else 0.0)
            item_dense = np.stack([np.where(missing, fill, log_price), missing.astype(np.float64)], 1)
            item_dense = item_dense.astype(np.float32)
            item_dense_names = ("log_price", "price_missing")
            dense_names += list(item_dense_names)

        placeholder = FeatureSpec(tuple(sparse), tuple(bags), tuple(dense_names), (0.0,) * len(dense_names),
                                  (1.0,) * len(dense_names))
        builder = cls(spec=placeholder, state=state, n_users=n_users, n_items=n_items, fit_upto=upto,
                      fingerprint=dataset.meta.get("fingerprint"), item_codes=item_codes, user_codes=user_codes,
                      item_bags=item_bags, item_dense=item_dense, item_dense_names=item_dense_names,
                      history_len=history_len)
        # dense statistics over the training examples, with their features exactly as batches compute them
        pos = builder.positives()
        dense = builder._dense(pos.users.numpy(), pos.items.numpy(), pos.positions.numpy(), None)
        mean, std = _stats(dense)
        builder.spec = dataclasses.replace(placeholder, dense_mean=tuple(mean), dense_std=tuple(std))
        return builder

    def at(self, dataset, upto: str) -> "FeatureBuilder":
        """The same spec (vocabularies, statistics), with histories and counts as they stand before ``upto``.

        A ranker trained with ``FeatureBuilder.fit(ds, "valid")`` ranks test candidates with
        ``builder.at(ds, "test")``: the valid interaction is now part of each user's history.
        """
        fp = dataset.meta.get("fingerprint")
        if self.fingerprint is not None and fp is not None and fp != self.fingerprint:
            raise ValueError(f"this builder was fit on another dataset (fingerprint {self.fingerprint}, got {fp})")
        if (dataset.n_users, dataset.n_items) != (self.n_users, self.n_items):
            raise ValueError("the dataset's id ranges differ from the ones this builder was fit on")
        return self._replace(state=_State.from_dataset(dataset, upto))

    def _replace(self, **changes) -> "FeatureBuilder":
        fields = dict(spec=self.spec, state=self._state, n_users=self.n_users, n_items=self.n_items,
                      fit_upto=self.fit_upto, fingerprint=self.fingerprint, item_codes=self._item_codes,
                      user_codes=self._user_codes, item_bags=self._item_bags, item_dense=self._item_dense,
                      item_dense_names=self._item_dense_names, history_len=self.history_len,
                      extra_dense=self._extra_dense)
        fields.update(changes)
        return FeatureBuilder(**fields)

    def with_extra_dense(self, train_values: Mapping[str, Any]) -> "FeatureBuilder":
        """A builder whose batches have more dense columns, given by the caller for every pair.

        Args:
            train_values: name -> the column's values on the training pairs (any 1-D array):
                its mean and std become the spec's statistics for it.

        Every later :meth:`batch` call must then pass ``extra_dense={name: (B,) values}``;
        the columns go after the builder's own, in this mapping's order.
        """
        names, means, stds = [], [], []
        for name, values in train_values.items():
            values = np.asarray(values.detach().cpu() if torch.is_tensor(values) else values, dtype=np.float64)
            mean, std = _stats(values.reshape(-1, 1))
            names.append(name)
            means.append(mean[0])
            stds.append(std[0])
        return self._replace(spec=self.spec.with_dense(names, means, stds),
                             extra_dense=self._extra_dense + tuple(names))

    def with_item_feature(self, name: str, codes: Any, cardinality: int | None = None) -> "FeatureBuilder":
        """A builder with one more item-side feature, from a table of codes per item id.

        Args:
            codes: int array (n_items + 1,) for a sparse feature, or (n_items + 1, L) for a bag
                (0 = unknown / padding); row 0 is the padding item.
            cardinality: table rows; default ``codes.max() + 1``.
        """
        codes = _as_ids(codes, f"codes of `{name}`")
        if codes.shape[0] != self.n_items + 1 or codes.ndim not in (1, 2):
            raise ValueError(f"codes of `{name}` must have shape (n_items + 1,) or (n_items + 1, L), "
                             f"with n_items = {self.n_items}; got {codes.shape}")
        if codes.min() < 0:
            raise ValueError(f"codes of `{name}` must be >= 0 (0 = unknown)")
        cardinality = int(cardinality if cardinality is not None else codes.max() + 1)
        cardinality = max(cardinality, 2)
        if codes.max() >= cardinality:
            raise ValueError(f"codes of `{name}` reach {int(codes.max())}, beyond cardinality {cardinality}")
        if codes.ndim == 1:
            return self._replace(spec=self.spec.with_table(SparseFeature(name, cardinality, "item")),
                                 item_codes={**self._item_codes, name: codes})
        packed = _left_pack(codes, codes.shape[1])
        return self._replace(spec=self.spec.with_table(BagFeature(name, cardinality, codes.shape[1], "item")),
                             item_bags={**self._item_bags, name: packed})

    # ------------------------------------------------------------------ what it makes

    @property
    def upto(self) -> str:
        return self._state.upto

    def positives(self) -> Positives:
        """Every interaction of the state's history as a training example (see :class:`Positives`)."""
        lengths = self._state.lengths
        users = np.repeat(np.arange(len(lengths)), lengths)
        positions = np.arange(len(users)) - self._state.offsets[users]
        return Positives(torch.from_numpy(users.astype(np.int64)), torch.from_numpy(self._state.flat_items.copy()),
                         torch.from_numpy(positions.astype(np.int64)))

    def sequence(self, user: int) -> np.ndarray:
        """The state's item ids of ``user``, in time order (a copy)."""
        s = self._state
        return s.flat_items[s.offsets[user]:s.offsets[user + 1]].copy()

    def batch(self, users: Any, items: Any, *, positions: Any = None, histories: Any = None,
              extra_dense: Mapping[str, Any] | None = None) -> dict[str, torch.Tensor]:
        """Features of the pairs (``users[b]``, ``items[b]``), as the dict of tensors described above.

        Args:
            users: int64 (B,) user ids, or one int for every row; 0 = unknown user (no demographics,
                and, without ``histories``, an empty history).
            items: int64 (B,) candidate item ids (1..n_items; 0 gives all-unknown item features).
            positions: optional int (B,): row b sees only the first ``positions[b]`` interactions of
                its user's history (a training example at that position: its target is
                ``sequence[positions[b]]``). Default: the whole history, as when ranking for the
                split after the state's ``upto``.
            histories: optional explicit histories, most recent last, replacing the stored ones:
                a list of B (or 1, for every row) sequences of item ids, or an int (B or 1, L)
                array / tensor where 0 is padding. Items unknown to the vocabulary are dropped.
            extra_dense: name -> (B,) values for each column declared by :meth:`with_extra_dense`.
        """
        items = _as_ids(items, "items").reshape(-1)
        n = len(items)
        users = _as_ids(users, "users")
        users = np.full(n, int(users)) if users.ndim == 0 else users.reshape(-1)
        if len(users) != n:
            raise ValueError(f"users has {len(users)} rows, items has {n}")
        _check_ids(items, self.n_items, "item")
        _check_ids(users, self.n_users, "user")
        if positions is not None and histories is not None:
            raise ValueError("pass positions (stored histories, cut) or histories (explicit), not both")
        lengths = self._state.lengths[users]
        if positions is not None:
            positions = _as_ids(positions, "positions").reshape(-1)
            if len(positions) != n:
                raise ValueError(f"positions has {len(positions)} rows, items has {n}")
            if (positions < 0).any() or (positions > lengths).any():
                b = int(np.nonzero((positions < 0) | (positions > lengths))[0][0])
                raise ValueError(f"row {b}: position {int(positions[b])} is outside user {int(users[b])}'s "
                                 f"history of {int(lengths[b])} interactions")

        out: dict[str, torch.Tensor] = {"user": torch.from_numpy(users.copy()), "item": torch.from_numpy(items.copy())}
        for f in self.spec.sparse:
            codes = self._user_codes[f.name][users] if f.side == "user" else self._item_codes[f.name][items]
            out[f.name] = torch.from_numpy(np.ascontiguousarray(codes))
        if histories is not None:
            bag, activity = self._explicit_histories(histories, n)
        else:
            cut = lengths if positions is None else positions
            bag, activity = self._stored_histories(users, cut), cut
        for f in self.spec.bags:
            if f.name == "history":
                out[f.name] = torch.from_numpy(bag)
            else:
                out[f.name] = torch.from_numpy(np.ascontiguousarray(self._item_bags[f.name][items]))
        dense = self._dense(users, items, positions, activity)
        extra = dict(extra_dense or {})
        unknown = set(extra) - set(self._extra_dense)
        missing = [name for name in self._extra_dense if name not in extra]
        if unknown or missing:
            raise KeyError(f"extra_dense must give exactly the declared columns {list(self._extra_dense)}: "
                           f"missing {missing}, unknown {sorted(unknown)} (declare new ones with with_extra_dense)")
        if self._extra_dense:
            columns = []
            for name in self._extra_dense:
                v = extra[name]
                v = np.asarray(v.detach().cpu() if torch.is_tensor(v) else v, dtype=np.float32).reshape(-1)
                if len(v) != n:
                    raise ValueError(f"extra_dense[{name!r}] has {len(v)} values for {n} rows")
                columns.append(v)
            dense = np.concatenate([dense, np.stack(columns, 1)], axis=1)
        out["dense"] = torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))
        return out

    # ------------------------------------------------------------------ pieces

    def _stored_histories(self, users: np.ndarray, cut: np.ndarray) -> np.ndarray:
        """(B, history_len): the last history_len items before ``cut`` of each user's sequence, left-padded."""
        L = self.history_len
        starts = self._state.offsets[users]
        idx = starts[:, None] + cut[:, None] - L + np.arange(L)[None, :]  # (B, L), oldest first
        valid = idx >= starts[:, None]
        flat = self._state.flat_items
        codes = np.where(valid, flat[np.clip(idx, 0, max(len(flat) - 1, 0))] if len(flat) else 0, 0)
        return np.ascontiguousarray(self._item_codes["item_id"][codes]).astype(np.int64)

    def _explicit_histories(self, histories: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        if torch.is_tensor(histories) or isinstance(histories, np.ndarray):
            arr = _as_ids(histories, "histories")
            if arr.ndim != 2:
                raise ValueError(f"histories as an array must be 2-D (B, L), got shape {arr.shape}")
        else:
            rows = [_as_ids(h, "a history").reshape(-1) for h in histories]
            width = max([len(r) for r in rows] + [1])
            arr = np.zeros((len(rows), width), dtype=np.int64)
            for b, r in enumerate(rows):
                if len(r):
                    arr[b, width - len(r):] = r
        if len(arr) not in (1, n):
            raise ValueError(f"histories has {len(arr)} rows: give one per pair ({n}) or one for every pair")
        _check_ids(arr.reshape(-1), self.n_items, "history item")
        activity = (arr != 0).sum(axis=1)
        bag = _left_pack(self._item_codes["item_id"][arr], self.history_len)
        if len(arr) == 1 and n != 1:
            bag, activity = np.repeat(bag, n, axis=0), np.repeat(activity, n)
        return np.ascontiguousarray(bag), activity

    def _dense(self, users: np.ndarray, items: np.ndarray, positions: np.ndarray | None,
               activity: np.ndarray | None) -> np.ndarray:
        """Raw dense columns (B, D0) of the builder's own features."""
        counts = self._state.item_counts[items].astype(np.float64)
        if positions is not None:
            # the example's own interaction (and a later one of the same user) is not popularity yet
            at = self._state.pair_position(users, items)
            counts = counts - ((at >= 0) & (at >= positions))
        if activity is None:
            activity = self._state.lengths[users] if positions is None else positions
        columns = [np.log1p(np.maximum(counts, 0.0)), np.log1p(activity.astype(np.float64))]
        out = np.stack(columns, axis=1).astype(np.float32)
        if self._item_dense.shape[1]:
            out = np.concatenate([out, self._item_dense[items]], axis=1)
        return out


def _stats(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Column means and standard deviations (finite values only); a constant or empty column gets std 1."""
    values = np.asarray(values, dtype=np.float64)
    means, stds = [], []
    for col in values.T:
        col = col[np.isfinite(col)]
        mean = float(col.mean()) if col.size else 0.0
        std = float(col.std()) if col.size else 0.0
        means.append(mean)
        stds.append(std if std > 1e-8 else 1.0)
    return means, stds


def example_batch(spec: FeatureSpec, batch_size: int = 8, seed: int = 0, *,
                  unknown_share: float = 0.2) -> dict[str, torch.Tensor]:
    """A random batch valid for ``spec``, with unknown codes (0), left padding and some empty bags.

    Dense columns are drawn around their training mean and scale; ``"user"`` and ``"item"`` are
    random ids within the ``user_id`` / ``item_id`` tables (1..9 when the spec has none).
    """
    g = torch.Generator().manual_seed(seed)
    B = batch_size

    def codes(cardinality: int, shape) -> torch.Tensor:
        x = torch.randint(1, cardinality, shape, generator=g)
        return x.masked_fill(torch.rand(shape, generator=g) < unknown_share, 0)

    out: dict[str, torch.Tensor] = {}
    cards = {f.name: f.cardinality for f in spec.sparse}
    out["user"] = torch.randint(1, cards.get("user_id", 10), (B,), generator=g)
    out["item"] = torch.randint(1, cards.get("item_id", 10), (B,), generator=g)
    for f in spec.sparse:
        out[f.name] = codes(f.cardinality, (B,))
    for f in spec.bags:
        lengths = torch.randint(0, f.max_len + 1, (B,), generator=g)
        lengths[0] = 0  # an empty bag in every batch
        lengths[min(1, B - 1)] = f.max_len  # and a full one
        bag = torch.randint(1, f.cardinality, (B, f.max_len), generator=g)
        real = torch.arange(f.max_len)[None, :] >= (f.max_len - lengths)[:, None]
        out[f.name] = bag * real
    mean, std = spec.dense_stats()
    out["dense"] = mean + std * torch.randn(B, len(spec.dense), generator=g)
    return out


__all__ = ["BagFeature", "FeatureBuilder", "FeatureSpec", "Positives", "SparseFeature", "example_batch"]


if __name__ == "__main__":  # python -m harness.pipeline.features [dataset]: the spec of a dataset
    import sys

    from ..data import load_dataset

    ds = load_dataset(sys.argv[1] if len(sys.argv) > 1 else "ml-100k")
    b = FeatureBuilder.fit(ds, "valid")
    print(ds.summary())
    print(b.spec.describe())
