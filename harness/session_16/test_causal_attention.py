"""Exercise 4: causal_attention, against F.scaled_dot_product_attention and the rules of the mask."""
import math

import pytest
import torch
import torch.nn.functional as F

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close, expect_shape

pytestmark = pytest.mark.exercise("causal_attention")


def _qkv(batch=2, heads=2, n_queries=5, n_keys=5, dim=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, n_queries, dim, generator=g, dtype=dtype)
    k = torch.randn(batch, heads, n_keys, dim, generator=g, dtype=dtype)
    v = torch.randn(batch, heads, n_keys, dim, generator=g, dtype=dtype)
    return q, k, v


def _left_padded(batch, n_keys, real):
    mask = torch.zeros(batch, n_keys, dtype=torch.bool)
    for b, n in enumerate(real):
        mask[b, n_keys - n:] = True
    return mask


def _allowed(key_mask, n_queries):
    n_keys = key_mask.shape[1]
    p = torch.arange(n_keys - n_queries, n_keys)[:, None]
    j = torch.arange(n_keys)[None, :]
    return (((j <= p) & key_mask[:, None, None, :]) | (j == p))


def test_shape(nb):
    q, k, v = _qkv(dtype=torch.float32)
    out = nb.causal_attention(q, k, v, torch.ones(2, 5, dtype=torch.bool))
    expect_shape(out, (2, 2, 5, 8), "attention output (B, H, Tq, D)")


def test_future_is_invisible(nb):
    q, k, v = _qkv()
    mask = torch.ones(2, 5, dtype=torch.bool)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 3:], v2[:, :, 3:] = torch.randn_like(k2[:, :, 3:]), torch.randn_like(v2[:, :, 3:])
    expect_close(nb.causal_attention(q, k2, v2, mask)[:, :, :3], nb.causal_attention(q, k, v, mask)[:, :, :3],
                 "positions 0..2 do not change when keys and values at 3..4 do (causal mask)", atol=1e-10,
                 hint="query i may attend to key j only when j <= i: scores.masked_fill(~allowed, -inf)")


def test_same_as_scaled_dot_product_attention(nb):
    q, k, v = _qkv(batch=3, n_queries=6, n_keys=6)
    mask = _left_padded(3, 6, [6, 3, 1])
    got = nb.causal_attention(q, k, v, mask)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=_allowed(mask, 6))
    expect_close(got, want, "causal_attention vs F.scaled_dot_product_attention with the same mask "
                 "(left padding, every position)", atol=1e-9,
                 hint="softmax(q k^T / sqrt(D)) over the KEY dimension (the last), masked with -inf where not allowed")


def test_scale_is_one_over_sqrt_of_head_dim(nb):
    q, k, v = _qkv(n_queries=4, n_keys=4, dim=32)
    mask = torch.ones(2, 4, dtype=torch.bool)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=_allowed(mask, 4))
    expect_close(nb.causal_attention(q, k, v, mask), want, "attention with head_dim 32", atol=1e-9,
                 hint=f"divide the scores by sqrt(D) = {math.sqrt(32):.3f}, the head dimension (q.shape[-1])")


def test_queries_continue_the_keys(nb):
    # a KV cache: the last 2 queries of 6 positions see the 6 keys; they must equal the last 2 rows of the full result
    q, k, v = _qkv(batch=2, n_queries=6, n_keys=6, seed=3)
    mask = _left_padded(2, 6, [6, 4])
    full = nb.causal_attention(q, k, v, mask)
    tail = nb.causal_attention(q[:, :, -2:], k, v, mask)
    expect_shape(tail, (2, 2, 2, 8), "output of 2 queries over 6 keys")
    expect_close(tail, full[:, :, -2:], "2 new queries over 6 keys (the last 2 positions) vs the last 2 rows of the "
                 "full attention", atol=1e-9,
                 hint="the queries are the LAST Tq positions: query i sits at position Tk - Tq + i, so it may see keys "
                      "j <= Tk - Tq + i; torch.tril of a (Tq, Tk) matrix puts query 0 at position 0 instead")
    one = nb.causal_attention(q[:, :, -1:], k, v, mask)
    expect_close(one, full[:, :, -1:], "a single new query over all 6 keys (one decoding step)", atol=1e-9)


def test_padded_keys_are_ignored(nb):
    q, k, v = _qkv(batch=2, n_queries=5, n_keys=5, seed=1)
    mask = _left_padded(2, 5, [3, 5])
    k2, v2 = k.clone(), v.clone()
    k2[0, :, :2], v2[0, :, :2] = 100.0, -100.0
    got, want = nb.causal_attention(q, k2, v2, mask), nb.causal_attention(q, k, v, mask)
    expect_close(got[0, :, 2:], want[0, :, 2:], "outputs at real positions do not depend on padded keys and values",
                 atol=1e-9, hint="AND the causal rule with key_mask[:, None, None, :]: no query attends to a PAD key")


def test_padded_query_attends_to_itself(nb):
    q, k, v = _qkv(batch=1, n_queries=4, n_keys=4, seed=2)
    mask = _left_padded(1, 4, [1])
    out = nb.causal_attention(q, k, v, mask)
    expect(bool(torch.isfinite(out).all()), "no NaN or inf, even for padded query positions",
           hint="a padded query whose keys are all padding would have an empty softmax (NaN): OR the mask with the "
                "diagonal, j == Tk - Tq + i, so every position attends at least to itself")
    expect_close(out[0, :, :3], v[0, :, :3], "a padded position with only padding before it attends to itself alone: "
                 "its output is its own value", atol=1e-9,
                 hint="allowed = ((j <= p) & key_mask) | (j == p)")


def test_gradients_match(nb):
    q, k, v = _qkv(batch=2, n_queries=5, n_keys=5, seed=4)
    mask = _left_padded(2, 5, [5, 2])
    grads = []
    for fn in (nb.causal_attention, lambda *a: F.scaled_dot_product_attention(*a[:3], attn_mask=_allowed(a[3], 5))):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = fn(*leaves, mask)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append([t.grad for t in leaves])
    for name, got, want in zip("qkv", *grads):
        expect(got is not None, f"gradient reaches {name}")
        expect_close(got, want, f"gradient of {name}", atol=1e-9, hint="use out-of-place operations (masked_fill, "
                     "not masked_fill_ on a tensor autograd needs)")


def test_dropout_only_when_asked(nb):
    q, k, v = _qkv(dtype=torch.float32)
    mask = torch.ones(2, 5, dtype=torch.bool)
    a, b = nb.causal_attention(q, k, v, mask), nb.causal_attention(q, k, v, mask)
    expect_close(a, b, "dropout_p = 0 is deterministic", atol=0)
    torch.manual_seed(0)
    c = nb.causal_attention(q, k, v, mask, dropout_p=0.5)
    expect(not torch.allclose(c, a, atol=1e-4), "dropout_p = 0.5 drops attention weights",
           hint="F.dropout(weights, p=dropout_p) on the softmax output, when dropout_p > 0")


def test_does_not_modify_inputs(nb):
    q, k, v = _qkv(dtype=torch.float32)
    mask = _left_padded(2, 5, [5, 2])
    call_leaving_inputs_unchanged(nb.causal_attention, q, k, v, mask, what="causal_attention")
