"""Exercise 4: count_compiles (one test: it compiles, with a counting backend only)."""
import pytest
import torch

from harness.autograder.checks import expect, expect_equal

from .conftest import no_cache_entries

pytestmark = pytest.mark.exercise("count_compiles")


def double_sum(x):
    return (x * 2).sum(dim=1)


def with_a_break(x):
    y = x * 2
    torch._dynamo.graph_break()
    return y.sum(dim=1)


def _batches(sizes):
    return [(torch.randn(n, 3),) for n in sizes]


@pytest.mark.time_limit(60)
def test_counts(nb):
    varying = _batches([2, 3, 4, 5, 6])
    got = {d: nb.count_compiles(double_sum, varying, dynamic=d) for d in (False, None, True)}
    expect_equal(got[False], 5, "compiles with dynamic=False over 5 batch sizes (one per shape)",
                 hint="count in the backend, once per graph it is given; pass dynamic through to torch.compile")
    expect_equal(got[None], 2, "compiles with dynamic=None (automatic dynamic) over 5 batch sizes",
                 hint="the default: the first change of size recompiles with a symbolic size, then no more")
    expect_equal(got[True], 1, "compiles with dynamic=True over 5 batch sizes (sizes 2..6, symbolic from the start)")
    same = _batches([4, 4, 4, 4])
    expect_equal(nb.count_compiles(double_sum, same, dynamic=False), 1,
                 "compiles over 4 batches of the same shape (calls are not compiles)",
                 hint="increment the counter inside the backend, which runs once per compile, not per call")
    expect_equal(nb.count_compiles(double_sum, same, dynamic=False), 1,
                 "the same count when called a second time on the same function")
    earlier = torch.compile(double_sum, backend="eager")  # someone compiled it before, over changing sizes:
    for n in (2, 3, 4):  # Dynamo now remembers that dim 0 of x changes
        earlier(torch.randn(n, 3))
    expect_equal(nb.count_compiles(double_sum, varying, dynamic=None), 2,
                 "compiles with dynamic=None over 5 batch sizes, after the function was compiled elsewhere",
                 hint="torch._dynamo.reset() before compiling: Dynamo keeps what it learned about a function "
                      "(compiled code, which sizes change) across torch.compile calls, until a reset")
    expect(no_cache_entries(double_sum), "count_compiles leaves no compiled code behind",
           hint="torch._dynamo.reset() at the end (in a finally)")
    expect_equal(nb.count_compiles(with_a_break, _batches([4]), dynamic=False), 2,
                 "graphs compiled for one call of a function with one graph break (one graph on each side)")
