"""Exercise 5: DecoderBlock (session 03's block, continuing a KV cache)."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_shape
from harness.autograder.modules import expect_same_function, perturb, share_weights

pytestmark = pytest.mark.exercise("DecoderBlock")

DIM, HEADS = 16, 2


@pytest.fixture(autouse=True)
def reference_attention(nb, reference, monkeypatch):
    """Exercise 4's attention from the reference, so that the block is graded on its own."""
    monkeypatch.setitem(nb._globals(), "causal_attention", reference.causal_attention)


def _block(module, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    block = module.DecoderBlock(DIM, HEADS, dropout=dropout).eval()
    perturb(block, seed)
    return block


def _x(batch=2, length=6, seed=0):
    return torch.randn(batch, length, DIM, generator=torch.Generator().manual_seed(seed))


def _left_padded(batch, length, real):
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for b, n in enumerate(real):
        mask[b, length - n:] = True
    return mask


def _run(block, x, key_mask, start=0, past=None):
    out = block(x, torch.arange(start, start + x.shape[1]), key_mask, past)
    expect(isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], tuple) and len(out[1]) == 2,
           "DecoderBlock returns (y, (k, v))", got=type(out).__name__,
           hint="return the block's output and the keys and values of all positions, for the cache")
    return out


def test_shapes(nb):
    block = _block(nb)
    y, (k, v) = _run(block, _x(), torch.ones(2, 6, dtype=torch.bool))
    expect_shape(y, (2, 6, DIM), "block output")
    expect_shape(k, (2, HEADS, 6, DIM // HEADS), "returned keys (B, heads, T, head_dim)")
    expect_shape(v, (2, HEADS, 6, DIM // HEADS), "returned values")


def test_without_cache_it_is_session_03s_block(nb, reference):
    from harness import upstream

    block = _block(nb)
    x = _x()
    causal = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
    want = upstream(3).TransformerBlock.forward(block, x, causal)  # session 03's forward, on these weights
    got, _ = _run(block, x, torch.ones(2, 6, dtype=torch.bool))
    expect_close(got, want, "with no cache, positions 0..T-1 and no padding, your block vs session 03's "
                 "TransformerBlock.forward on the same weights", atol=1e-5,
                 hint="the same computation as session 03: qkv(norm1(x)) split into heads, RoPE on q and k, causal "
                      "attention, out, residual; then x + w_down(silu(w_gate(h)) * w_up(h)) with h = norm2(x)")


def test_continuing_a_cache_gives_the_same_outputs(nb):
    block = _block(nb, seed=1)
    x = _x(length=7, seed=1)
    mask = _left_padded(2, 7, [7, 4])
    full, (k_full, v_full) = _run(block, x, mask)
    head, past = _run(block, x[:, :5], mask[:, :5])
    tail, (k, v) = _run(block, x[:, 5:], mask, start=5, past=past)
    expect_shape(k, (2, HEADS, 7, DIM // HEADS), "keys returned after continuing a cache of 5 with 2 positions",
                 hint="concatenate the past keys and the new ones along the position dimension (dim=2)")
    expect_close(tail, full[:, 5:], "positions 5..6 computed after a cache of 0..4 vs in one pass", atol=1e-5,
                 hint="the new rows get RoPE at their own positions (5, 6: the `positions` argument), the past keys "
                      "are used as they were returned (already rotated), and the key mask covers past + new")
    expect_close(k, k_full, "keys of all 7 positions, from the cache vs from one pass", atol=1e-5,
                 hint="rotate only the new keys, then concatenate: rotating after the concatenation turns the past "
                      "keys a second time")
    expect_close(v, v_full, "values of all 7 positions, from the cache vs from one pass", atol=1e-5)
    one, _ = _run(block, x[:, 6:], mask, start=6, past=_run(block, x[:, :6], mask[:, :6])[1])
    expect_close(one, full[:, 6:], "one new position after a cache of 6", atol=1e-5)


def test_positions_are_relative(nb):
    block = _block(nb, seed=2)
    x = _x(seed=2)
    mask = torch.ones(2, 6, dtype=torch.bool)
    a, _ = _run(block, x, mask)
    b, _ = _run(block, x, mask, start=40)
    expect_close(b, a, "the same tokens at positions 40..45 and at 0..5 (RoPE depends on distances only)", atol=1e-4,
                 hint="apply_rope(q, positions) and apply_rope(k, positions) with the positions given")
    c = block(x, torch.arange(6).flip(0), mask, None)[0]
    expect(not torch.allclose(c, a, atol=1e-4), "the positions passed are the ones used",
           hint="use the `positions` argument for RoPE, not torch.arange(T): after a cache, the new rows are at "
                "positions T_past, T_past + 1, ...")


def test_padded_keys_are_ignored(nb):
    block = _block(nb, seed=3)
    x = _x(seed=3)
    mask = _left_padded(2, 6, [3, 6])
    y = x.clone()
    y[0, :3] = torch.randn(3, DIM) * 10
    expect_close(_run(block, y, mask)[0][0, 3:], _run(block, x, mask)[0][0, 3:],
                 "real positions do not depend on what padded positions hold", atol=1e-5,
                 hint="pass key_mask to causal_attention")


def test_same_function_as_specified(nb, reference):
    learner = nb.DecoderBlock(DIM, HEADS, dropout=0.0).eval()
    ref = reference.DecoderBlock(DIM, HEADS, dropout=0.0).eval()
    share_weights(learner, ref, "DecoderBlock")
    x = _x(length=6, seed=5)
    mask = _left_padded(2, 6, [6, 2])
    past = tuple(t.detach() for t in _run(ref, x[:, :4], mask[:, :4])[1])
    expect_same_function(learner, ref, (x[:, 4:], torch.arange(4, 6), mask, past),
                         "DecoderBlock continuing a cache of 4 positions (its output and (k, v))",
                         hint="RoPE on the new q and k at `positions`; cat past and new keys/values (dim=2); "
                              "causal_attention(q, k, v, key_mask, dropout_p if training else 0); session 03's "
                              "residuals and SwiGLU")


def test_dropout_only_in_training(nb):
    block = _block(nb, seed=4, dropout=0.5)
    x, mask = _x(seed=4), torch.ones(2, 6, dtype=torch.bool)
    block.eval()
    expect_close(_run(block, x, mask)[0], _run(block, x, mask)[0], "eval mode is deterministic", atol=0,
                 hint="dropout_p=self.dropout_p if self.training else 0.0, and self.dropout (an nn.Dropout) on the "
                      "residual branches")
    block.train()
    expect(not torch.allclose(_run(block, x, mask)[0], _run(block, x, mask)[0]), "train mode applies dropout")
