"""Fixtures of session 06: random embeddings, and a tiny two-tower trained for a few seconds.

The trained model comes from the reference components of sessions 02-04 (never from the
learner's session 06 code), on the synthetic dataset's smoke preset, prepared in a temporary
data folder so the tests neither need nor touch ``data/``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from harness.autograder.loader import load_session

LEARNED_DIM = 32


def random_embeddings(n_items: int, dim: int, seed: int, normalise: bool = True) -> torch.Tensor:
    """(n_items + 1, dim) float32 with a zero padding row; unit rows, or norms spread over [0.2, 3]."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n_items + 1, dim, generator=g)
    emb = emb / emb.norm(dim=1, keepdim=True)
    if not normalise:
        emb = emb * (0.2 + 2.8 * torch.rand(n_items + 1, 1, generator=g))
    emb[0] = 0.0
    return emb


def random_queries(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, dim, generator=g)
    return q / q.norm(dim=1, keepdim=True)


def padded(rows: list[list[int]], width: int | None = None) -> torch.Tensor:
    """int64 (B, width) right-padded with 0."""
    width = width if width is not None else max([len(r) for r in rows] + [1])
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def brute_force_topk(queries: torch.Tensor, item_emb: torch.Tensor, k: int,
                     seen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, item ids) of the k best items by inner product, padding and seen items excluded, in float64."""
    scores = queries.double() @ item_emb.double().T
    scores[:, 0] = -float("inf")
    if seen is not None:
        scores.scatter_(1, seen, -float("inf"))
    values, ids = torch.topk(scores, k, dim=1)
    return values, ids


def true_scores(queries: torch.Tensor, item_emb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """float64 inner products of each query with the items it got (ids >= 1)."""
    return (queries.double()[:, None, :] * item_emb.double()[ids.clamp_min(0)]).sum(-1)


@pytest.fixture(scope="session")
def reference():
    """Session 06's reference solution (for provided helpers such as ``synthetic_catalog``)."""
    return load_session(6, "solutions")


@pytest.fixture(scope="session")
def learned(tmp_path_factory):
    """A mean-pool two-tower trained for ~1 s on synthetic data with planted structure.

    Returns a dict: ``item_emb`` (n_items + 1, d) float32 (row 0 zeros), ``queries`` (U, d) test users'
    embeddings, ``seen`` (U, S) their seen items (padded), ``targets`` (U,) held-out items, ``dataset``.
    """
    from torch.utils.data import DataLoader

    from harness.data import load_dataset
    from harness.pipeline.retrieval import history_batch, windowed_examples

    saved_dir, saved_threads = os.environ.get("HARNESS_DATA_DIR"), torch.get_num_threads()
    os.environ["HARNESS_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they bring
    try:
        ds = load_dataset("synthetic", "smoke")
        s02, s03, s04 = (load_session(n, "solutions") for n in (2, 3, 4))
        codes, names = ds.category_codes()
        torch.manual_seed(0)
        model = s03.build_two_tower(ds.n_items, torch.from_numpy(codes), len(names), tower="mean", dim=LEARNED_DIM,
                                    category_dim=8, dropout=0.0)
        examples = windowed_examples(ds.sequences("valid"), 20)
        loader = DataLoader(examples, batch_size=32, shuffle=True, collate_fn=s02.collate_sequences,
                            generator=torch.Generator().manual_seed(0))
        optimizer = s04.build_optimizer(model, 3e-3, 0.0)
        log_q = s04.item_log_q(torch.from_numpy(ds.item_counts("valid")))
        for _ in range(8):
            for batch in loader:
                s04.training_step(model, batch, optimizer, 0.1, log_q)
        model.eval()
        users, targets = ds.targets("test")
        sequences = ds.sequences("test")
        with torch.no_grad():
            item_emb = model.item_tower(torch.arange(ds.n_items + 1)).float()
            batch = history_batch(sequences, users, 20)
            queries = model.user_tower(batch["history"], batch["mask"]).float()
        seen = padded([list(np.asarray(sequences[u])) for u in users])
    finally:
        torch.set_num_threads(saved_threads)
        if saved_dir is None:
            os.environ.pop("HARNESS_DATA_DIR", None)
        else:
            os.environ["HARNESS_DATA_DIR"] = saved_dir
    return {"item_emb": item_emb, "queries": queries, "seen": seen, "targets": torch.tensor(np.array(targets)),
            "dataset": ds}


def faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


GPU_SKIP_REASON = ("FAISS sees no GPU here (faiss-cpu build, or no CUDA device); the GPU path is tested on a machine "
                   "with faiss-gpu and a GPU")


def expect_same_topk(got_ids: torch.Tensor, queries: torch.Tensor, item_emb: torch.Tensor, k: int, what: str,
                     seen: torch.Tensor | None = None, hint: str | None = None) -> None:
    """``got_ids`` (B, k) item ids are the brute-force top-k by inner product (a swap of exactly tied scores is fine)."""
    from harness.autograder.checks import expect_shape, fail

    exact_scores, exact_ids = brute_force_topk(queries, item_emb, k, seen)
    got_ids = torch.as_tensor(got_ids)
    expect_shape(got_ids, (len(queries), k), what)
    same = got_ids.long() == exact_ids
    tied = (true_scores(queries, item_emb, got_ids.long()) - exact_scores).abs() <= 1e-5
    ok = same | (tied & (got_ids > 0))
    if not bool(ok.all()):
        row = int((~ok).any(dim=1).nonzero()[0])
        fail(f"{what}: user row {row} differs from the brute-force top-{k} "
             f"({int((~ok).sum())} of {ok.numel()} entries differ)",
             expected=str(exact_ids[row].tolist()), got=str(got_ids[row].tolist()), hint=hint)


class FakeGpuFaiss:
    """Stands in for FAISS's GPU calls on a machine without one: records what would have moved to the GPU."""

    def __init__(self, monkeypatch, nb):
        import faiss

        self.resources = object()
        self.copies = []
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", self._to_gpu, raising=False)
        monkeypatch.setitem(nb._globals(), "gpu_resources", lambda: self.resources)

    def _to_gpu(self, resources, device, index):
        self.copies.append((resources, device, index))
        return GpuIndexStandIn(index)


class GpuIndexStandIn:
    """What the fake ``index_cpu_to_gpu`` returns: searches like the CPU index it wraps."""

    def __init__(self, index):
        self.cpu_index = index
        self.nprobe = getattr(index, "nprobe", None)

    def __getattr__(self, name):
        return getattr(self.cpu_index, name)
