"""The semantic-ID track: items as short tuples of discrete codes, saved for the generative capstone.

Session 12 quantises item vectors (session 11's text embeddings, or a trained item tower's) with
residual k-means; this module is the contract between that session, the pipeline and session 16:

    from harness.pipeline.semantic_ids import build_semantic_ids, save_semantic_ids, load_semantic_ids, semantic_ids_path

    sids = build_semantic_ids(vectors, levels=3, codebook_size=64, seed=0, source="text:intfloat/e5-base-v2",
                              fingerprint=ds.meta["fingerprint"])   # vectors: (n_items + 1, d), row 0 = padding
    sids.codes            # int64 (n_items + 1, L + 1): levels 0..L-1, then the disambiguation index; row 0 zeros
    sids.codebook_sizes   # (K, K, K, 1 + largest collision group - 1): the vocabulary of each column
    sids.lookup()         # {(c0, c1, c2, d): item_id}, one entry per item (the codes are unique)
    path = semantic_ids_path("ml-100k", "laptop", sids.source)
    save_semantic_ids(path, sids); sids = load_semantic_ids(path, fingerprint=ds.meta["fingerprint"])

:func:`build_semantic_ids` is glue around session 12's exercises, taken through
:func:`harness.upstream` (the reference, or your code under ``python -m harness pipeline --impl
sessions``). A saved file holds the codes, the collision map (every group of items that shared all
L codes before disambiguation), the code -> item lookup, the statistics (reconstruction error,
codebook use, collision rates) and the dataset fingerprint; loading refuses a file built for
another dataset.

Stage ``semantic-ids`` (after the cold-start track): text semantic IDs, their statistics, the DLRM
with semantic IDs only and with text + semantic IDs on the cold and warm sets, and the A/B table
(continuous vs discrete vs both) with paired-bootstrap intervals.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..paths import atomic_write, display_path, runs_dir

FORMAT_VERSION = 1


@dataclass
class SemanticIDs:
    """The semantic IDs of a catalog (see the module docstring).

    ``codes`` int64 (n_items + 1, L + 1): columns 0..L-1 are the residual k-means codes of levels
    1..L (each in 0..K-1), column L is the disambiguation index (0 unless the item shared its L codes
    with an earlier item, then 1, 2, ...); row 0 is the padding item, all zeros. ``codebook_sizes``
    (length L + 1) is each column's vocabulary size. ``stats`` holds what session 12 measured.
    """

    codes: torch.Tensor
    codebook_sizes: tuple[int, ...]
    source: str
    fingerprint: str
    stats: dict = field(default_factory=dict)

    def __post_init__(self):
        self.codes = torch.as_tensor(self.codes, dtype=torch.long).cpu()
        self.codebook_sizes = tuple(int(s) for s in self.codebook_sizes)
        if self.codes.ndim != 2 or self.codes.shape[1] != len(self.codebook_sizes):
            raise ValueError(f"codes must be (n_items + 1, L + 1) with one column per codebook size; got codes "
                             f"{tuple(self.codes.shape)} and {len(self.codebook_sizes)} codebook sizes")
        if self.codes.shape[1] < 2:
            raise ValueError("semantic IDs need at least one level and the disambiguation column")
        if bool((self.codes[0] != 0).any()):
            raise ValueError("row 0 of the codes is the padding item and must be all zeros")
        low, high = self.codes.min(0).values, self.codes.max(0).values
        sizes = torch.tensor(self.codebook_sizes)
        if bool((low < 0).any()) or bool((high >= sizes).any()):
            raise ValueError(f"codes outside their vocabularies: column maxima {high.tolist()}, sizes {list(sizes)}")

    @property
    def levels(self) -> int:
        """L, the number of k-means levels (the codes have one more column, the disambiguation index)."""
        return self.codes.shape[1] - 1

    @property
    def n_items(self) -> int:
        return self.codes.shape[0] - 1

    def lookup(self) -> dict[tuple[int, ...], int]:
        """Full code tuple (L + 1 ints) -> item id, for items 1..n_items (padding excluded)."""
        rows = self.codes[1:].tolist()
        table = {tuple(row): item for item, row in enumerate(rows, start=1)}
        if len(table) != len(rows):
            raise ValueError("two items share the same full semantic ID: the disambiguation column is wrong")
        return table

    def collision_map(self) -> dict[tuple[int, ...], list[int]]:
        """L-code tuple -> the item ids that shared it before disambiguation (groups of two or more only)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for item, row in enumerate(self.codes[1:, :self.levels].tolist(), start=1):
            groups.setdefault(tuple(row), []).append(item)
        return {key: items for key, items in groups.items() if len(items) > 1}

    def describe(self) -> str:
        s = self.stats
        lines = [f"semantic IDs of {self.n_items:,} items from {self.source}: {self.levels} levels, codebook sizes "
                 f"{list(self.codebook_sizes[:-1])} + disambiguation {self.codebook_sizes[-1]}"]
        if "relative_error" in s:
            lines.append(f"{'level':>6}{'rel. error':>12}{'codes used':>12}{'perplexity':>12}")
            for level in range(self.levels):
                lines.append(f"{level + 1:>6}{s['relative_error'][level]:>12.4f}{s['used'][level]:>12.1%}"
                             f"{s['perplexity'][level]:>12.1f}")
        if "collision_rate_before" in s:
            lines.append(f"items sharing all {self.levels} codes with another item: {s['collision_rate_before']:.2%} "
                         f"before disambiguation, {s['collision_rate_after']:.2%} after "
                         f"(largest group {s['largest_group']})")
        return "\n".join(lines)


def build_semantic_ids(vectors: torch.Tensor, *, levels: int, codebook_size: int, seed: int, source: str,
                       fingerprint: str, niter: int = 20) -> SemanticIDs:
    """Semantic IDs of items 1..n from their vectors, by session 12's exercises (through ``upstream(12)``).

    Args:
        vectors: float (n_items + 1, d) by item id; row 0 (padding) is ignored.
        levels, codebook_size: L levels of K codes (K is capped at the number of items).
        seed: k-means seed (level l uses ``seed + l``); source: ``"text:<model>"`` or
            ``"collaborative:<retriever>"``; fingerprint: ``ds.meta["fingerprint"]``.
    """
    from ..autograder.loader import upstream

    return upstream(12).build_semantic_ids(vectors, levels=levels, codebook_size=codebook_size, seed=seed,
                                           source=source, fingerprint=fingerprint, niter=niter)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("/", "--")).strip("-")


def semantic_ids_path(dataset_name: str, preset: str, source: str) -> Path:
    """``runs/semantic_ids/<dataset>-<preset>-<source>.pt``, where session 16 looks for them."""
    return runs_dir() / "semantic_ids" / f"{_slug(dataset_name)}-{_slug(preset)}-{_slug(source)}.pt"


def save_semantic_ids(path: str | os.PathLike, sids: SemanticIDs) -> Path:
    """Write the codes, collision map, lookup, statistics and fingerprint to ``path`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT_VERSION, "codes": sids.codes, "codebook_sizes": list(sids.codebook_sizes),
               "source": sids.source, "fingerprint": sids.fingerprint, "stats": sids.stats,
               "collision_map": {",".join(map(str, k)): v for k, v in sids.collision_map().items()},
               "lookup": {",".join(map(str, k)): v for k, v in sids.lookup().items()}}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_semantic_ids(path: str | os.PathLike, fingerprint: str | None = None) -> SemanticIDs:
    """The semantic IDs saved at ``path``; with ``fingerprint``, refuses ones built for another dataset."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no semantic IDs at {display_path(path)}: build them with `python -m harness pipeline "
                                "--stages coldstart semantic-ids` (text), or build_semantic_ids + save_semantic_ids")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"{display_path(path)} has format {payload.get('format')}, this harness reads "
                         f"{FORMAT_VERSION}: build the semantic IDs again")
    if fingerprint is not None and payload["fingerprint"] != fingerprint:
        raise ValueError(f"the semantic IDs at {display_path(path)} were built for dataset fingerprint "
                         f"{payload['fingerprint']}, not {fingerprint} (this dataset): their item ids may mean other "
                         "items. Build them again for this dataset (build_semantic_ids + save_semantic_ids, or "
                         "`python -m harness pipeline --stages coldstart semantic-ids`)")
    sids = SemanticIDs(payload["codes"], tuple(payload["codebook_sizes"]), payload["source"], payload["fingerprint"],
                       payload.get("stats", {}))
    return sids


# --- the pipeline stage ---------------------------------------------------------------------------

AB_RANKERS = ("DLRM text + ID dropout", "DLRM semantic IDs + ID dropout", "DLRM text + semantic IDs + ID dropout")
AB_LABELS = {"DLRM text + ID dropout": "continuous (text vector)", "DLRM semantic IDs + ID dropout": "discrete (semantic IDs)",
             "DLRM text + semantic IDs + ID dropout": "both"}


def text_semantic_ids(ctx, run, cfg, log=print) -> SemanticIDs:
    """The text vectors' semantic IDs, saved at :func:`semantic_ids_path` (rebuilt only when their inputs change)."""
    from .cache import content_digest

    source = f"text:{run.text_model}"
    fingerprint = ctx.dataset.meta.get("fingerprint", "unknown")
    key = {"vectors": content_digest(run.vectors), "levels": int(cfg.codes.levels),
           "codebook_size": int(cfg.codes.codebook_size), "seed": int(cfg.codes.seed), "niter": int(cfg.codes.niter),
           "code": _session_code(ctx)}
    path = semantic_ids_path(ctx.dataset_name, ctx.preset, source)
    if path.is_file() and not ctx.retrain:
        try:
            sids = load_semantic_ids(path, fingerprint=fingerprint)
            if sids.stats.get("key") == key:
                log(f"   reused the semantic IDs at {display_path(path)} (vectors, settings and code unchanged)")
                return sids
        except (ValueError, RuntimeError, KeyError) as err:
            log(f"   rebuilding the semantic IDs at {display_path(path)}: {err}")
    sids = build_semantic_ids(run.vectors, levels=int(cfg.codes.levels), codebook_size=int(cfg.codes.codebook_size),
                              seed=int(cfg.codes.seed), source=source, fingerprint=fingerprint,
                              niter=int(cfg.codes.niter))
    sids.stats["key"] = key
    save_semantic_ids(path, sids)
    log(f"   semantic IDs saved to {display_path(path)} (for session 16)")
    return sids


def _session_code(ctx) -> str:
    from .cache import code_fingerprint

    return code_fingerprint(ctx.impl, (12,))[:16]


def _stage_semantic_ids(ctx) -> None:
    from ..config import load_config
    from . import coldstart as cs

    cfg = load_config("semantic_ids", preset=ctx.preset)
    run = cs.cold_start_run(ctx)
    sids = text_semantic_ids(ctx, run, cfg)
    print("   " + sids.describe().replace("\n", "\n   "))
    ctx.artifacts["semantic_ids"] = sids
    ctx.artifacts["semantic_ids_mode"] = str(cfg.embedding.mode)
    K = run.test.items.shape[1]
    notes = {}
    for name in ("DLRM ids", *AB_RANKERS):
        result, reused = cs.ensure_ranker(ctx, run, name)
        notes[name] = (f"session 12 A/B, {AB_LABELS.get(name, 'IDs only')}; reranks the text retriever's top-{K}; "
                       + cs.ranker_note(result, reused))
    new = [n for n in AB_RANKERS if n != "DLRM text + ID dropout"]
    boot = cs.cold_warm_bootstrap(run, ["DLRM ids", *AB_RANKERS], "DLRM text + ID dropout")
    cs.add_cold_warm_rows(ctx, run, new, "DLRM text + ID dropout", notes, boot)
    records = cs.cold_warm_records(run, list(AB_RANKERS), "DLRM text + ID dropout", boot)
    for r in records:
        r["representation"] = AB_LABELS[r["model"]]
    print(cs.format_cold_warm(records, f"A/B of item representations on {ctx.dataset_name}: continuous vs discrete vs "
                              f"both (semantic IDs: {sids.levels} levels x {sids.codebook_sizes[0]} codes, "
                              f"{ctx.artifacts['semantic_ids_mode']} of per-level embeddings)", "DLRM text + ID dropout"))
    path = cs.write_records(ctx, "semantic_ids", records, {"semantic_ids": {
        "path": display_path(semantic_ids_path(ctx.dataset_name, ctx.preset, sids.source)),
        "codebook_sizes": list(sids.codebook_sizes), **{k: v for k, v in sids.stats.items() if k != "key"}}})
    print(f"   (A/B table written to {display_path(path)})")


def _needs():
    from .coldstart import _NEEDS

    return {**_NEEDS, 12: ()}


from .runner import Stage  # noqa: E402  (the stage list closes the module)

STAGES = [
    Stage("semantic-ids", _stage_semantic_ids, "semantic IDs of the text vectors (saved for session 16) and the A/B "
          "of continuous vs discrete vs both on cold and warm items (sessions 07-12)", needs=_needs()),
]
