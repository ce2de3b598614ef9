"""Exercise 2: dcg_at_k."""
import math

import pytest
import torch
from sklearn.metrics import dcg_score

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_shape

from .conftest import expect_unchanged, in_order, oracle_dcg, per_user, random_case

pytestmark = pytest.mark.exercise("dcg_at_k")

WIKI = [3, 2, 3, 0, 1, 2]  # the Wikipedia example, in ranked order


def test_shape_and_dtype(nb):
    scores, labels = in_order(WIKI, [0, 0, 0, 0, 0, 1])
    out = nb.dcg_at_k(scores, labels, 6)
    expect_shape(out, (2,), "one DCG per user")
    expect_dtype(out, torch.float32, "DCG per user")


def test_wikipedia_example(nb):
    scores, labels = in_order(WIKI)
    expect_close(nb.dcg_at_k(scores, labels, 6, gain="linear"), torch.tensor([6.861127]),
                 "DCG@6 of grades 3, 2, 3, 0, 1, 2 with linear gain (the Wikipedia example)", atol=1e-4,
                 hint="sum of rel_i / log2(i + 1) over positions i = 1..6")
    expect_close(nb.dcg_at_k(scores, labels, 6), torch.tensor([13.848264]),
                 "DCG@6 of grades 3, 2, 3, 0, 1, 2 with the default exponential gain 2^rel - 1", atol=1e-4,
                 hint="the default gain is exponential: (2 ** rel - 1) / log2(i + 1)")
    expect_close(nb.dcg_at_k(scores, labels, 3), torch.tensor([12.392789]), "DCG@3 (exponential)", atol=1e-4,
                 hint="only the first k positions count: ranked[:, :k]")


def test_discount_of_each_position(nb):
    rows = [[1 if j == i else 0 for j in range(6)] for i in range(6)]  # one relevant item, at position i + 1
    scores, labels = in_order(*rows)
    expected = torch.tensor([1 / math.log2(i + 2) for i in range(6)])
    out = nb.dcg_at_k(scores, labels, 6)
    expect(bool(torch.isfinite(out).all()), "DCG is finite when the relevant item is at position 1", got=out.tolist(),
           hint="positions start at 1 and the discount is log2(i + 1): log2(1) = 0 must never be a divisor")
    expect_close(out[:1], expected[:1], "DCG of a single relevant item at position 1 (discount 1 / log2(2) = 1)",
                 atol=1e-5, hint="log base 2: torch.log2, not torch.log (natural log gives 1 / ln 2 = 1.443)")
    expect_close(out, expected, "DCG of a single relevant item at positions 1..6: 1 / log2(i + 1)", atol=1e-5,
                 hint="an off-by-one in the positions: position i (from 1) is discounted by log2(i + 1)")


def test_only_the_top_k_count(nb):
    scores, labels = in_order([0, 0, 3, 1], [2, 0, 0, 0])
    expect_close(nb.dcg_at_k(scores, labels, 2), torch.tensor([0.0, 3.0]),
                 "DCG@2: relevant items below position 2 do not count", atol=1e-6, hint="cut the ranked labels at k")
    expect_close(nb.dcg_at_k(scores, labels, 10), torch.tensor([7 / 2 + 1 / math.log2(5), 3.0]),
                 "k larger than the list: the whole list counts", atol=1e-5,
                 hint="[:, :k] with k > N keeps every column; build the positions from the cut tensor's width")


def test_matches_sklearn_dcg_score(nb):
    scores, labels, _ = random_case(3, padding=False)
    for k in (1, 3, 10, 30):
        for gain, target in (("linear", labels.numpy()), ("exponential", 2.0 ** labels.numpy() - 1)):
            expected = torch.tensor([dcg_score(target[b:b + 1], scores[b:b + 1].numpy(), k=k)
                                     for b in range(len(scores))])
            expect_close(nb.dcg_at_k(scores, labels, k, gain=gain), expected,
                         f"DCG@{k} with {gain} gain against scikit-learn's dcg_score on 48 random users",
                         rtol=1e-5, atol=1e-5)


def test_padding_is_ignored(nb):
    scores = torch.tensor([[0.9, 5.0, 0.5, 0.1]])
    labels = torch.tensor([[1, 3, 0, 1]])
    mask = torch.tensor([[True, False, True, True]])
    expected = 1.0 + 1.0 / math.log2(4)  # real list: 1, 0, 1
    expect_close(nb.dcg_at_k(scores, labels, 3, mask), torch.tensor([expected]),
                 "a padding column (mask False) with the top score and label 3 neither counts nor takes a position",
                 atol=1e-5)


def test_bool_labels_and_no_relevant_item(nb):
    scores, _ = in_order([0, 0, 0])
    out = nb.dcg_at_k(scores, torch.tensor([[False, True, False]]), 3)
    expect_close(out, torch.tensor([1 / math.log2(3)]), "bool labels: True is relevance 1", atol=1e-5)
    out = nb.dcg_at_k(scores, torch.zeros(1, 3, dtype=torch.long), 3)
    expect_close(out, torch.tensor([0.0]), "a user with no relevant candidate has DCG 0", atol=1e-6)


def test_random_against_a_loop(nb):
    scores, labels, mask = random_case(4, ties=True)
    for gain in ("exponential", "linear"):
        expect_close(nb.dcg_at_k(scores, labels, 5, mask, gain), per_user(oracle_dcg, scores, labels, mask, 5, gain),
                     f"DCG@5 ({gain}) of 48 users with tied scores and padding", rtol=1e-5, atol=1e-5)


def test_inputs_unchanged(nb):
    scores, labels, mask = random_case(5)
    expect_unchanged(lambda s, l, m: nb.dcg_at_k(s, l, 5, m), scores, labels, mask, what="dcg_at_k")
