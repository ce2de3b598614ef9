"""Exercise 4: disambiguate."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_dtype, expect_equal, expect_shape

pytestmark = pytest.mark.exercise("disambiguate")

HINT = ("the last column counts the earlier rows (lower index) with the same L codes: 0 for the first row of a tuple "
        "and for unique rows, then 1, 2, ... per tuple (a separate count for each tuple)")
EXAMPLE = torch.tensor([[3, 1, 4], [2, 7, 1], [3, 1, 4], [3, 1, 4], [3, 1, 5]])


def test_shape_dtype_and_codes_kept(nb):
    out = nb.disambiguate(EXAMPLE)
    expect_shape(out, (5, 4), "codes with the disambiguation column, (N, L + 1)",
                 hint="torch.cat([codes, index[:, None]], dim=1): the extra column goes last")
    expect_dtype(out, torch.int64, "disambiguated codes")
    expect_equal(out[:, :3], EXAMPLE, "the first L columns are the codes, unchanged")


def test_notebook_example(nb):
    out = nb.disambiguate(EXAMPLE)
    expect_equal(out[:, 3], torch.tensor([0, 0, 1, 2, 0]), "disambiguation column of the notebook's example",
                 hint=HINT)


def test_unique_rows_get_zero(nb):
    codes = torch.tensor([[0, 1], [1, 0], [1, 1], [0, 0]])
    expect_equal(nb.disambiguate(codes)[:, 2], torch.zeros(4, dtype=torch.long),
                 "rows that collide with nobody get index 0", hint=HINT)


def test_interleaved_groups_count_separately(nb):
    codes = torch.tensor([[1, 1], [2, 2], [1, 1], [2, 2], [2, 2], [1, 1], [5, 5]])
    out = nb.disambiguate(codes)
    expect_equal(out[:, 2], torch.tensor([0, 0, 1, 1, 2, 2, 0]),
                 "two tuples whose rows alternate: each tuple counts 0, 1, 2 in row order", hint=HINT)


def test_every_item_unique_on_random_codes(nb, reference):
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 3, (400, 3), generator=g)  # 27 cells for 400 rows: many collisions
    out = call_leaving_inputs_unchanged(nb.disambiguate, codes, what="disambiguate")
    expect_equal(len(torch.unique(out, dim=0)), 400, "distinct rows after disambiguation (400 items, 27 cells)",
                 hint="every collision must be resolved: " + HINT)
    expect_equal(out, reference.disambiguate(codes), "disambiguated codes of 400 random rows", hint=HINT)
    expect(int(out[:, 3].max()) == int(torch.unique(codes, dim=0, return_counts=True)[1].max()) - 1,
           "the largest index is the largest group's size - 1")
