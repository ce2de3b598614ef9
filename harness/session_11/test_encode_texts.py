"""Exercise 3: encode_texts (the real all-MiniLM-L6-v2, compared with sentence-transformers)."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_shape

from .conftest import TEXTS, ForwardSpy, SpyTokenizer

pytestmark = pytest.mark.exercise("encode_texts")

PIPELINE_HINT = ("tokenizer(batch, padding=True, truncation=True, max_length=max_tokens, return_tensors='pt') -> "
                 "model(**inputs).last_hidden_state -> mean_pool(h, inputs['attention_mask']) -> F.normalize")


def _encode(nb, minilm, texts=TEXTS, **kwargs):
    tokenizer, model = minilm
    kwargs.setdefault("batch_size", 3)
    kwargs.setdefault("progress", False)
    return nb.encode_texts(texts, tokenizer, model, **kwargs)


def test_shape_dtype_and_norms(nb, minilm):
    out = _encode(nb, minilm)
    expect_shape(out, (len(TEXTS), 384), "one vector per text, (N, hidden size)")
    expect_dtype(out, torch.float32, "sentence vectors")
    expect(out.device.type == "cpu", "the vectors come back on the CPU", got=out.device.type)
    expect(not out.requires_grad, "the vectors carry no autograd graph", hint="run the model under torch.no_grad()")
    expect_close(out.norm(dim=1), torch.ones(len(TEXTS)), "L2 norms of the vectors (normalize=True)", rtol=1e-5,
                 hint="F.normalize(pooled, dim=-1) after pooling (not the token vectors before it)")


def test_no_grad_and_eval_mode(nb, minilm):
    tokenizer, model = minilm
    model.train()  # a caller may hand over a model in training mode: dropout must be off anyway
    spy = ForwardSpy(model)
    try:
        nb.encode_texts(TEXTS[:4], tokenizer, model, batch_size=2, progress=False)
    finally:
        spy.remove()
        model.eval()
    expect(len(spy.calls) == 2, "4 texts in batches of 2: two forward passes", got=f"{len(spy.calls)} calls")
    expect(not any(c["grad"] for c in spy.calls), "the model runs under torch.no_grad()",
           hint="with torch.no_grad(): around the batches (no graph: half the memory, less time)")
    expect(not any(c["training"] for c in spy.calls), "the model runs in eval mode (dropout off)",
           hint="model.eval() before encoding: MiniLM has dropout 0.1, and a vector would change on every call")


def test_batch_size_does_not_change_the_vectors(nb, minilm):
    one = _encode(nb, minilm, batch_size=1)
    many = _encode(nb, minilm, batch_size=5)
    expect_close(many, one, "vectors with batches of 5 vs one text at a time", rtol=1e-4, atol=1e-5,
                 hint="pool with the attention mask: padded positions must not count")


def test_rows_in_input_order(nb, minilm):
    forward = _encode(nb, minilm)
    order = [3, 0, 6, 2, 5, 1, 4]
    shuffled = _encode(nb, minilm, texts=[TEXTS[i] for i in order])
    expect_close(shuffled, forward[order], "row n is the vector of texts[n], whatever the order of the texts",
                 rtol=1e-4, atol=1e-5, hint="if you sort the texts by length, put the rows back in the input order")


def test_truncation_at_max_tokens(nb, minilm):
    tokenizer, model = minilm
    spy_tok = SpyTokenizer(tokenizer)
    spy = ForwardSpy(model)
    long_text = "passage: " + "lantern bridge wizard " * 300  # ~900 tokens, beyond the model's 512 positions
    try:
        out = nb.encode_texts([long_text, TEXTS[0]], spy_tok, model, batch_size=2, max_tokens=32, progress=False)
    finally:
        spy.remove()
    expect(bool(spy_tok.calls) and all(c.get("truncation") in (True, "longest_first") for c in spy_tok.calls),
           "the tokenizer is called with truncation=True", got=spy_tok.calls[:1], hint=PIPELINE_HINT)
    expect(all(c.get("max_length") == 32 for c in spy_tok.calls), "the tokenizer truncates at max_length=max_tokens",
           got=[c.get("max_length") for c in spy_tok.calls])
    expect(all(c["shape"][1] <= 32 for c in spy.calls), "the model never sees more than max_tokens tokens",
           got=[c["shape"] for c in spy.calls])
    expect_shape(out, (2, 384), "vectors of a text longer than the model's 512 positions")


def test_amp_autocast(nb, minilm):
    tokenizer, model = minilm
    plain = _encode(nb, minilm, texts=TEXTS[:3])
    for amp, want in ((None, False), (False, False), (True, True)):
        spy = ForwardSpy(model)
        try:
            out = nb.encode_texts(TEXTS[:3], tokenizer, model, batch_size=3, amp=amp, progress=False)
        finally:
            spy.remove()
        got = [c["autocast"] for c in spy.calls]
        expect(all(g == want for g in got), f"amp={amp} on a CPU: autocast {'on' if want else 'off'} in the forward pass",
               got=f"autocast enabled: {got}",
               hint="amp=None: autocast only on a GPU (harness.env.amp_dtype(device) is None on a CPU); amp=True: "
                    "torch.autocast(device.type, dtype=amp_dtype(device) or torch.bfloat16)")
        expect_dtype(out, torch.float32, f"vectors with amp={amp}", hint="return pooled.float().cpu()")
        if want:
            expect(spy.calls[0]["autocast_dtype"] == torch.bfloat16, "autocast on a CPU runs in bfloat16",
                   got=spy.calls[0]["autocast_dtype"])
            cosine = (out * plain).sum(1)
            expect(bool((cosine > 0.99).all()), "bfloat16 vectors stay close to float32 ones (cosine > 0.99)",
                   got=cosine)


def test_progress_bar(nb, minilm, monkeypatch):
    made = []

    class Bar:
        def __init__(self, iterable=None, *args, **kwargs):
            self.iterable, self.kwargs, self.updates = iterable, kwargs, 0
            made.append(self)

        def __iter__(self):
            for x in self.iterable:
                self.updates += 1
                yield x

        def update(self, n=1):
            self.updates += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

        def close(self):
            pass

        def set_postfix(self, *args, **kwargs):
            pass

    monkeypatch.setitem(nb._globals(), "tqdm", Bar)
    _encode(nb, minilm, texts=TEXTS[:4], batch_size=2, progress=True)
    expect(len(made) == 1, "one tqdm progress bar per call (with progress=True)", got=f"{len(made)} bars",
           hint="bar = tqdm(total=len(texts), ...) and bar.update(len(batch)), or tqdm over the batches; use the "
                "name `tqdm` imported in the export cell")
    expect(made[0].updates > 0, "the progress bar advances", got=f"{made[0].updates} updates")
    made.clear()
    _encode(nb, minilm, texts=TEXTS[:4], batch_size=2, progress=False)
    expect(all(bar.kwargs.get("disable") for bar in made), "progress=False shows no bar (tqdm(..., disable=True) or none)",
           got=[bar.kwargs for bar in made])


def test_empty_input(nb, minilm):
    out = _encode(nb, minilm, texts=[])
    expect_shape(out, (0, 384), "no texts: a (0, hidden size) tensor", hint="model.config.hidden_size columns")


def test_unnormalized_vectors_are_the_pooled_ones(nb, minilm, st_model):
    out = _encode(nb, minilm, normalize=False)
    features = st_model.tokenize(TEXTS)
    with torch.no_grad():
        want = st_model[1](st_model[0](features))["sentence_embedding"]
    expect_close(out, want, "normalize=False: the mean-pooled vectors of sentence-transformers' modules 0 and 1",
                 rtol=0.0, atol=1e-5, hint="normalise only when normalize=True; " + PIPELINE_HINT)


@pytest.mark.time_limit(60)
def test_same_vectors_as_sentence_transformers(nb, minilm, st_model):
    out = _encode(nb, minilm, batch_size=3, max_tokens=256)
    want = st_model.encode(TEXTS, batch_size=3, convert_to_tensor=True, normalize_embeddings=True)
    expect_close(out, want.cpu(), "your vectors vs SentenceTransformer.encode(normalize_embeddings=True), "
                 "all-MiniLM-L6-v2 (to 1e-5)", rtol=0.0, atol=1e-5, hint=PIPELINE_HINT)
