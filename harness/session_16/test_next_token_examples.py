"""Exercise 3: next_token_examples (on a tiny dataset whose valid and test items nobody trains on)."""
import pytest
import torch

from harness.autograder.checks import expect, expect_dtype, expect_equal, expect_shape

from .conftest import HELD_OUT_TOKEN, reference_table, tiny_dataset

pytestmark = pytest.mark.exercise("next_token_examples")

IGNORE, PAD, BOS = -100, 0, 1


@pytest.fixture(autouse=True)
def reference_history_tokens(nb, reference, monkeypatch):
    """Exercise 2's tokens from the reference, so that this exercise is graded on its own."""
    monkeypatch.setitem(nb._globals(), "history_tokens", reference.history_tokens)


def _examples(nb, reference, max_items=3):
    out = nb.next_token_examples(tiny_dataset(), reference_table(reference), max_items)
    expect(isinstance(out, dict) and {"inputs", "targets"} <= set(out), "returns a dict with `inputs` and `targets`",
           got=type(out).__name__ if not isinstance(out, dict) else sorted(out))
    return out["inputs"], out["targets"]


def _rows(tensor_pair) -> list:
    inputs, targets = tensor_pair
    return sorted(zip(map(tuple, inputs.tolist()), map(tuple, targets.tolist())))


def test_shapes_and_dtypes(nb, reference):
    inputs, targets = _examples(nb, reference, max_items=3)
    # windows of up to 4 items: T = 1 + 4 * 3 = 13 tokens, of which the model reads 12 and predicts 12
    expect_shape(inputs, (None, 12), "inputs (max_items 3: windows of 4 items, 13 tokens minus the last)",
                 hint="history_tokens(windows, table, max_items + 1) gives 1 + (max_items + 1) * C tokens; inputs "
                      "drop the last, targets drop the first")
    expect_shape(targets, tuple(inputs.shape), "targets")
    expect_dtype(inputs, torch.int64, "inputs")
    expect_dtype(targets, torch.int64, "targets")


def test_no_valid_or_test_item_is_trained_on(nb, reference):
    inputs, targets = _examples(nb, reference)
    leaked = int((inputs == HELD_OUT_TOKEN).sum() + (targets == HELD_OUT_TOKEN).sum())
    expect(leaked == 0, "the valid and test items appear nowhere in the training inputs or targets",
           got=f"the held-out items' first token appears {leaked} times",
           hint="train on dataset.sequences(upto='valid'), the train items only: with upto='test' the model "
                "trains on the very items it is evaluated on (leave-last-out leakage)")


def test_targets_are_the_next_tokens(nb, reference):
    inputs, targets = _examples(nb, reference)
    trained = targets != IGNORE
    expect(bool(trained.any()), "some targets are trained (not IGNORE)")
    # wherever both are real, target t is input t + 1
    both = trained[:, :-1] & (inputs[:, 1:] != PAD)
    expect_equal(targets[:, :-1][both], inputs[:, 1:][both], "targets[:, t] == inputs[:, t + 1] (one step ahead)",
                 hint="inputs = tokens[:, :-1], targets = tokens[:, 1:]: position t reads token t and predicts t + 1")


def test_ignore_exactly_where_the_input_is_padding(nb, reference):
    inputs, targets = _examples(nb, reference)
    expect_equal(targets == IGNORE, inputs == PAD, "IGNORE exactly where the input is PAD",
                 hint="targets[inputs == PAD] = IGNORE; every other position is trained")
    trained = targets[targets != IGNORE]
    expect(bool(((trained != PAD) & (trained != BOS)).all()), "no trained target is PAD or BOS",
           hint="BOS is never predicted: the position before it is padding, so its target is IGNORE")


def test_windows_end_at_the_most_recent_items(nb, reference):
    table = reference_table(reference)
    inputs, targets = _examples(nb, reference)
    last_targets = {tuple(row) for row in targets[:, -3:].tolist()}
    for user, last_train_item in ((1, 9), (2, 3), (3, 8), (4, 11)):
        expect(tuple(table[last_train_item].tolist()) in last_targets,
               f"a window ends with user {user}'s last train item (item {last_train_item})",
               hint="cut windows from the end of each history backwards, so the most recent items are always in a "
                    "full window: range(len(s), 0, -(max_items + 1))")


def test_every_train_item_once(nb, reference):
    inputs, targets = _examples(nb, reference)
    n_items_trained = int((targets != IGNORE).sum()) // 3
    expect(n_items_trained == 9 + 2 + 1 + 11, "each train item is predicted exactly once (23 train items, 3 tokens "
           "each)", got=f"{n_items_trained} items' worth of trained targets",
           hint="non-overlapping windows of max_items + 1 items: one window per max_items + 1 items, not one per item")


def test_matches_the_specification(nb, reference):
    for max_items in (1, 3, 5):
        got = _examples(nb, reference, max_items)
        want = reference.next_token_examples(tiny_dataset(), reference_table(reference), max_items)
        expect(_rows(got) == _rows((want["inputs"], want["targets"])),
               f"the windows with max_items = {max_items} (compared in any order)",
               got=f"{len(got[0])} windows", expected=f"{len(want['inputs'])} windows",
               hint="windows of max_items + 1 items from each history's end backwards; the oldest may be shorter")
