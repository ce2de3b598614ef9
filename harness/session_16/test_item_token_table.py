"""Exercise 1: item_token_table."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_dtype, expect_equal, expect_shape

from .conftest import CODES, SIZES

pytestmark = pytest.mark.exercise("item_token_table")


def test_shape_dtype_and_padding_row(nb):
    table = nb.item_token_table(CODES.clone(), SIZES)
    expect_shape(table, tuple(CODES.shape), "token table")
    expect_dtype(table, torch.int64, "token table")
    expect_equal(table[0], torch.zeros(3, dtype=torch.long), "row 0 (the padding item) is all PAD",
                 hint="table[0] = PAD: the padding item has no semantic ID, and its tokens must never be real codes")


def test_offsets_by_hand(nb):
    # sizes (4, 3, 3): PAD 0, BOS 1, level 0 = tokens 2..5, level 1 = 6..8, disambiguation = 9..11
    table = nb.item_token_table(CODES.clone(), SIZES)
    expect_equal(table[[1, 3, 10, 14]], torch.tensor([[2, 6, 9], [2, 7, 10], [4, 6, 11], [5, 7, 10]]),
                 "tokens of items 1, 3, 10 and 14 with codebook sizes (4, 3, 3)",
                 hint="token = code + offset of its column; offsets = 2 (after PAD and BOS), 2 + 4, 2 + 4 + 3")


def test_columns_have_disjoint_ranges(nb):
    sizes = (5, 2, 4, 1)
    codes = torch.stack([torch.arange(9) % s for s in sizes], dim=1)
    table = nb.item_token_table(codes, sizes)
    low = 2
    for c, size in enumerate(sizes):
        column = table[1:, c]
        expect(bool(((column >= low) & (column < low + size)).all()),
               f"column {c}'s tokens lie in its own range [{low}, {low + size})", got=column.tolist(),
               hint="code 3 of level 0 and code 3 of level 1 must be different tokens: offset each column by the "
                    "sizes of the columns before it, after the two special tokens")
        low += size


def test_does_not_modify_codes(nb):
    codes = CODES.clone()
    call_leaving_inputs_unchanged(nb.item_token_table, codes, SIZES, what="item_token_table",
                                  hint="table = codes + offsets makes a new tensor; codes += offsets edits the caller's")


def test_accepts_a_list_and_a_tuple(nb):
    expect_equal(nb.item_token_table(CODES.clone(), list(SIZES)), nb.item_token_table(CODES.clone(), SIZES),
                 "the same table from codebook sizes given as a list or a tuple")


def _raises_value_error(fn) -> bool:
    try:
        fn()
    except NotImplementedError:
        raise
    except ValueError:
        return True
    return False


def test_rejects_codes_out_of_range(nb):
    too_big = CODES.clone()
    too_big[4, 1] = 3  # level 1 has 3 codes: 0, 1, 2
    expect(_raises_value_error(lambda: nb.item_token_table(too_big, SIZES)),
           "a code equal to its column's size raises ValueError",
           hint="a code outside [0, size) would become a token of the next column; check rows 1.. first")
    negative = CODES.clone()
    negative[2, 0] = -1
    expect(_raises_value_error(lambda: nb.item_token_table(negative, SIZES)), "a negative code raises ValueError")
    expect(_raises_value_error(lambda: nb.item_token_table(CODES.clone(), SIZES[:2])),
           "codebook sizes for 2 columns with codes of 3 columns raise ValueError")


def test_padding_row_is_not_checked(nb):
    codes = CODES.clone()
    codes[0] = torch.tensor([7, 7, 7])  # whatever a builder put there, row 0 is padding
    expect_equal(nb.item_token_table(codes, SIZES)[0], torch.zeros(3, dtype=torch.long),
                 "row 0 is PAD whatever the codes hold there", hint="check and convert rows 1.. only; set row 0 to PAD")
