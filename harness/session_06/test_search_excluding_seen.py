"""Exercise 6: search_excluding_seen (graded with indexes built here, label r = item r + 1)."""
import faiss
import pytest
import torch

from harness.autograder.checks import expect, expect_dtype, expect_equal, expect_shape

from .conftest import (GPU_SKIP_REASON, brute_force_topk, expect_same_topk, faiss_gpus, padded, random_embeddings,
                       random_queries)

pytestmark = pytest.mark.exercise("search_excluding_seen")


def _flat(emb):
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb[1:].numpy().astype("float32"))
    return index


def _random_histories(n_users, n_items, max_len, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, max_len + 1, (n_users,), generator=g)
    return padded([(torch.randperm(n_items, generator=g)[:int(n)] + 1).tolist() for n in lengths])


def _leaks(out, seen):
    for b in range(len(out)):
        bad = (set(out[b].tolist()) - {0}) & set(seen[b].tolist())
        if bad:
            return b, sorted(bad)
    return None


def test_shape_and_dtype(nb):
    emb = random_embeddings(100, 8, seed=0)
    out = nb.search_excluding_seen(_flat(emb), random_queries(4, 8, seed=1), padded([[1, 2], [], [3], [4, 5, 6]]), 7)
    expect_shape(out, (4, 7), "item ids for 4 users, k=7")
    expect_dtype(out, torch.int64, "returned item ids", hint="torch.from_numpy(labels).long() + 1")
    expect(out.device.type == "cpu", "ids come back as a CPU tensor", got=out.device.type)


def test_no_seen_item_on_random_histories(nb):
    emb = random_embeddings(400, 16, seed=2)
    queries = random_queries(64, 16, seed=3)
    seen = _random_histories(64, 400, 60, seed=4)
    out = nb.search_excluding_seen(_flat(emb), queries, seen, 20)
    leak = _leaks(out, seen)
    expect(leak is None, "no user gets an item they have seen",
           got=None if leak is None else f"user row {leak[0]} got seen items {leak[1]}",
           hint="drop every candidate that appears in the user's own row of `seen`")
    real = out != 0
    if not bool((real.cummin(dim=1).values == real).all()):
        row = int((real.cummin(dim=1).values != real).any(dim=1).nonzero()[0])
        expect(False, "kept items come first, in rank order; padding only at the end", got=f"user row {row}: "
               f"{out[row].tolist()}", hint="don't overwrite dropped candidates in place: move the kept ones to the "
               "front with a stable sort on the 'dropped' flag, then take the first k")
    expect(not bool((out == 0).any()), "400 items, at most 60 seen: every user gets 20 real items",
           got=f"{int((out == 0).sum())} padding entries",
           hint="over-fetch: search k + (the largest number of seen items in the batch)")
    expect_same_topk(out, queries, emb, 20, "top-20 unseen items", seen=seen,
                     hint="FAISS label r is item r + 1; keep the kept candidates in FAISS's order (stable sort)")


def test_seen_items_are_the_top_scorers(nb):
    emb = random_embeddings(300, 16, seed=5)
    queries = random_queries(8, 16, seed=6)
    _, top = brute_force_topk(queries, emb, 60)
    seen = top[:, :40]  # each user has seen their 40 best-scoring items
    out = nb.search_excluding_seen(_flat(emb), queries, seen, 10)
    expect_equal(out, top[:, 40:50], "users who have seen their 40 best items get items ranked 41..50",
                 hint="search for k + S candidates (S = max seen per user), drop the seen ones, keep the first k; "
                      "searching only k leaves nothing after the seen items are removed")


def test_fewer_unseen_than_k_pads_with_zero(nb):
    emb = random_embeddings(8, 4, seed=7)
    queries = random_queries(2, 4, seed=8)
    seen = padded([[1, 2, 3, 4, 5], []])
    out = nb.search_excluding_seen(_flat(emb), queries, seen, 5)
    expect_equal(sorted(out[0, :3].tolist()), [6, 7, 8], "the first user's 3 unseen items come first")
    expect_equal(out[0, 3:], torch.zeros(2, dtype=torch.long), "then padding 0s: only 3 of 8 items are unseen",
                 hint="FAISS returns label -1 when it runs out; -1 + 1 = 0, the padding id; drop it, then pad at the end")
    _, plain = brute_force_topk(queries[1:], emb, 5)
    expect_equal(out[1], plain[0], "a user with no history gets the plain top-5")


def test_ivf_running_out_of_candidates(nb):
    emb = random_embeddings(64, 8, seed=9)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(8), 8, 8, faiss.METRIC_INNER_PRODUCT)
    index.train(emb[1:].numpy())
    index.add(emb[1:].numpy())
    index.nprobe = 1  # one list of ~8 items: FAISS pads its answer with label -1
    queries = random_queries(16, 8, seed=10)
    seen = _random_histories(16, 64, 4, seed=11)
    out = nb.search_excluding_seen(index, queries, seen, 12)
    expect(not bool((out < 0).any()), "no negative ids (FAISS's -1 'no result' becomes padding 0)",
           got=out[0].tolist())
    expect(_leaks(out, seen) is None, "no seen item")
    real = out != 0
    expect(bool((real.cummin(dim=1).values == real).all()), "padding 0s only at the end of each row",
           got=out[int((real.cummin(dim=1).values != real).any(dim=1).nonzero()[0])].tolist()
           if not bool((real.cummin(dim=1).values == real).all()) else None,
           hint="move dropped candidates to the end with a stable sort on the 'dropped' flag")


def test_accepts_tower_outputs(nb):
    emb = random_embeddings(200, 8, seed=12)
    queries = random_queries(5, 8, seed=13)
    seen = padded([[1], [2, 3], [], [4], [5]])
    expected = nb.search_excluding_seen(_flat(emb), queries, seen, 6)
    for what, q in (("a float64 tensor", queries.double()), ("a tensor that requires grad", queries.clone().requires_grad_(True) * 1.0)):
        try:
            out = nb.search_excluding_seen(_flat(emb), q, seen, 6)
        except NotImplementedError:
            raise
        except (RuntimeError, TypeError, ValueError, AssertionError) as err:
            expect(False, f"queries as {what} work", got=f"{type(err).__name__}: {str(err)[:160]}",
                   hint="convert with faiss_array(queries)")
        expect_equal(out, expected, f"results for queries as {what}")


def test_gpu_index(nb):
    emb = random_embeddings(500, 16, seed=14)
    queries = random_queries(16, 16, seed=15)
    seen = _random_histories(16, 500, 50, seed=16)
    cpu = nb.search_excluding_seen(_flat(emb), queries, seen, 10)
    if faiss_gpus() == 0:
        pytest.skip(GPU_SKIP_REASON)
    gpu_index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, _flat(emb))
    out = nb.search_excluding_seen(gpu_index, queries, seen, 10)
    expect_equal(out, cpu, "the same results from a GPU flat index")
