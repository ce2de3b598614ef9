"""Exercise 5: build_ivf_index."""
import faiss
import pytest
import torch

from harness.autograder.checks import expect, expect_equal

from .conftest import (GPU_SKIP_REASON, brute_force_topk, expect_same_topk, faiss_gpus, random_embeddings,
                       random_queries)

pytestmark = pytest.mark.exercise("build_ivf_index")

# The learned-embedding check: a 20,000-item catalog grown from a trained tower's item vectors.
CATALOG, NLIST, NPROBE, SHARE = 20_000, 64, 8, 0.9
# The held-out check: the trained model's own catalog (about 300 items).
REAL_NLIST, REAL_NPROBE = 16, 4


def _search(index, queries, k):
    _, labels = index.search(queries.numpy().astype("float32"), k)
    return torch.from_numpy(labels).long() + 1


def _overlap(approx, exact):
    return sum(len(set(a.tolist()) & set(e.tolist())) / len(e) for a, e in zip(approx, exact)) / len(exact)


def test_structure(nb):
    emb = random_embeddings(2000, 16, seed=0)
    index = nb.build_ivf_index(emb, nlist=32, nprobe=5, use_gpu=False)
    expect(isinstance(index, faiss.IndexIVF), "an IVF index (faiss.IndexIVFFlat)", got=type(index).__name__)
    expect(bool(index.is_trained), "the index is trained (k-means on the item vectors)",
           hint="index.train(vectors) before index.add(vectors)")
    expect_equal(int(index.ntotal), 2000, "vectors in the index (2000 items; row 0 is padding)",
                 hint="train on and add item_emb[1:], never the padding row")
    expect_equal(int(index.nlist), 32, "nlist (number of inverted lists)")
    expect_equal(int(index.nprobe), 5, "nprobe (lists scanned per query)",
                 hint="index.nprobe = nprobe; FAISS's default is 1")
    expect(index.metric_type == faiss.METRIC_INNER_PRODUCT, "the index scores by inner product",
           got="L2" if index.metric_type == faiss.METRIC_L2 else str(index.metric_type),
           hint="faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT): the default metric is L2")


def test_probing_every_list_is_exact_inner_product(nb):
    emb = random_embeddings(2000, 16, seed=1, normalise=False)
    queries = random_queries(30, 16, seed=2) * 3.0
    index = nb.build_ivf_index(emb, nlist=16, nprobe=16, use_gpu=False)
    expect_same_topk(_search(index, queries, 10), queries, emb, 10,
                     "IVF with nprobe = nlist (every list scanned) on vectors of different norms",
                     hint="inner product throughout: faiss.METRIC_INNER_PRODUCT in IndexIVFFlat (L2 is the default), "
                          "and label r is item r + 1")


def test_padding_never_indexed(nb):
    emb = random_embeddings(500, 8, seed=3)
    queries = random_queries(10, 8, seed=4)
    emb[0] = queries.mean(dim=0) * 50
    index = nb.build_ivf_index(emb, nlist=8, nprobe=8, use_gpu=False)
    got = _search(index, queries, 5)
    expect(not bool((got == 0).any()) and int(index.ntotal) == 500, "item 0 (padding) is never returned",
           got=f"ntotal {int(index.ntotal)}, first row {got[0].tolist()}", hint="train on and add item_emb[1:] only")


def test_keeps_recall_on_learned_embeddings(nb, learned, reference):
    catalog = reference.synthetic_catalog(learned["item_emb"], CATALOG, seed=0)
    queries = learned["queries"]
    _, exact = brute_force_topk(queries, catalog, 10)
    index = nb.build_ivf_index(catalog, nlist=NLIST, nprobe=NPROBE, use_gpu=False)
    got = _overlap(_search(index, queries, 10), exact)
    index.nprobe = 1
    at_one = _overlap(_search(index, queries, 10), exact)
    expect(got >= SHARE, f"IVF (nlist={NLIST}, nprobe={NPROBE}) on a {CATALOG:,}-item catalog of learned embeddings "
           f"finds at least {SHARE:.0%} of the exact top-10", got=f"{got:.3f} (with nprobe=1 it would be {at_one:.3f})",
           hint="set index.nprobe = nprobe after building (the default, 1, scans one list of 64), and use "
                "METRIC_INNER_PRODUCT for both the lists and the quantiser")


def test_keeps_held_out_hits_on_learned_embeddings(nb, learned):
    emb, queries, seen, targets = learned["item_emb"], learned["queries"], learned["seen"], learned["targets"]
    fetch = 10 + int((seen != 0).sum(dim=1).max())

    def hits(index):
        ids = _search(index, queries, fetch)
        total = 0
        for b in range(len(ids)):
            history = set(seen[b].tolist())
            kept = [i for i in ids[b].tolist() if i > 0 and i not in history][:10]
            total += int(int(targets[b]) in kept)
        return total

    exact = hits(_flat(emb))
    index = nb.build_ivf_index(emb, nlist=REAL_NLIST, nprobe=REAL_NPROBE, use_gpu=False)
    got = hits(index)
    index.nprobe = 1
    at_one = hits(index)
    expect(exact > 50, "the tiny trained model retrieves held-out items exactly (fixture sanity)", got=exact)
    expect(got >= SHARE * exact, f"held-out HR@10 (seen items excluded) through IVF (nlist={REAL_NLIST}, "
           f"nprobe={REAL_NPROBE}) on the trained model's own {len(emb) - 1} items keeps at least {SHARE:.0%} of exact",
           got=f"{got} hits vs {exact} exact (with nprobe=1 it would be {at_one})",
           hint="set index.nprobe = nprobe; inner-product metric for the lists and the quantiser")


def _flat(catalog):
    index = faiss.IndexFlatIP(catalog.shape[1])
    index.add(catalog[1:].numpy().astype("float32"))
    return index


def test_gpu_index_matches_cpu(nb):
    emb = random_embeddings(3000, 16, seed=5)
    queries = random_queries(20, 16, seed=6)
    cpu = nb.build_ivf_index(emb, nlist=16, nprobe=16, use_gpu=False)
    if faiss_gpus() == 0:
        pytest.skip(GPU_SKIP_REASON)
    gpu = nb.build_ivf_index(emb, nlist=16, nprobe=16, use_gpu=True)
    expect("Gpu" in type(gpu).__name__, "use_gpu=True builds a GPU index", got=type(gpu).__name__,
           hint="return maybe_to_gpu(index, use_gpu)")
    expect_equal(int(gpu.nprobe), 16, "nprobe on the GPU index")
    expect_same_topk(_search(gpu, queries, 10), queries, emb, 10, "GPU IVF (nprobe = nlist) top-10")
    expect_equal(_search(gpu, queries, 10), _search(cpu, queries, 10), "GPU and CPU IVF indexes agree")


def test_coarse_quantiser_scores_by_inner_product(nb):
    emb = random_embeddings(1000, 16, seed=8, normalise=False)
    index = nb.build_ivf_index(emb, nlist=16, nprobe=2, use_gpu=False)
    quantizer = faiss.downcast_index(index.quantizer)
    expect(quantizer.metric_type == faiss.METRIC_INNER_PRODUCT, "the coarse quantiser is an inner-product index",
           got="L2 (IndexFlatL2)" if quantizer.metric_type == faiss.METRIC_L2 else str(quantizer.metric_type),
           hint="quantizer = faiss.IndexFlatIP(d): with an L2 quantiser the lists are formed and probed by distance "
                "while the items are ranked by inner product, so for unnormalised vectors the best lists are missed")


def test_a_gpu_request_goes_through_maybe_to_gpu(nb, monkeypatch):
    calls = []

    def spy(index, use_gpu=None):
        calls.append(use_gpu)
        return index

    monkeypatch.setitem(nb._globals(), "maybe_to_gpu", spy)
    index = nb.build_ivf_index(random_embeddings(400, 8, seed=9), nlist=8, nprobe=3, use_gpu=True)
    expect(calls == [True], "build_ivf_index(use_gpu=True) hands the trained index to maybe_to_gpu(index, use_gpu=True)",
           got=calls, hint="train and add on the CPU, then index = maybe_to_gpu(index, use_gpu), then set nprobe")
    expect_equal(int(index.nprobe), 3, "nprobe is set on the index maybe_to_gpu returned")
