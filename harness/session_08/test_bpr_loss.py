"""Exercise 2: bpr_loss (checked against a float64 oracle of -log sigma(pos - neg), pair by pair)."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close, expect_shape

from .conftest import oracle_bpr

pytestmark = pytest.mark.exercise("bpr_loss")


def _scores(B=4, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(B, generator=g), 2.0 * torch.randn(B, N, generator=g)


def test_many_negatives_per_row(nb):
    pos, neg = _scores(B=4, N=4)  # B == N: a broadcast along the wrong axis runs and is silently wrong
    loss = nb.bpr_loss(pos, neg)
    expect_shape(loss, (), "the mean BPR loss is a scalar")
    expect_close(loss, oracle_bpr(pos, neg).mean(), "mean BPR over the (B, N) pairs of each row's positive with its "
                 "own negatives", rtol=1e-5, atol=1e-6,
                 hint="diff = pos_scores[:, None] - neg_scores: (B, 1) - (B, N). pos_scores - neg_scores lines pos up "
                      "with the columns of neg (user j's positive against user b's j-th negative)")


def test_one_negative_per_row(nb):
    pos, neg = _scores(B=5, N=1, seed=1)
    neg = neg[:, 0]
    out = nb.bpr_loss(pos, neg, reduction="none")
    expect_shape(out, (5,), "reduction='none' with (B,) negatives: one loss per row",
                 hint="(B,) negatives pair up with (B,) positives elementwise; pos[:, None] - neg[None, :] makes "
                      "every positive meet every row's negative")
    expect_close(out, oracle_bpr(pos, neg), "BPR per row, one negative each", rtol=1e-5, atol=1e-6)


def test_reductions(nb):
    pos, neg = _scores(B=3, N=6, seed=2)
    none = nb.bpr_loss(pos, neg, reduction="none")
    expect_shape(none, (3, 6), "reduction='none' with (B, N) negatives")
    expect_close(none, oracle_bpr(pos, neg), "BPR per pair", rtol=1e-5, atol=1e-6,
                 hint="-log sigmoid(pos - neg): a positive far above its negative has a loss near 0")
    expect_close(nb.bpr_loss(pos, neg, reduction="sum"), oracle_bpr(pos, neg).sum(), "reduction='sum'", rtol=1e-5,
                 atol=1e-5)
    expect_close(nb.bpr_loss(pos, neg), oracle_bpr(pos, neg).mean(), "the mean is over every pair, not per row first",
                 rtol=1e-5, atol=1e-6)


def test_gradients(nb):
    pos, neg = _scores(B=3, N=5, seed=3)
    p, n = pos.clone().requires_grad_(True), neg.clone().requires_grad_(True)
    nb.bpr_loss(p, n, reduction="sum").backward()
    expect(p.grad is not None and n.grad is not None, "gradients reach both scores")
    sig = torch.sigmoid(neg - pos[:, None])  # d loss / d neg = sigma(neg - pos)
    expect_close(n.grad, sig, "d loss / d s- = sigmoid(s- - s+)", rtol=1e-4, atol=1e-6)
    expect_close(p.grad, -sig.sum(dim=1), "d loss / d s+ = -sum over its negatives of sigmoid(s- - s+)", rtol=1e-4,
                 atol=1e-6)


def test_extreme_differences_stay_finite(nb):
    pos = torch.tensor([100.0, -100.0, 0.0], requires_grad=True)
    neg = torch.tensor([[-100.0, 0.0], [100.0, 0.0], [100.0, -100.0]], requires_grad=True)
    loss = nb.bpr_loss(pos, neg, reduction="none")
    expect(bool(torch.isfinite(loss).all()), "finite losses for score differences of ±200", got=loss.tolist(),
           hint="-torch.log(torch.sigmoid(d)) is inf once sigmoid(d) rounds to 0: use -F.logsigmoid(d)")
    expect_close(loss, oracle_bpr(pos.detach(), neg.detach()), "losses for differences of ±200", rtol=1e-5, atol=1e-5)
    loss.sum().backward()
    expect(bool(torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all()),
           "finite gradients for differences of ±200", got=f"{pos.grad.tolist()}, {neg.grad.tolist()}")


def test_ordering_direction(nb):
    pos = torch.tensor([3.0, 3.0])
    right, wrong = nb.bpr_loss(pos, torch.tensor([[-3.0], [-3.0]])), nb.bpr_loss(pos, torch.tensor([[9.0], [9.0]]))
    expect(float(right) < 0.01 < float(wrong), "a positive far above its negatives costs almost nothing, one below "
           "them costs a lot", got=f"loss {float(right):.4f} (pos ahead by 6) and {float(wrong):.4f} (pos behind by 6)",
           hint="the loss is -log sigmoid(pos - neg), not of neg - pos")


def test_inputs_unchanged(nb):
    pos, neg = _scores(seed=4)
    call_leaving_inputs_unchanged(nb.bpr_loss, pos, neg, what="bpr_loss")


def test_bad_arguments(nb):
    pos, neg = _scores(seed=5)
    nb.bpr_loss(pos, neg)
    with pytest.raises(ValueError):
        nb.bpr_loss(pos, neg, reduction="batchmean")
