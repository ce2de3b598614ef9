"""Exercise 2: in_batch_softmax_loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from harness.autograder.checks import expect, expect_close

pytestmark = pytest.mark.exercise("in_batch_softmax_loss")


def _embeddings(b=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = F.normalize(torch.randn(b, d, generator=g), dim=-1)
    v = F.normalize(torch.randn(b, d, generator=g), dim=-1)
    return u, v


def _reference(u, v, ids, t, log_q=None):
    """Independent, loop-based computation of the same loss."""
    total = 0.0
    for i in range(len(ids)):
        logits = []
        for j in range(len(ids)):
            if j != i and ids[j] == ids[i]:
                continue  # accidental hit: not a negative
            s = float(u[i] @ v[j]) / t
            if log_q is not None:
                s -= float(log_q[ids[j]])
            logits.append((j, s))
        m = max(s for _, s in logits)
        log_z = m + math.log(sum(math.exp(s - m) for _, s in logits))
        total += log_z - dict(logits)[i]
    return total / len(ids)


def test_matches_an_independent_computation(nb):
    u, v = _embeddings()
    ids = torch.tensor([1, 2, 3, 4, 5, 6])
    expect_close(nb.in_batch_softmax_loss(u, v, ids, 0.1), _reference(u, v, ids, 0.1), "loss without logQ",
                 rtol=1e-5, atol=1e-5,
                 hint="logits = user @ item.T / temperature; cross-entropy with labels arange(B), softmax over dim 1")


def test_softmax_runs_over_items(nb):
    u, v = _embeddings(seed=1)
    v = F.normalize(v + torch.linspace(-1, 1, 6)[:, None], dim=-1)  # make rows and columns differ
    ids = torch.arange(1, 7)
    # With these inputs a softmax over users (dim 0) gives a different loss than one over items (dim 1).
    transposed = float(F.cross_entropy((v @ u.T) / 0.05, torch.arange(6)))
    assert abs(transposed - _reference(u, v, ids, 0.05)) > 1e-3
    expect_close(nb.in_batch_softmax_loss(u, v, ids, 0.05), _reference(u, v, ids, 0.05),
                 "each user's softmax runs over the batch's items (rows = users, columns = items)", rtol=1e-5, atol=1e-5,
                 hint="logits = user_emb @ item_emb.T and F.cross_entropy over dim 1; item_emb @ user_emb.T is the "
                      "transposed problem (a softmax over users)")


def test_log_q_correction_sign(nb):
    u, v = _embeddings(seed=2)
    ids = torch.tensor([1, 2, 3, 4, 5, 6])
    log_q = torch.log(torch.tensor([1.0, 0.5, 0.2, 0.1, 0.1, 0.05, 0.05]))
    expect_close(nb.in_batch_softmax_loss(u, v, ids, 0.1, log_q), _reference(u, v, ids, 0.1, log_q),
                 "loss with the logQ correction", rtol=1e-5, atol=1e-5,
                 hint="subtract log q of the CANDIDATE item (column j) from every logit of column j: s_ij - log q_j")


def test_accidental_hits_are_masked(nb):
    u, v = _embeddings(seed=3)
    ids = torch.tensor([7, 3, 7, 5, 3, 9])  # rows 0 and 2 share item 7, rows 1 and 4 share item 3
    got = nb.in_batch_softmax_loss(u, v, ids, 0.1)
    expect(bool(torch.isfinite(got)), "the loss stays finite when items repeat", got=float(got),
           hint="mask only j != i: the diagonal (the positive) must stay")
    expect_close(got, _reference(u, v, ids, 0.1), "loss when the same item appears twice in the batch",
                 rtol=1e-5, atol=1e-5,
                 hint="set logits[i, j] = -inf where item_ids[j] == item_ids[i] and j != i")


def test_temperature_divides(nb):
    u, v = _embeddings(seed=4)
    ids = torch.arange(1, 7)
    expect_close(nb.in_batch_softmax_loss(u, v, ids, 0.5), _reference(u, v, ids, 0.5), "loss at temperature 0.5",
                 rtol=1e-5, atol=1e-5, hint="divide the similarities by the temperature")


def test_scalar_and_differentiable(nb):
    u, v = _embeddings(seed=5)
    u.requires_grad_(True)
    v.requires_grad_(True)
    loss = nb.in_batch_softmax_loss(u, v, torch.arange(1, 7), 0.1)
    expect(loss.dim() == 0, "the loss is a scalar (mean over rows)", got=tuple(loss.shape))
    loss.backward()
    expect(u.grad is not None and v.grad is not None and bool(u.grad.abs().sum() > 0) and bool(v.grad.abs().sum() > 0),
           "gradients reach both the user and the item embeddings")
