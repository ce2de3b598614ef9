"""Exercise 2: history_tokens."""
import numpy as np
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect_dtype, expect_equal, expect_shape

from .conftest import reference_table

pytestmark = pytest.mark.exercise("history_tokens")


def test_shape_and_dtype(nb, reference):
    tokens = nb.history_tokens([[1, 2], [3]], reference_table(reference), 4)
    expect_shape(tokens, (2, 1 + 4 * 3), "tokens of 2 histories, max_items 4, 3 tokens per item",
                 hint="width = 1 (BOS) + max_items * C, whatever the histories' lengths")
    expect_dtype(tokens, torch.int64, "tokens")


def test_by_hand(nb, reference):
    table = reference_table(reference)  # item 1 -> [2, 6, 9], item 2 -> [2, 7, 9], item 5 -> [3, 6, 9]
    got = nb.history_tokens([[1, 2], [5]], table, 2)
    want = torch.tensor([[1, 2, 6, 9, 2, 7, 9],
                         [0, 0, 0, 1, 3, 6, 9]])
    expect_equal(got, want, "history_tokens([[1, 2], [5]], max_items=2)",
                 hint="left padding: PAD first, then BOS, then each item's 3 tokens in order, item after item")


def test_keeps_the_most_recent_items(nb, reference):
    table = reference_table(reference)
    got = nb.history_tokens([[1, 2, 3, 4, 5]], table, 2)
    expect_equal(got[0], torch.cat([torch.tensor([1]), table[[4, 5]].reshape(-1)]),
                 "a history of 5 items with max_items 2 keeps the LAST two (items 4 and 5)",
                 hint="history[-max_items:]: the most recent items predict the next one best")


def test_empty_history_is_bos_alone(nb, reference):
    got = nb.history_tokens([[], [7]], reference_table(reference), 2)
    expect_equal(got[0], torch.tensor([0, 0, 0, 0, 0, 0, 1]), "an empty history: PAD ... PAD, BOS at the end",
                 hint="the prompt of a user with no history is BOS alone: generation starts right after it")


def test_accepts_arrays_and_tensors(nb, reference):
    table = reference_table(reference)
    lists = nb.history_tokens([[3, 1, 4], [1, 5]], table, 3)
    mixed = nb.history_tokens([np.array([3, 1, 4]), torch.tensor([1, 5])], table, 3)
    expect_equal(mixed, lists, "the same tokens from numpy arrays and tensors as from lists",
                 hint="RecDataset.sequences() gives numpy arrays; torch.as_tensor(np.asarray(h)) accepts all three")


def test_does_not_modify_inputs(nb, reference):
    table = reference_table(reference)
    history = torch.tensor([2, 9, 4])
    call_leaving_inputs_unchanged(nb.history_tokens, [history], table, 2, what="history_tokens")


def test_matches_the_specification(nb, reference):
    table = reference_table(reference)
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 15, size=n).tolist() for n in (0, 1, 3, 6, 9)]
    expect_equal(nb.history_tokens(histories, table, 4), reference.history_tokens(histories, table, 4),
                 "tokens of five histories of 0 to 9 items, max_items 4")
