"""Exercise 7: auc."""
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_shape

from .conftest import expect_unchanged, oracle_auc, random_case

pytestmark = pytest.mark.exercise("auc")


def test_shape_and_dtype(nb):
    out = nb.auc(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[1, 0], [1, 0]]))
    expect_shape(out, (2,), "one AUC per user")
    expect_dtype(out, torch.float32, "AUC per user", hint="compute in float64 if you like, return .float()")
    expect_close(out, torch.tensor([1.0, 0.0]), "a positive above its negative: AUC 1; below: AUC 0", atol=1e-6)


def test_ties_count_one_half(nb):
    out = nb.auc(torch.tensor([[2.0, 1.0, 2.0, 3.0]]), torch.tensor([[1, 0, 0, 0]]))
    expect_close(out, torch.tensor([0.5]), "positive 2 against negatives 1, 2, 3: (1 + 1/2 + 0) / 3", atol=1e-6,
                 hint="a tie counts one half: below + 0.5 * ties (searchsorted with right=False and right=True)")
    out = nb.auc(torch.full((1, 6), 0.3), torch.tensor([[1, 0, 1, 0, 0, 0]]))
    expect_close(out, torch.tensor([0.5]), "a constant score ties every pair: AUC 0.5", atol=1e-6,
                 hint="counting ties as wins gives 1, as losses 0; one half is the chance of a random tie-break")


def test_matches_sklearn_roc_auc_score(nb):
    scores, labels, _ = random_case(20, users=40, n=50, ties=True, padding=False, density=0.3)
    scores, labels = scores[2:], labels[2:]
    expected = torch.tensor([roc_auc_score((labels[b] > 0).numpy(), scores[b].numpy()) for b in range(len(scores))])
    expect_close(nb.auc(scores, labels), expected,
                 "AUC of 38 random users (integer scores: many ties; graded labels) against scikit-learn's roc_auc_score",
                 atol=1e-5, hint="relevant = label > 0, every other candidate is a negative; ties count one half")


def test_graded_labels_are_positives(nb):
    out = nb.auc(torch.tensor([[0.9, 0.8, 0.1]]), torch.tensor([[2, 5, 0]]))
    expect_close(out, torch.tensor([1.0]), "grades 2 and 5 are both relevant, both above the negative", atol=1e-6,
                 hint="positive = labels > 0, not labels == 1")


def test_padding_is_in_no_pair(nb):
    scores = torch.tensor([[0.5, 0.6, -5.0, 9.0]])
    labels = torch.tensor([[1, 0, 0, 1]])
    mask = torch.tensor([[True, True, False, False]])
    expect_close(nb.auc(scores, labels, mask), torch.tensor([0.0]),
                 "real candidates: positive 0.5 below negative 0.6. A padding negative at -5 and a padding "
                 "positive at 9 must not enter any pair", atol=1e-6,
                 hint="negatives = real & ~positive, positives = (labels > 0) & real")


def test_no_pair_is_zero_not_nan(nb):
    out = nb.auc(torch.tensor([[0.5, 0.2], [0.5, 0.2], [0.5, 0.9]]), torch.tensor([[0, 0], [1, 3], [1, 0]]))
    expect(not bool(torch.isnan(out).any()), "users with no positive or no negative get AUC 0, not NaN (0 pairs)",
           got=out.tolist(), hint="divide by the number of pairs clamped to at least 1")
    expect_close(out, torch.tensor([0.0, 0.0, 0.0]), "no positive: 0; no negative: 0; a positive below its negative: 0",
                 atol=1e-6)


def test_random_against_a_loop(nb):
    scores, labels, mask = random_case(21, ties=True)
    expected = torch.tensor([oracle_auc(scores[b].tolist(), labels[b].tolist(), mask[b].tolist())
                             for b in range(len(scores))])
    expect_close(nb.auc(scores, labels, mask), expected, "AUC of 48 users with tied scores and padding", atol=1e-5)


def test_a_full_catalog(nb):
    g = torch.Generator().manual_seed(22)
    scores = torch.randn(16, 2000, generator=g)
    labels = torch.rand(16, 2000, generator=g) < 0.01
    labels[:, 0] = True
    expected = torch.tensor([roc_auc_score(labels[b].numpy(), scores[b].numpy()) for b in range(16)])
    expect_close(nb.auc(scores, labels), expected, "AUC of 16 users over 2,000 candidates", atol=1e-5)


def test_inputs_unchanged(nb):
    scores, labels, mask = random_case(23)
    expect_unchanged(nb.auc, scores, labels, mask, what="auc")
