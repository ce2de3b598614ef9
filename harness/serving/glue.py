"""Provided pieces of the request path, which the endpoint logic of session 14 puts together.

    query = Query(user_id=0, history=[12, 50, 7])            # what the endpoint resolved a request to
    history, mask = pad_histories([query.history], bundle.max_len)     # the retriever's input, as offline
    seen = padded_seen([query.history])                       # (B, S) ids to exclude, 0-padded
    cold = text_candidates(bundle, [query.history], exclude)  # (B, M) cold items by text similarity
    batch = ranker_batch(bundle, users, histories, candidates, queries)   # the DLRM's features, B*C pairs
    body = response_body(bundle, query, ids, scores, fallback=False)      # the JSON answer

Everything here is batched: row b of every tensor is request b.

**The features of B requests x C candidates.** ``FeatureBuilder.batch`` featurises one pair per row;
calling it on B*C rows would rebuild each request's history bag C times. :func:`ranker_batch` calls
it twice instead: once per request for the user side (id, demographics, history bag, activity)
and once per candidate for the item side, then repeats the user side C times. The result is
exactly what one ``batch`` call over the B*C pairs gives (``tests/test_serving.py`` checks it):
a known user's features come from the builder's stored state (the same as offline evaluation),
an explicit history's from that history.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .bundle import Bundle

# Dense columns that describe the user (the rest describe the item, or are given per pair).
USER_DENSE = ("log_user_count",)


@dataclass(frozen=True)
class Query:
    """What a request asks, once resolved: a user id (0 = anonymous) and the history to rank for.

    ``history`` holds item ids, most recent last: the known user's stored history, or the
    request's own. ``cold`` (no user, no history) is the visitor nobody knows anything about.
    """

    user_id: int = 0
    history: tuple[int, ...] = field(default_factory=tuple)

    @property
    def cold(self) -> bool:
        return self.user_id == 0 and len(self.history) == 0


_COLLATE: dict = {}


def _collate():
    """Session 02's ``collate_sequences`` from the upstream tree, looked up once per process and tree
    (``upstream`` checks the notebook file on every call: a file-system round trip per request)."""
    from ..autograder.loader import upstream, upstream_tree

    tree = upstream_tree()
    if tree not in _COLLATE:
        _COLLATE[tree] = upstream(2).collate_sequences
    return _COLLATE[tree]


def pad_histories(histories: Sequence[Sequence[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The retriever's input: the last ``max_len`` items of each history, left-padded.

    Returns ``history`` int64 (B, L) and ``mask`` bool (B, L), L = the longest kept history (at least 1),
    collated by session 02's ``collate_sequences`` exactly as offline evaluation does.
    """
    examples = [{"user_id": 0, "target": 0,
                 "history": torch.as_tensor(np.asarray(list(h)[-max_len:], dtype=np.int64), dtype=torch.long)}
                for h in histories]
    batch = _collate()(examples, padding_side="left")
    return batch["history"], batch["mask"]


def padded_seen(histories: Sequence[Sequence[int]]) -> torch.Tensor:
    """int64 (B, S): every item of each history (not only the last ``max_len``), right-padded with 0."""
    width = max([len(h) for h in histories] + [1])
    out = torch.zeros(len(histories), width, dtype=torch.long)
    for b, h in enumerate(histories):
        if len(h):
            out[b, :len(h)] = torch.as_tensor(list(h), dtype=torch.long)
    return out


def text_candidates(bundle: Bundle, histories: Sequence[Sequence[int]], exclude: torch.Tensor,
                    n: int | None = None) -> torch.Tensor:
    """Cold items (no interaction before the serving split) nearest to each history in text space.

    The retriever and the ranker never saw a cold item interact, so its embedding says little;
    its text does (session 11). The query is the normalised mean of the text vectors of the
    history's last ``bundle.max_len`` items; the answer, the ``n`` cold items (default
    ``bundle.n_text_candidates``) with the highest cosine, never one in ``exclude`` (B, E)
    (the seen items and the retriever's candidates).

    Returns int64 (B, n), 0-padded; (B, 0) when the bundle has no text path or no cold item.
    """
    n = bundle.n_text_candidates if n is None else n
    B = len(histories)
    if n == 0 or bundle.text_index is None or bundle.text_vectors is None:
        return torch.zeros(B, 0, dtype=torch.long)
    history, mask = pad_histories(histories, bundle.max_len)  # (B, L), the same window as the retriever's
    exclude = exclude.detach().cpu().long()
    if bundle.text_table is not None:
        # Few cold items: the cosine with the normalised mean ranks cold items as the sum of the history's
        # cosines with each of them does (the norm is the same for every cold item of a row), and those
        # cosines are a table computed at load time: no 384-d vectors per request.
        scores = (bundle.text_table[history] * mask[..., None]).sum(1)  # (B, n_cold)
        cold = torch.from_numpy(bundle.text_ids)
        blocked = (exclude[:, :, None] == cold[None, None, :]).any(dim=1) | ~mask.any(dim=1, keepdim=True)
        scores = scores.masked_fill(blocked, -float("inf"))
        top, where = torch.sort(scores, dim=1, descending=True, stable=True)
        out = torch.where(torch.isinf(top), 0, cold[where])[:, :n]
        if out.shape[1] < n:
            out = torch.cat([out, torch.zeros(B, n - out.shape[1], dtype=torch.long)], dim=1)
        return out
    vectors = bundle.text_vectors[history] * mask[..., None]  # padding rows are zero anyway
    queries = torch.nn.functional.normalize(vectors.sum(1), dim=1)  # an empty history stays zero
    fetch = min(len(bundle.text_ids), n + int(exclude.shape[1]))
    _, labels = bundle.text_index.search(np.ascontiguousarray(queries.numpy(), dtype=np.float32), fetch)
    ids = torch.from_numpy(np.where(labels >= 0, bundle.text_ids[np.clip(labels, 0, None)], 0)).long()
    # drop excluded ids and padding (as session 06's search_excluding_seen does), keep the rest in order
    excluded = torch.cat([torch.zeros(B, 1, dtype=torch.long), exclude], dim=1).sort(dim=1).values
    where = torch.searchsorted(excluded, ids).clamp_max(excluded.shape[1] - 1)
    drop = (excluded.gather(1, where) == ids) | ~mask.any(dim=1, keepdim=True)
    order = torch.argsort(drop.to(torch.int8), dim=1, stable=True)
    out = torch.where(drop, 0, ids).gather(1, order)[:, :n]
    if out.shape[1] < n:
        out = torch.cat([out, torch.zeros(B, n - out.shape[1], dtype=torch.long)], dim=1)
    return out


def _extra_dense(bundle: Bundle, names: Sequence[str], candidates: torch.Tensor,
                 queries: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Values of the ranker's caller-provided dense columns for the (B, C) candidates."""
    out = {}
    for name in names:
        if name in ("retriever_score", "retrieval_score", "two_tower_score"):
            if queries is None:
                raise ValueError(f"the ranker needs `{name}`: pass the retriever's queries to ranker_batch")
            emb = bundle.item_embeddings[candidates.clamp_min(0)]  # (B, C, d)
            out[name] = (emb * queries.float()[:, None, :]).sum(-1).reshape(-1)
        else:
            raise ValueError(f"the ranker expects a dense column `{name}` that the service cannot compute; "
                             "serve a ranker without it, or teach harness/serving/glue.py::_extra_dense to fill it")
    return out


def ranker_batch(bundle: Bundle, users: Sequence[int] | torch.Tensor, histories: Sequence[Sequence[int]],
                 candidates: torch.Tensor, queries: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The ranker's input for every (request, candidate) pair: a dict of tensors with B * C rows.

    Args:
        users: int (B,): the request's user id, 0 for an anonymous history.
        histories: B lists of item ids (most recent last): used for anonymous rows only; a known
            user's features come from the bundle's stored state, as in offline evaluation.
        candidates: int64 (B, C) item ids, 0 = padding (featurised as an unknown item; mask its score).
        queries: float (B, d), the retriever's user vectors, for a ranker that takes the retriever's
            score as a feature.

    Row ``b * C + j`` is pair (request b, candidate j): ``ranker(batch).reshape(B, C)``.
    """
    builder = bundle.features
    candidates = torch.as_tensor(candidates, dtype=torch.long).cpu()
    B, C = candidates.shape
    users = torch.as_tensor(np.asarray(users, dtype=np.int64) if not torch.is_tensor(users) else users,
                            dtype=torch.long).reshape(-1).cpu()
    if len(users) != B or len(histories) != B:
        raise ValueError(f"users ({len(users)}), histories ({len(histories)}) and candidates ({B}) need one row "
                         "per request")
    extra_names = list(getattr(builder, "_extra_dense", ()))
    zeros_extra = lambda n: {name: np.zeros(n, dtype=np.float32) for name in extra_names} or None  # noqa: E731

    # user side, one row per request: known users from the stored state, others from their history
    known = (users > 0).nonzero().flatten()
    anonymous = (users == 0).nonzero().flatten()
    parts = []
    if len(known):
        parts.append((known, builder.batch(users[known], torch.zeros(len(known), dtype=torch.long),
                                           extra_dense=zeros_extra(len(known)))))
    if len(anonymous):
        rows = [np.asarray(list(histories[int(b)]), dtype=np.int64) for b in anonymous]
        parts.append((anonymous, builder.batch(0, torch.zeros(len(anonymous), dtype=torch.long), histories=rows,
                                               extra_dense=zeros_extra(len(anonymous)))))
    user_side: dict[str, torch.Tensor] = {}
    for rows, part in parts:
        for key, value in part.items():
            if key not in user_side:
                user_side[key] = torch.zeros((B, *value.shape[1:]), dtype=value.dtype)
            user_side[key][rows] = value

    # item side, one row per pair
    item_side = builder.batch(0, candidates.reshape(-1), extra_dense=zeros_extra(B * C))
    spec = builder.spec
    out: dict[str, torch.Tensor] = {"user": user_side["user"].repeat_interleave(C), "item": item_side["item"]}
    for f in spec.tables:
        out[f.name] = user_side[f.name].repeat_interleave(C, dim=0) if f.side == "user" else item_side[f.name]
    dense = item_side["dense"].clone()
    for j, name in enumerate(spec.dense):
        if name in USER_DENSE:
            dense[:, j] = user_side["dense"][:, j].repeat_interleave(C)
    for name, values in _extra_dense(bundle, extra_names, candidates, queries).items():
        dense[:, spec.dense.index(name)] = values.float()
    out["dense"] = dense
    return out


def response_body(bundle: Bundle, query: Query, ids: Sequence[int] | torch.Tensor,
                  scores: Sequence[float] | torch.Tensor, *, fallback: bool) -> dict[str, Any]:
    """The JSON answer for one request, in the shape the response model of session 14 describes.

    ``ids`` and ``scores`` are one row, best first; padding entries (id 0) are left out.
    """
    ids = ids.tolist() if torch.is_tensor(ids) else list(ids)
    scores = scores.tolist() if torch.is_tensor(scores) else list(scores)
    items = [{"item_id": int(i), "title": str(bundle.titles[int(i)]), "score": float(s),
              "cold": bool(bundle.cold[int(i)])} for i, s in zip(ids, scores) if int(i) != 0]
    return {"user_id": query.user_id or None, "items": items, "fallback": bool(fallback),
            "strategy": "popularity" if fallback else "retrieve-rank", "bundle_id": bundle.bundle_id}


__all__ = ["Query", "USER_DENSE", "pad_histories", "padded_seen", "ranker_batch", "response_body", "text_candidates"]
