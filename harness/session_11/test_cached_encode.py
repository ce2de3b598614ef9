"""Exercise 4: cached_encode."""
import hashlib

import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_equal

pytestmark = pytest.mark.exercise("cached_encode")

KEY_HINT = ("h = hashlib.sha256(model_name.encode('utf-8')); for t in texts: h.update(b'\\0'); "
            "h.update(t.encode('utf-8')); the file is cache_dir / f'{h.hexdigest()}.pt'")


class Encoder:
    """encode(texts) -> (N, 3): a vector per text from its length, counting calls."""

    def __init__(self, dtype=torch.float32, as_numpy=False):
        self.calls, self.dtype, self.as_numpy = [], dtype, as_numpy

    def __call__(self, texts):
        self.calls.append(list(texts))
        out = torch.tensor([[len(t), t.count("a"), 1.0] for t in texts], dtype=self.dtype)
        return out.numpy() if self.as_numpy else out


def _key(model_name, texts):
    h = hashlib.sha256(model_name.encode("utf-8"))
    for t in texts:
        h.update(b"\0")
        h.update(t.encode("utf-8"))
    return h.hexdigest()


def test_miss_encodes_once_and_returns_the_vectors(nb, tmp_path):
    encode = Encoder()
    texts = ["passage: a", "passage: banana", "passage: cherry"]
    out = nb.cached_encode(texts, "model-x", encode, tmp_path)
    expect_equal(len(encode.calls), 1, "calls of `encode` on a miss", hint="call encode(texts) once, with every text")
    expect(encode.calls[0] == texts, "encode gets the texts, as a list, in order", got=encode.calls[0])
    expect_dtype(out, torch.float32, "the returned vectors")
    expect_close(out, Encoder()(texts), "the returned vectors are encode's", atol=0)


def test_hit_does_not_encode(nb, tmp_path):
    texts = ["passage: a", "passage: banana"]
    first = nb.cached_encode(texts, "model-x", Encoder(), tmp_path)
    encode = Encoder()
    second = nb.cached_encode(list(texts), "model-x", encode, tmp_path)
    expect_equal(len(encode.calls), 0, "calls of `encode` on the second call with the same model and texts",
                 hint="look for cache_dir / f'{key}.pt' first and load it with torch.load(path, weights_only=True)")
    expect_close(second, first, "the cached vectors are the ones stored", atol=0)


def test_file_name_is_the_sha256_key(nb, tmp_path):
    texts = ["passage: Toy Story (1995).", "passage: Heat (1995)."]
    nb.cached_encode(texts, "intfloat/e5-base-v2", Encoder(), tmp_path / "cache")
    files = sorted(p.name for p in (tmp_path / "cache").iterdir()) if (tmp_path / "cache").is_dir() else []
    expect_equal(files, [f"{_key('intfloat/e5-base-v2', texts)}.pt"], "the files in the cache folder after one miss",
                 hint=KEY_HINT + " (the folder is created when missing; no temporary file stays behind). Python's "
                      "hash() is salted per process: a new kernel would never find the file")


@pytest.mark.parametrize("change", ["a text", "the model", "the order", "where the texts split"])
def test_key_changes_with_what_determines_the_vectors(nb, tmp_path, change):
    base = (["ab", "c", "passage: x"], "model-a")
    other = {"a text": (["ab", "c", "passage: y"], "model-a"), "the model": (["ab", "c", "passage: x"], "model-b"),
             "the order": (["c", "ab", "passage: x"], "model-a"),
             "where the texts split": (["a", "bc", "passage: x"], "model-a")}[change]
    nb.cached_encode(base[0], base[1], Encoder(), tmp_path)
    encode = Encoder()
    nb.cached_encode(other[0], other[1], encode, tmp_path)
    expect_equal(len(encode.calls), 1, f"a cache miss when {change} changes",
                 hint="the key hashes the model name and every text, each preceded by a NUL byte: "
                      "['ab', 'c'] and ['a', 'bc'] are different bytes only with the separator")


def test_unreadable_or_wrong_file_is_a_miss(nb, tmp_path):
    texts = ["passage: a", "passage: b"]
    path = tmp_path / f"{_key('m', texts)}.pt"
    path.write_bytes(b"not a torch file")
    encode = Encoder()
    out = nb.cached_encode(texts, "m", encode, tmp_path)
    expect_equal(len(encode.calls), 1, "a corrupt cache file is encoded again (not a crash)",
                 hint="wrap torch.load in try/except: a file that cannot be read is a miss")
    torch.save(torch.zeros(5, 3), path)
    encode = Encoder()
    out = nb.cached_encode(texts, "m", encode, tmp_path)
    expect_equal(len(encode.calls), 1, "a cache file with another number of rows than texts is encoded again")
    expect_equal(tuple(out.shape), (2, 3), "the vectors then have one row per text")
    encode = Encoder()
    nb.cached_encode(texts, "m", encode, tmp_path)
    expect_equal(len(encode.calls), 0, "after re-encoding, the file was rewritten and hits again")


def test_stores_float32_whatever_encode_returns(nb, tmp_path):
    texts = ["passage: a", "passage: bb"]
    out = nb.cached_encode(texts, "m64", Encoder(dtype=torch.float64, as_numpy=True), tmp_path)
    expect_dtype(out, torch.float32, "vectors from an encode that returns a float64 numpy array",
                 hint="torch.as_tensor(encode(texts)).float().cpu() before saving and returning")
    stored = torch.load(tmp_path / f"{_key('m64', texts)}.pt", weights_only=True)
    expect(torch.is_tensor(stored) and stored.dtype == torch.float32, "the file holds a float32 tensor",
           got=type(stored).__name__ if not torch.is_tensor(stored) else stored.dtype)
