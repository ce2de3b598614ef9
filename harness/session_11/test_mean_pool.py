"""Exercise 2: mean_pool."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close, expect_dtype, expect_shape

pytestmark = pytest.mark.exercise("mean_pool")

HINT = ("m = attention_mask.unsqueeze(-1).float(); (h.float() * m).sum(1) / m.sum(1).clamp_min(1e-9): the mean over "
        "real tokens only")


def _example():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [1e4, -1e4]],
                      [[2.0, 0.0], [-1e4, 1e4], [-1e4, 1e4]],
                      [[1.0, 1.0], [2.0, 2.0], [6.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    return h, mask, torch.tensor([[2.0, 3.0], [2.0, 0.0], [3.0, 1.0]])


def test_shape_and_dtype(nb):
    h, mask, _ = _example()
    out = nb.mean_pool(h, mask)
    expect_shape(out, (3, 2), "pooled vectors, (B, H)")
    expect_dtype(out, torch.float32, "pooled vectors")
    out = nb.mean_pool(h.bfloat16(), mask)
    expect_dtype(out, torch.float32, "pooled vectors of bfloat16 hidden states",
                 hint="compute in float32: h.float() * mask; autocast hands you bf16 hidden states")


def test_padding_does_not_count(nb):
    h, mask, want = _example()
    out = call_leaving_inputs_unchanged(nb.mean_pool, h, mask, what="mean_pool")
    expect_close(out, want, "the masked mean of a hand-made batch (padded positions hold +-1e4)", rtol=1e-6, hint=HINT)


def test_mask_dtypes(nb):
    h, mask, want = _example()
    for m in (mask.bool(), mask.float(), mask.long()):
        expect_close(nb.mean_pool(h, m), want, f"the masked mean with a {str(m.dtype).replace('torch.', '')} mask",
                     rtol=1e-6, hint="convert the mask to float before multiplying")


def test_left_and_right_padding_agree(nb):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(4, 5, 8, generator=g)
    lengths = torch.tensor([5, 3, 1, 4])
    right = torch.arange(5)[None, :] < lengths[:, None]
    left = right.flip(1)
    h_right = torch.where(right[..., None], tokens, torch.randn(4, 5, 8, generator=g) * 100)
    h_left = torch.zeros_like(h_right)
    for b, n in enumerate(lengths.tolist()):
        h_left[b, 5 - n:] = tokens[b, :n]
        h_left[b, :5 - n] = 55.0
    expect_close(nb.mean_pool(h_left, left), nb.mean_pool(h_right, right),
                 "the same tokens, padded on the left or on the right", rtol=1e-5, hint=HINT)


def test_empty_row_is_zero_not_nan(nb):
    h = torch.randn(2, 3, 4)
    mask = torch.tensor([[0, 0, 0], [1, 1, 0]])
    out = nb.mean_pool(h, mask)
    expect(bool(torch.isfinite(out).all()), "a row without any real token gives no NaN", got=out,
           hint="clamp the count: m.sum(1).clamp_min(1e-9)")
    expect_close(out[0], torch.zeros(4), "a row without any real token pools to zeros", atol=1e-6)


@pytest.mark.time_limit(60)
def test_same_as_sentence_transformers_pooling(nb, st_model):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 9, 384, generator=g)
    mask = torch.ones(5, 9, dtype=torch.long)
    for b, n in enumerate([9, 4, 1, 7, 2]):
        mask[b, n:] = 0
    pooling = st_model[1]
    want = pooling({"token_embeddings": h, "attention_mask": mask, "modality": "text"})["sentence_embedding"]
    expect_close(nb.mean_pool(h, mask), want, "mean pooling against sentence-transformers' own Pooling module",
                 rtol=1e-5, atol=1e-6, hint=HINT)
