"""Exercise 4: build_flat_index."""
import faiss
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_equal

from .conftest import (GPU_SKIP_REASON, expect_same_topk, faiss_gpus, random_embeddings, random_queries)

pytestmark = pytest.mark.exercise("build_flat_index")

MAPPING_HINT = "index item_emb[1:] (rows 1..n, in order): FAISS label r is then item r + 1"


def _search(index, queries, k):
    _, labels = index.search(queries.numpy().astype("float32"), k)
    return torch.from_numpy(labels).long() + 1


def test_holds_items_1_to_n(nb):
    emb = random_embeddings(200, 16, seed=0)
    index = nb.build_flat_index(emb, use_gpu=False)
    expect_equal(int(index.ntotal), 200, "vectors in the index (200 items; row 0 is padding)",
                 hint="add item_emb[1:], not item_emb: padding is not an item")
    expect_equal(int(index.d), 16, "index dimension")
    expect(index.metric_type == faiss.METRIC_INNER_PRODUCT, "the index scores by inner product",
           got="L2" if index.metric_type == faiss.METRIC_L2 else str(index.metric_type),
           hint="faiss.IndexFlatIP(d); IndexFlatL2 ranks by distance")


def test_label_r_is_item_r_plus_1(nb):
    emb = random_embeddings(300, 16, seed=1)
    index = nb.build_flat_index(emb, use_gpu=False)
    items = torch.tensor([1, 2, 57, 300])
    got = _search(index, emb[items], 1)[:, 0]
    expect_equal(got, items, "each item's own vector finds that item first (label + 1 = item id)", hint=MAPPING_HINT)


def test_equals_brute_force_on_random_embeddings(nb):
    emb = random_embeddings(1000, 32, seed=2)
    queries = random_queries(40, 32, seed=3)
    index = nb.build_flat_index(emb, use_gpu=False)
    expect_same_topk(_search(index, queries, 20), queries, emb, 20, "flat index top-20 on unit vectors",
                     hint=MAPPING_HINT)


def test_inner_product_on_unnormalised_vectors(nb):
    emb = random_embeddings(1000, 32, seed=4, normalise=False)
    queries = random_queries(40, 32, seed=5) * 2.5
    index = call_leaving_inputs_unchanged(nb.build_flat_index, emb, use_gpu=False, what="build_flat_index",
                                          hint="faiss_array shares memory with a float32 CPU tensor: an in-place "
                                               "faiss.normalize_L2 rewrites the caller's embeddings")
    expect_same_topk(_search(index, queries, 10), queries, emb, 10,
                     "flat index top-10 when item norms differ (inner product, not L2 distance)",
                     hint="faiss.IndexFlatIP: for unit vectors L2 and inner product agree, for these they do not")


def test_equals_brute_force_on_learned_embeddings(nb, learned):
    emb, queries = learned["item_emb"], learned["queries"]
    index = nb.build_flat_index(emb, use_gpu=False)
    expect_same_topk(_search(index, queries, 10), queries, emb, 10,
                     "flat index top-10 of a trained two-tower (synthetic data)", hint=MAPPING_HINT)


def test_padding_row_never_indexed(nb):
    emb = random_embeddings(100, 8, seed=6)
    queries = random_queries(10, 8, seed=7)
    emb[0] = queries.mean(dim=0) * 50  # a corrupted padding row that would win every search
    index = nb.build_flat_index(emb, use_gpu=False)
    got = _search(index, queries, 5)
    expect(not bool((got == 0).any()) and int(index.ntotal) == 100, "item 0 (padding) is never returned",
           got=f"ntotal {int(index.ntotal)}, first row {got[0].tolist()}", hint="index item_emb[1:] only")


def test_accepts_tower_outputs(nb):
    base = random_embeddings(120, 8, seed=8)
    queries = random_queries(6, 8, seed=9)
    variants = {
        "a tensor that requires grad": base.clone().requires_grad_(True) * 1.0,
        "a float64 tensor": base.double(),
        "a non-contiguous view": base.T.contiguous().T,
    }
    for what, emb in variants.items():
        try:
            index = nb.build_flat_index(emb, use_gpu=False)
        except NotImplementedError:
            raise
        except (RuntimeError, TypeError, ValueError, AssertionError) as err:
            expect(False, f"build_flat_index accepts {what}", got=f"{type(err).__name__}: {str(err)[:160]}",
                   hint="convert with faiss_array(item_emb[1:]): detached float32 C-contiguous numpy on the CPU")
        expect_same_topk(_search(index, queries, 5), queries, base, 5, f"top-5 from an index built on {what}")


def test_gpu_index_matches_cpu(nb):
    emb = random_embeddings(500, 16, seed=10)
    queries = random_queries(20, 16, seed=11)
    cpu = nb.build_flat_index(emb, use_gpu=False)
    if faiss_gpus() == 0:
        pytest.skip(GPU_SKIP_REASON)
    gpu = nb.build_flat_index(emb, use_gpu=True)
    expect("Gpu" in type(gpu).__name__, "use_gpu=True builds a GPU index", got=type(gpu).__name__,
           hint="return maybe_to_gpu(index, use_gpu)")
    expect_same_topk(_search(gpu, queries, 10), queries, emb, 10, "GPU flat index top-10")
    expect_equal(_search(gpu, queries, 10), _search(cpu, queries, 10), "GPU and CPU flat indexes agree")


def test_vectors_are_indexed_as_given(nb):
    emb = random_embeddings(300, 16, seed=6, normalise=False)
    index = nb.build_flat_index(emb.clone(), use_gpu=False)
    stored = torch.from_numpy(index.reconstruct_n(0, index.ntotal))
    expect(torch.allclose(stored, emb[1:], atol=1e-6), "the index stores item_emb[1:] exactly as given (no "
           "normalisation)", got=f"stored norms {stored.norm(dim=1)[:4].tolist()}, given {emb[1:5].norm(dim=1).tolist()}",
           hint="the score is the model's inner product; normalising the vectors turns it into cosine behind the "
                "model's back and changes which items win (the towers already normalise when they mean to)")


def test_a_gpu_request_goes_through_maybe_to_gpu(nb, monkeypatch):
    calls = []

    def spy(index, use_gpu=None):
        calls.append((index, use_gpu))
        return index

    monkeypatch.setitem(nb._globals(), "maybe_to_gpu", spy)
    emb = random_embeddings(50, 8, seed=7)
    out = nb.build_flat_index(emb, use_gpu=True)
    expect(len(calls) == 1 and calls[0][1] is True, "build_flat_index(use_gpu=True) hands the index to "
           "maybe_to_gpu(index, use_gpu=True)", got=[c[1] for c in calls],
           hint="return maybe_to_gpu(index, use_gpu): one place decides CPU or GPU for every index")
    expect(out is calls[0][0] and int(out.ntotal) == 50, "and returns what maybe_to_gpu returns")
