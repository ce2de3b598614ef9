"""A synthetic dataset in the Amazon schema with structure a model can learn.

Planted structure, so that learned models measurably beat popularity:

* every item belongs to one category, and its title and text name that category
  (a text encoder can recover it: cold-start, session 11);
* every user prefers a few categories (a Dirichlet draw with a small concentration);
* interactions are sequential: with probability ``p_sequential`` the next item is
  the fixed *successor* of the previous one (a lens after a camera), otherwise a
  category is drawn from the user's preferences and an item from that category by a
  Zipf popularity;
* timestamps are milliseconds, increasing per user, as in Amazon Reviews 2023.

Generation is vectorised over users (one step per position), so the 15.5M-row
scale benchmark takes a minute, not an hour.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .preprocess import RawData

CATEGORIES = [
    ("Headphones", "headphones"), ("Digital Cameras", "camera"), ("Camera Lenses", "lens"),
    ("Laptops", "laptop"), ("Laptop Chargers", "charger"), ("Keyboards", "keyboard"), ("Computer Mice", "mouse"),
    ("Monitors", "monitor"), ("Bluetooth Speakers", "speaker"), ("Smartwatches", "smartwatch"),
    ("Tablets", "tablet"), ("Tablet Cases", "tablet case"), ("USB Cables", "USB cable"), ("Power Banks", "power bank"),
    ("Memory Cards", "memory card"), ("External Hard Drives", "hard drive"), ("Wi-Fi Routers", "router"),
    ("Webcams", "webcam"), ("Microphones", "microphone"), ("Television Sets", "TV"),
    ("Soundbars", "soundbar"), ("Streaming Media Players", "streaming stick"), ("Projectors", "projector"),
    ("Printers", "printer"), ("Ink Cartridges", "ink cartridge"), ("Drones", "drone"), ("Action Cameras", "action camera"),
    ("Tripods", "tripod"), ("Car Electronics", "dash cam"), ("GPS Navigators", "GPS navigator"),
    ("E-book Readers", "e-reader"), ("Gaming Headsets", "gaming headset"), ("Graphics Cards", "graphics card"),
    ("Solid State Drives", "SSD"), ("Surge Protectors", "surge protector"), ("Smart Home Hubs", "smart hub"),
    ("Security Cameras", "security camera"), ("Earbuds", "earbuds"), ("Phone Cases", "phone case"),
    ("Screen Protectors", "screen protector"),
]
BRANDS = ["Aurex", "Bolt", "Cirrus", "Dyna", "Equinox", "Fathom", "Gryph", "Helio", "Ionix", "Juno",
          "Kestrel", "Lumen", "Mako", "Nimbus", "Orion", "Pulse", "Quanta", "Rivet", "Sable", "Tundra"]
ADJECTIVES = ["wireless", "compact", "portable", "professional", "ultra-slim", "rugged", "high-speed", "smart",
              "noise-cancelling", "waterproof", "ergonomic", "4K", "fast-charging", "lightweight"]
FEATURES = ["long battery life", "USB-C charging", "two-year warranty", "aluminium body", "Bluetooth 5.3",
            "low latency", "travel pouch included", "energy efficient", "plug and play", "firmware updates",
            "tangle-free cable", "LED indicator", "universal compatibility", "quick start guide"]

START_MS = 1_514_764_800_000  # 2018-01-01
SPAN_MS = 5 * 365 * 86_400_000


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 5_000
    n_items: int = 2_000
    n_categories: int = 30
    mean_length: float = 25.0  # interactions per user, before dedupe and k-core
    min_length: int = 6
    max_length: int = 400
    preference_concentration: float = 0.15  # small: each user cares about few categories
    p_sequential: float = 0.35
    zipf_exponent: float = 0.9
    seed: int = 0


PRESETS = {
    "smoke": SyntheticConfig(n_users=400, n_items=300, n_categories=12, mean_length=18.0),
    "laptop": SyntheticConfig(),
    "gpu": SyntheticConfig(n_users=200_000, n_items=60_000, n_categories=40, mean_length=30.0),
}


def _category_names(n: int) -> list[tuple[str, str]]:
    names = []
    for c in range(n):
        name, noun = CATEGORIES[c % len(CATEGORIES)]
        series = c // len(CATEGORIES)
        names.append((f"{name} {series + 1}" if series else name, noun))
    return names


def _random_ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> np.ndarray:
    """Unique upper-case alphanumeric ids like Amazon's (``B0`` + 8 for items, 28 for users)."""
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    while True:
        chars = alphabet[rng.integers(0, len(alphabet), size=(n, length - len(prefix)))]
        ids = np.char.add(prefix, chars.view(f"<U{length - len(prefix)}").ravel())
        if len(np.unique(ids)) == n:
            return ids


def generate_items(config: SyntheticConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Item table (raw ids, titles, text naming the category) and each item's category index."""
    n = config.n_items
    sizes = rng.dirichlet(np.full(config.n_categories, 2.0))
    category = rng.choice(config.n_categories, size=n, p=sizes)
    category[: config.n_categories] = np.arange(min(n, config.n_categories))  # no empty category
    names = _category_names(config.n_categories)
    brands = rng.choice(BRANDS, size=n)
    adjectives = rng.choice(ADJECTIVES, size=n)
    models = rng.integers(100, 9999, size=n)
    feats = rng.integers(0, len(FEATURES), size=(n, 2))
    asins = _random_ids(rng, n, "B0", 10)
    titles, texts, cats, features, descriptions = [], [], [], [], []
    for i in range(n):
        cat_name, noun = names[category[i]]
        title = f"{brands[i]} {adjectives[i].capitalize()} {noun.title()} {brands[i][0]}{models[i]}"
        feature = [FEATURES[feats[i, 0]], FEATURES[feats[i, 1]]]
        description = f"A {adjectives[i]} {noun} by {brands[i]}."
        titles.append(title)
        cats.append(cat_name)
        features.append(feature)
        descriptions.append(description)
        texts.append(f"{title}. Electronics > {cat_name}. Features: {feature[0]}; {feature[1]}. {description}")
    items = pd.DataFrame({"raw_item_id": asins, "title": titles, "text": texts, "category": cats,
                          "store": brands, "price": np.round(rng.gamma(2.0, 30.0, size=n), 2),
                          "features": features, "description": descriptions})
    return items, category


def amazon_meta_records(items: pd.DataFrame):
    """The synthetic items as Amazon Reviews 2023 metadata records (for the format writers)."""
    for row in items.itertuples(index=False):
        yield {"main_category": "All Electronics", "title": row.title, "features": list(row.features),
               "description": [row.description], "price": float(row.price), "store": row.store,
               "categories": ["Electronics", row.category], "parent_asin": row.raw_item_id}


def generate(config: SyntheticConfig) -> RawData:
    """Interactions and items with the planted structure described in the module docstring."""
    rng = np.random.default_rng(config.seed)
    items, category = generate_items(config, rng)
    n_users, n_items, n_cat = config.n_users, config.n_items, config.n_categories

    # Within-category Zipf popularity, laid out as one cumulative table per category,
    # offset by the category index so that one searchsorted samples any category.
    order = np.argsort(category, kind="stable")
    sorted_cat = category[order]
    rank_in_cat = np.arange(n_items) - np.searchsorted(sorted_cat, sorted_cat)
    weight = 1.0 / (1.0 + rank_in_cat) ** config.zipf_exponent  # raw ids are random, so rank is too
    cum = np.zeros(n_items)
    for c in range(n_cat):
        lo, hi = np.searchsorted(sorted_cat, [c, c + 1])
        if hi > lo:
            w = weight[lo:hi]
            cum[lo:hi] = c + np.cumsum(w) / w.sum()
    successor = np.empty(n_items, dtype=np.int64)
    for c in range(n_cat):  # each item's successor is another item of its category
        members = order[sorted_cat == c]
        successor[members] = members[rng.permutation(len(members))] if len(members) > 1 else members

    preferences = rng.dirichlet(np.full(n_cat, config.preference_concentration), size=n_users)
    pref_cum = np.cumsum(preferences, axis=1)
    extra = rng.geometric(1.0 / max(config.mean_length - config.min_length + 1, 1.0), size=n_users) - 1  # mean: mean_length - min_length
    lengths = np.minimum(config.min_length + extra, config.max_length)

    def sample_items(users: np.ndarray) -> np.ndarray:
        u = rng.random(len(users))
        cats = np.minimum((pref_cum[users] < u[:, None]).sum(axis=1), n_cat - 1)
        pos = np.searchsorted(cum, cats + rng.random(len(users)) * (1 - 1e-12))
        return order[np.minimum(pos, n_items - 1)]

    user_chunks, item_chunks, step_chunks = [], [], []
    users = np.arange(n_users)
    previous = sample_items(users)
    for t in range(int(lengths.max())):
        active = users[lengths > t]
        if t == 0:
            current = previous
        else:
            fresh = sample_items(active)
            follow = rng.random(len(active)) < config.p_sequential
            current = np.where(follow, successor[previous[active]], fresh)
            previous[active] = current
        user_chunks.append(active)
        item_chunks.append(current)
        step_chunks.append(np.full(len(active), t))
    user_idx = np.concatenate(user_chunks)
    item_idx = np.concatenate(item_chunks)
    step = np.concatenate(step_chunks)

    start = START_MS + rng.integers(0, SPAN_MS // 2, size=n_users)
    gaps = rng.exponential(3 * 86_400_000, size=len(step)).astype(np.int64) + 1
    frame = pd.DataFrame({"u": user_idx, "step": step, "gap": gaps}).sort_values(["u", "step"], kind="stable")
    stamps = start[frame["u"].to_numpy()] + frame.groupby("u")["gap"].cumsum().to_numpy()
    user_ids = _random_ids(rng, n_users, "A", 28)
    ratings = rng.choice(np.arange(1, 6, dtype=np.float32), size=len(step), p=[0.05, 0.05, 0.1, 0.3, 0.5])
    rows = frame.index.to_numpy()
    interactions = pd.DataFrame({
        "raw_user_id": user_ids[user_idx[rows]],
        "raw_item_id": items["raw_item_id"].to_numpy()[item_idx[rows]],
        "rating": ratings[rows],
        "timestamp": stamps,
    })
    return RawData(interactions, items, None, Counter(),
                   {"format": "synthetic", "config": config.__dict__.copy()}, timestamp_unit="ms")
