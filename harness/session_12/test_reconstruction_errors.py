"""Exercise 2: reconstruction_errors."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect_close, expect_dtype, expect_shape

pytestmark = pytest.mark.exercise("reconstruction_errors")

HINT = ("reconstruction = sum of C_j[codes[:, j]] for j <= l (cumulative); error = ((x - reconstruction) ** 2)"
        ".sum(dim=1).mean(): squared, summed over the dimensions, averaged over the items")


def _example():
    x = torch.tensor([[3.0, 1.0], [1.0, 0.0], [-2.0, 2.0]])
    books = [torch.tensor([[2.0, 0.0], [-2.0, 2.0]]), torch.tensor([[1.0, 1.0], [0.0, -0.5]])]
    codes = torch.tensor([[0, 0], [0, 1], [1, 1]])
    # level 1: residuals (1, 1), (-1, 0), (0, 0) -> squared norms 2, 1, 0 -> mean 1
    # level 2: (1, 1) - (1, 1) = 0; (-1, 0) - (0, -0.5) = (-1, 0.5) -> 1.25; (0, 0) - (0, -0.5) -> 0.25 -> mean 0.5
    return x, codes, books, torch.tensor([1.0, 0.5])


def test_shape_and_dtype(nb):
    x, codes, books, _ = _example()
    out = nb.reconstruction_errors(x, codes, books)
    expect_shape(out, (2,), "one error per level, (L,)")
    expect_dtype(out, torch.float32, "reconstruction errors", hint="return torch.stack(errors).float()")


def test_hand_computed_example(nb):
    x, codes, books, want = _example()
    out = nb.reconstruction_errors(x, codes, books)
    expect_close(out, want, "errors of a hand-computed example: level 1 mean ||r||^2 = 1.0, level 2 = 0.5",
                 rtol=1e-5, hint=HINT)


def test_same_as_reference(nb, reference):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g)
    books = [torch.randn(7, 6, generator=g) * s for s in (1.0, 0.5, 0.2)]
    codes = torch.randint(0, 7, (50, 3), generator=g)
    out = call_leaving_inputs_unchanged(nb.reconstruction_errors, x, codes, books, what="reconstruction_errors")
    expect_close(out, reference.reconstruction_errors(x, codes, books), "errors on random codes", rtol=1e-4,
                 hint=HINT)


def test_zero_when_the_codes_reconstruct_exactly(nb):
    g = torch.Generator().manual_seed(1)
    book = torch.randn(4, 3, generator=g)
    codes = torch.tensor([[0, 0], [3, 0], [2, 0]])
    x = book[codes[:, 0]]
    out = nb.reconstruction_errors(x, codes, [book, torch.zeros(1, 3)])
    expect_close(out, torch.zeros(2), "error of vectors that are their level-1 centroids (a zero level 2)",
                 atol=1e-6, hint=HINT)
