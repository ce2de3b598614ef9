"""Exercise 5: TransformerBlock."""
import pytest
import torch

from harness.autograder.modules import expect_same_function, share_weights
from harness.autograder.checks import expect, expect_close, expect_shape

pytestmark = pytest.mark.exercise("TransformerBlock")


def _block(nb, dim=16, heads=2):
    torch.manual_seed(0)
    return nb.TransformerBlock(dim, heads, dropout=0.0).eval()


def _causal(L):
    return torch.ones(L, L, dtype=torch.bool).tril()[None, None]


def test_shape(nb):
    out = _block(nb)(torch.randn(3, 5, 16), _causal(5))
    expect_shape(out, (3, 5, 16), "block output")


def test_respects_the_mask(nb):
    block = _block(nb)
    x = torch.randn(2, 6, 16)
    y = x.clone()
    y[:, 4:] = torch.randn(2, 2, 16)  # change the future
    a, b = block(x, _causal(6)), block(y, _causal(6))
    expect_close(a[:, :4], b[:, :4], "with a causal mask, positions 0..3 ignore changes at 4..5", atol=1e-5,
                 hint="pass attn_mask to F.scaled_dot_product_attention (True = may attend)")


def test_residual_pre_norm(nb):
    block = _block(nb)
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, torch.nn.Linear) and module.out_features == 16:
                module.weight.zero_()  # output projections of attention and feed-forward
    x = torch.randn(2, 5, 16) * 4
    expect_close(block(x, _causal(5)), x, "with zero output projections the block is the identity", atol=1e-5,
                 hint="pre-norm: x + f(norm(x)); the residual adds the un-normalised x")


def test_uses_rope_positions(nb):
    block = _block(nb)
    x = torch.randn(1, 4, 16)
    full = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    out = block(x, full)
    swapped = block(x[:, [1, 0, 2, 3]], full)[:, [1, 0, 2, 3]]
    expect(not torch.allclose(out, swapped, atol=1e-5), "attention depends on positions (RoPE on q and k)",
           hint="apply_rope to q and k with positions 0..L-1 before attention; without it attention is order-blind")


def test_swiglu_width_and_no_bias(nb):
    block = _block(nb, dim=8, heads=2)
    linears = [m for m in block.modules() if isinstance(m, torch.nn.Linear)]
    widths = sorted((m.in_features, m.out_features) for m in linears)
    expect(sum(1 for w in widths if w == (8, 32)) == 2 and (32, 8) in widths,
           "SwiGLU: two projections dim -> 4*dim (gate, up) and one 4*dim -> dim (down)", got=widths)
    expect(all(m.bias is None for m in linears), "the block's linear layers have no bias",
           hint="nn.Linear(..., bias=False), as in LLaMA-style blocks")


def test_dropout_only_in_training(nb):
    torch.manual_seed(0)
    block = nb.TransformerBlock(16, 2, dropout=0.5)
    x = torch.randn(2, 5, 16)
    block.eval()
    expect_close(block(x, _causal(5)), block(x, _causal(5)), "eval mode is deterministic", atol=0)
    block.train()
    expect(not torch.allclose(block(x, _causal(5)), block(x, _causal(5))), "train mode applies dropout")


def test_same_function_as_specified(nb, reference):
    learner, ref = _block(nb, dim=16, heads=2), reference.TransformerBlock(16, 2, dropout=0.0).eval()
    share_weights(learner, ref, "TransformerBlock")
    torch.manual_seed(3)
    x = torch.randn(2, 6, 16)
    real = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    mask = ((causal & real[:, None, :]) | torch.eye(6, dtype=torch.bool)).unsqueeze(1)
    expect_same_function(learner, ref, (x, mask), "TransformerBlock",
                         hint="qkv(norm1(x)) viewed as (B, L, 3, heads, head_dim): q, k, v in that order, heads "
                              "contiguous; RoPE on q and k; attention; heads merged back to (B, L, dim); out; residual; "
                              "then x + w_down(silu(w_gate(h)) * w_up(h)) with h = norm2(x)")


def test_rope_rotates_queries_and_keys(nb, monkeypatch):
    block = _block(nb)
    calls = []
    real_rope = nb.apply_rope

    def spy(x, positions, *args, **kwargs):
        calls.append(tuple(x.shape))
        return real_rope(x, positions, *args, **kwargs)

    monkeypatch.setitem(nb._globals(), "apply_rope", spy)  # what the block's forward looks up
    block(torch.randn(2, 5, 16), _causal(5))
    expect(len(calls) == 2 and all(shape == (2, 2, 5, 8) for shape in calls),
           "apply_rope is called twice per block, on q and on k, each (B, heads, L, head_dim)", got=calls,
           hint="rotate both: q, k = apply_rope(q, pos), apply_rope(k, pos); rotating only q makes the score depend on "
                "the absolute position of the query, and v is never rotated")
