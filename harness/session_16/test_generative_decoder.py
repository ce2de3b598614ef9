"""Exercise 6: GenerativeDecoder (graded with the reference DecoderBlock's parameters)."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_shape
from harness.autograder.modules import expect_same_function, perturb, share_weights

from .conftest import VOCAB, small_decoder

pytestmark = pytest.mark.exercise("GenerativeDecoder")



@pytest.fixture(autouse=True)
def reference_block(nb, reference, monkeypatch):
    """Exercise 5's block from the reference (same parameters), so that the decoder is graded on its own."""
    monkeypatch.setitem(nb._globals(), "DecoderBlock", reference.DecoderBlock)


def _tokens(rows, width=None):
    width = width or max(len(r) for r in rows)
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        if r:
            out[b, width - len(r):] = torch.tensor(r)
    return out


ROWS = [[1, 2, 6, 9, 3, 7, 10, 4], [1, 5, 8, 11], [1, 3]]


def _model(nb, seed=0, **kwargs):
    model = small_decoder(nb, seed=seed, **kwargs)
    perturb(model, seed)
    return model


def test_shapes(nb):
    model = _model(nb)
    logits = model(_tokens(ROWS))
    expect_shape(logits, (3, 8, VOCAB), "logits (B, T, vocab_size)")
    expect(logits.dtype == torch.float32, "logits are float32", got=str(logits.dtype))


def test_parameters_as_specified(nb, reference):
    learner, ref = small_decoder(nb), small_decoder(reference)
    share_weights(learner, ref, "GenerativeDecoder")
    names = {n for n, _ in learner.named_parameters()}
    expect(not any(n.startswith("head") for n in names), "the output head is tied to the token embedding (no `head`)")


def test_causal(nb):
    model = _model(nb, seed=1)
    a = _tokens([[1, 2, 6, 9, 3, 7, 10]])
    b = a.clone()
    b[0, 4:] = torch.tensor([5, 8, 11])
    expect_close(model(b)[0, :4], model(a)[0, :4], "logits of positions 0..3 do not see tokens 4..6", atol=1e-5,
                 hint="each block's attention is causal; key_mask = tokens != PAD")


def test_left_padding_is_invisible(nb):
    model = _model(nb, seed=2)
    short = _tokens([[1, 2, 6, 9]])
    wide = _tokens([[1, 2, 6, 9]], width=9)
    expect_close(model(wide)[0, -4:], model(short)[0], "logits at the real positions with 5 PAD tokens in front",
                 atol=1e-4, hint="the key mask hides PAD keys; RoPE makes the shift in absolute positions harmless")


def test_tied_head(nb):
    model = _model(nb, seed=3)
    tokens = _tokens(ROWS)
    before = model(tokens)
    with torch.no_grad():
        model.token_embedding.weight[7] += 1.0  # changes the input of token 7 AND its output logit
    after = model(tokens)
    moved = (after - before).abs().amax(dim=(0, 1))
    expect(bool(moved[7] > 10 * moved[torch.arange(VOCAB) != 7].max().clamp_min(1e-6)) or bool(moved[7] > 1e-2),
           "the logit of a token moves with its embedding row (tied output head)",
           hint="logits = self.norm(x) @ self.token_embedding.weight.T")


def test_cache_gives_the_same_logits(nb):
    model = _model(nb, seed=4)
    tokens = _tokens(ROWS, width=9)
    full = model(tokens)
    cache = nb.KVCache()
    first = model(tokens[:, :6], cache)
    expect(cache.length == 6, "after reading 6 tokens the cache holds 6 positions", got=cache.length,
           hint="store the key mask (and each block's (k, v)) in the cache: cache.layers, cache.key_mask")
    expect_close(first, full[:, :6], "logits of the first 6 tokens read into an empty cache", atol=1e-4)
    step = model(tokens[:, 6:8], cache)
    expect_close(step, full[:, 6:8], "logits of tokens 6..7 continuing the cache", atol=1e-4,
                 hint="positions continue at cache.length; key_mask = cat([cache.key_mask, tokens != PAD], 1); "
                      "block i gets cache.layers[i] as its past")
    last = model(tokens[:, 8:], cache)
    expect(cache.length == 9, "the cache grows with every call", got=cache.length)
    expect_close(last, full[:, 8:], "logits of token 8 after two calls with the cache", atol=1e-4)


def test_cache_follows_reordered_rows(nb):
    model = _model(nb, seed=5)
    tokens = _tokens(ROWS, width=8)
    cache = nb.KVCache()
    model(tokens[:, :6], cache)
    rows = torch.tensor([2, 0, 0, 1])
    cache.reorder(rows)
    got = model(tokens[rows, 6:], cache)
    expect_close(got, model(tokens[rows])[:, 6:], "logits after the cache's rows were reordered (rows 2, 0, 0, 1)",
                 atol=1e-4, hint="read everything per-row from the cache (keys, values and key_mask)")


def test_same_function_as_specified(nb, reference):
    learner, ref = small_decoder(nb, seed=6), small_decoder(reference, seed=6)
    share_weights(learner, ref, "GenerativeDecoder")
    tokens = _tokens(ROWS, width=9)
    expect_same_function(learner, ref, (tokens,), "GenerativeDecoder logits (left-padded batch, padded positions too)",
                         hint="dropout(token_embedding(tokens)); blocks at positions 0..T-1 with key_mask = tokens != "
                              "PAD; norm; logits = h @ token_embedding.weight.T")


def test_dropout_only_in_training(nb):
    model = small_decoder(nb, seed=8, dropout=0.5)
    tokens = _tokens(ROWS)
    model.eval()
    expect_close(model(tokens), model(tokens), "eval mode is deterministic", atol=0)
    model.train()
    expect(not torch.allclose(model(tokens), model(tokens)), "train mode applies dropout",
           hint="self.dropout on the token embeddings, and the blocks' own dropout")
