"""Exercise 2: collate_sequences."""
import pytest
import torch

from harness.autograder.checks import expect, expect_dtype, expect_equal, expect_shape

pytestmark = pytest.mark.exercise("collate_sequences")


def _batch(with_categories=False):
    rows = [([5], 3), ([5, 3, 9], 7), ([2, 8], 4)]
    out = []
    for user, (history, target) in enumerate(rows, start=1):
        ex = {"user_id": user, "history": torch.tensor(history), "target": target}
        if with_categories:
            ex["history_categories"] = torch.tensor(history) * 10
            ex["target_category"] = target * 10
        out.append(ex)
    return out


def test_left_padding(nb):
    out = nb.collate_sequences(_batch(), padding_side="left")
    expect_shape(out["history"], (3, 3), "history of 3 examples, longest 3")
    expect_equal(out["history"], torch.tensor([[0, 0, 5], [5, 3, 9], [0, 2, 8]]),
                 "left-padded histories (most recent item in the last column)",
                 hint="write history b into the last len_b columns; pad with 0, keep the item order")


def test_right_padding(nb):
    out = nb.collate_sequences(_batch(), padding_side="right")
    expect_equal(out["history"], torch.tensor([[5, 0, 0], [5, 3, 9], [2, 8, 0]]),
                 "right-padded histories", hint="write history b into the first len_b columns")


def test_mask_is_true_at_real_items(nb):
    for side, mask in (("left", [[False, False, True], [True, True, True], [False, True, True]]),
                       ("right", [[True, False, False], [True, True, True], [True, True, False]])):
        out = nb.collate_sequences(_batch(), padding_side=side)
        expect_dtype(out["mask"], torch.bool, "mask", hint="a boolean mask: torch.zeros(B, L, dtype=torch.bool)")
        expect_equal(out["mask"], torch.tensor(mask), f"mask with {side} padding",
                     hint="True marks a real item, False marks padding (not the other way round)")


def test_padding_value_is_zero(nb):
    out = nb.collate_sequences(_batch(), padding_side="left")
    padded = out["history"][~out["mask"].bool()]
    expect(bool((padded == 0).all()), "padded positions hold item 0",
           got=padded.tolist(), hint="item 0 is the padding id (padding_idx=0 in embeddings)")


def test_lengths_targets_users(nb):
    out = nb.collate_sequences(_batch())
    expect_equal(out["lengths"], torch.tensor([1, 3, 2]), "lengths")
    expect_dtype(out["lengths"], torch.int64, "lengths")
    expect_equal(out["target"], torch.tensor([3, 7, 4]), "targets")
    expect_dtype(out["target"], torch.int64, "target", hint="stack the int targets into a long tensor")
    expect_equal(out["user_id"], torch.tensor([1, 2, 3]), "user ids")


def test_categories_padded_like_the_history(nb):
    out = nb.collate_sequences(_batch(with_categories=True), padding_side="left")
    expect("history_categories" in out and "target_category" in out,
           "category features are collated when the examples have them", got=sorted(out))
    expect_equal(out["history_categories"], torch.tensor([[0, 0, 50], [50, 30, 90], [0, 20, 80]]),
                 "history_categories padded the same way as history")
    expect_equal(out["target_category"], torch.tensor([30, 70, 40]), "target_category")
    plain = nb.collate_sequences(_batch())
    expect("history_categories" not in plain, "no category keys when examples have none", got=sorted(plain))


def test_inputs_not_modified(nb):
    batch = _batch()
    before = [ex["history"].clone() for ex in batch]
    nb.collate_sequences(batch, padding_side="left")
    expect(all(torch.equal(a, ex["history"]) for a, ex in zip(before, batch)), "the examples are not modified in place")


def test_empty_history_and_bad_side(nb):
    out = nb.collate_sequences([{"user_id": 1, "history": torch.tensor([], dtype=torch.long), "target": 4}])
    expect_shape(out["history"], (1, 1), "a batch whose only history is empty still has one column",
                 hint="use L = max(longest history, 1)")
    expect(not bool(out["mask"].any()), "an empty history has an all-False mask", got=out["mask"].tolist())
    with pytest.raises(ValueError):
        nb.collate_sequences(_batch(), padding_side="middle")
        expect(False, "an unknown padding_side raises ValueError", got="no error")


def test_int32_histories_become_int64(nb):
    batch = [{"user_id": 1, "history": torch.tensor([5, 3], dtype=torch.int32), "target": 7},
             {"user_id": 2, "history": torch.tensor([4], dtype=torch.int32), "target": 2}]
    out = nb.collate_sequences(batch, padding_side="left")
    expect_dtype(out["history"], torch.int64, "history collated from int32 examples",
                 hint="nn.Embedding wants int64 (or int32 everywhere); build the padded tensor as torch.long and "
                      "convert each row, whatever dtype the examples arrive in")
    expect_equal(out["history"], torch.tensor([[5, 3], [0, 4]]), "history values from int32 examples")
