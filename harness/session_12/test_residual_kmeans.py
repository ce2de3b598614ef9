"""Exercise 1: residual_kmeans."""
import pytest
import torch

from harness.autograder.checks import (call_leaving_inputs_unchanged, expect, expect_close, expect_dtype,
                                       expect_equal, expect_shape)

from .conftest import SpyKmeans, planted_vectors, spy_kmeans

pytestmark = pytest.mark.exercise("residual_kmeans")

RESIDUAL_HINT = ("level l clusters residual = residual - centroids[codes] of the level before it: level 1 the "
                 "vectors, level 2 what level 1's centroids missed, and so on")


def _run(nb, monkeypatch, x, levels=3, k=5, seed=7, niter=9):
    spy = spy_kmeans(monkeypatch, nb)
    codes, codebooks = nb.residual_kmeans(x, levels, k, seed=seed, niter=niter)
    return spy, codes, codebooks


def test_shapes_and_dtypes(nb, monkeypatch):
    x = planted_vectors(per=3)
    _, codes, codebooks = _run(nb, monkeypatch, x, levels=3, k=5)
    expect_shape(codes, (len(x), 3), "codes: one column per level, (N, L)",
                 hint="torch.stack(codes_per_level, dim=1)")
    expect_dtype(codes, torch.int64, "codes")
    expect(isinstance(codebooks, (list, tuple)) and len(codebooks) == 3, "one codebook per level (a list of L)",
           got=type(codebooks).__name__)
    for level, book in enumerate(codebooks):
        expect_shape(book, (5, x.shape[1]), f"codebook of level {level + 1}: (K, d)")
        expect_dtype(book, torch.float32, f"codebook of level {level + 1}")


def test_one_kmeans_call_per_level_with_its_seed(nb, monkeypatch):
    x = planted_vectors(per=3)
    spy, _, _ = _run(nb, monkeypatch, x, levels=4, k=5, seed=7, niter=9)
    expect_equal(len(spy.calls), 4, "calls of the provided `kmeans` for 4 levels",
                 hint="one kmeans(residual, codebook_size, seed=seed + level, niter=niter) per level")
    expect_equal([c["k"] for c in spy.calls], [5] * 4, "k of each kmeans call (codebook_size)")
    expect_equal([c["seed"] for c in spy.calls], [7, 8, 9, 10], "seeds of the kmeans calls (seed + level)",
                 hint="a different seed per level: kmeans(..., seed=seed + level)")
    expect_equal([c["niter"] for c in spy.calls], [9] * 4, "niter passed to kmeans")


def test_each_level_clusters_the_residuals(nb, monkeypatch):
    x = planted_vectors(per=3)
    spy, codes, codebooks = _run(nb, monkeypatch, x, levels=3, k=5)
    expect_close(spy.calls[0]["x"], x, "the input of level 1 is the vectors themselves", atol=1e-6)
    residual = x.clone()
    for level in range(1, 3):
        residual = residual - codebooks[level - 1][codes[:, level - 1]]
        expect_close(spy.calls[level]["x"], residual,
                     f"the input of level {level + 1} is the residual x - sum of the centroids of levels 1..{level}",
                     rtol=1e-4, atol=1e-5, hint=RESIDUAL_HINT)


def test_codes_and_codebooks_are_kmeans_answers(nb, monkeypatch):
    x = planted_vectors(per=3)
    spy, codes, codebooks = _run(nb, monkeypatch, x, levels=3, k=5)
    for level in range(3):
        want_centroids, want_codes = SpyKmeans()(spy.calls[level]["x"], 5, seed=spy.calls[level]["seed"])
        expect_equal(codes[:, level], want_codes, f"codes of level {level + 1}: kmeans' assignment of that level",
                     hint="keep the codes kmeans returns, in column `level`")
        expect_close(codebooks[level], want_centroids, f"codebook of level {level + 1}: kmeans' centroids", atol=1e-6)


def test_same_as_reference(nb, reference, monkeypatch):
    x = planted_vectors(per=4, seed=3)
    _, codes, books = _run(nb, monkeypatch, x, levels=3, k=6, seed=2)
    ref_spy = SpyKmeans()
    monkeypatch.setitem(vars(reference), "kmeans", ref_spy)
    want_codes, want_books = reference.residual_kmeans(x, 3, 6, seed=2, niter=9)
    expect_equal(codes, want_codes, "codes, with the same k-means answers as the reference", hint=RESIDUAL_HINT)
    for level in range(3):
        expect_close(books[level], want_books[level], f"codebook of level {level + 1}", atol=1e-5)


def test_input_unchanged(nb, monkeypatch):
    spy_kmeans(monkeypatch, nb)
    x = planted_vectors(per=3)
    call_leaving_inputs_unchanged(nb.residual_kmeans, x, 3, 5, what="residual_kmeans",
                                  hint="residual = vectors.float().clone(), then residual = residual - ...: "
                                       "vectors.float() is the very same tensor when it is float32 already")


@pytest.mark.time_limit(30)
def test_error_falls_level_by_level_with_faiss(nb):
    """With the real FAISS k-means on planted clusters of clusters, each level halves what is left."""
    x = planted_vectors(n_top=4, n_sub=4, per=12, seed=1)
    codes, codebooks = nb.residual_kmeans(x, 3, 4, seed=0)
    reconstruction = torch.zeros_like(x)
    errors = []
    for level in range(3):
        reconstruction = reconstruction + codebooks[level][codes[:, level]]
        errors.append(float(((x - reconstruction) ** 2).sum(1).mean()))
    energy = float((x ** 2).sum(1).mean())
    expect(errors[0] < 0.3 * energy, "level 1 (4 codes) finds the 4 planted clusters",
           got=f"error {errors[0]:.3f} of energy {energy:.3f}")
    expect(errors[1] < 0.5 * errors[0], "level 2 quantises what level 1 missed: the error at least halves",
           got=f"errors per level {[round(e, 3) for e in errors]}", hint=RESIDUAL_HINT)
    expect(errors[2] <= errors[1] + 1e-4, "the error never grows with a level",
           got=f"errors per level {[round(e, 3) for e in errors]}", hint=RESIDUAL_HINT)
