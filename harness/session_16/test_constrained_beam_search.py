"""Exercise 8: constrained_beam_search (graded with the reference decoder and trie)."""
import math

import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close, expect_dtype, expect_equal, \
    expect_shape

from .conftest import N_ITEMS, SIZES, VOCAB, left_padded_prompts, peaked_reference_decoder, reference_table

pytestmark = pytest.mark.exercise("constrained_beam_search")

HISTORIES = [[1, 5, 9], [2], [], [13, 7, 3, 11]]


@pytest.fixture
def setup(reference):
    model = peaked_reference_decoder(reference)
    table = reference_table(reference)
    trie = reference.build_trie(table, VOCAB)
    return model, trie, table, left_padded_prompts(reference, HISTORIES)


def item_log_probs(model, prompts, table) -> torch.Tensor:
    """Teacher-forced log-probability of every item after each prompt: float (U, n_items), column i = item i + 1."""
    users, width = prompts.shape
    n_items = table.shape[0] - 1
    sequences = torch.cat([prompts.repeat_interleave(n_items, 0), table[1:].repeat(users, 1)], dim=1)
    with torch.no_grad():
        log_p = torch.log_softmax(model(sequences[:, :-1]).float(), dim=-1)[:, width - 1:]
    return log_p.gather(2, sequences[:, width:, None]).squeeze(-1).sum(1).view(users, n_items)


def _search(nb, setup, beam_size, exclude=None, prompts=None):
    model, trie, _, default = setup
    out = nb.constrained_beam_search(model, default if prompts is None else prompts, trie, beam_size, exclude=exclude)
    expect(isinstance(out, tuple) and len(out) == 2, "returns (items, log_probs)", got=type(out).__name__)
    return out


def test_shapes_and_dtypes(nb, setup):
    items, log_probs = _search(nb, setup, 3)
    expect_shape(items, (4, 3), "items (users, beam_size)")
    expect_shape(log_probs, (4, 3), "log_probs (users, beam_size)")
    expect_dtype(items, torch.int64, "items")
    expect_dtype(log_probs, torch.float32, "log_probs")


def test_every_item_is_valid(nb, setup):
    items, log_probs = _search(nb, setup, 4)
    expect(bool(((items >= 1) & (items <= N_ITEMS)).all()), "every returned item is a real item (100% valid IDs)",
           got=items.tolist(), hint="mask the logits with trie.allowed(nodes, available) at EVERY level before "
                                    "choosing: tokens that extend no valid prefix get -inf")
    expect(bool(torch.isfinite(log_probs).all()), "log-probabilities of real items are finite", got=log_probs.tolist())


def test_beams_are_distinct_and_sorted(nb, setup):
    items, log_probs = _search(nb, setup, 4)
    for row, scores in zip(items.tolist(), log_probs):
        expect(len(set(row)) == len(row), "each user's items are distinct", got=row,
               hint="start from ONE beam per user (the root, score 0): B copies of the root extend to B copies of "
                    "the same best prefix")
        expect(bool((scores[:-1] >= scores[1:]).all()), "log-probabilities are sorted, best first",
               got=scores.tolist(), hint="topk returns candidates in descending order; keep that order")


def test_log_probs_equal_a_teacher_forced_recomputation(nb, setup):
    model, _, table, prompts = setup
    items, log_probs = _search(nb, setup, 3)
    want = item_log_probs(model, prompts, table).gather(1, (items - 1).clamp_min(0))
    expect_close(log_probs, want, "log-probabilities of the returned items vs the model's teacher-forced "
                 "log p(ID | prompt) = sum over the ID's tokens of log_softmax(logits)[token]", atol=1e-4,
                 hint="add log_softmax values (over the full vocabulary, before masking) level by level; never add "
                      "probabilities or raw logits, and never renormalise over the allowed tokens")


def test_large_beam_is_an_exact_ranking(nb, setup):
    model, _, table, prompts = setup
    items, log_probs = _search(nb, setup, N_ITEMS)
    scores = item_log_probs(model, prompts, table)
    want_items = scores.argsort(dim=1, descending=True) + 1
    expect_equal(items, want_items, f"with beam_size = n_items ({N_ITEMS}) nothing is pruned: every item, ranked by "
                 "its log-probability", hint="each level keeps the best beam_size candidates over ALL beams and "
                 "tokens together (topk over the flattened (beams * vocab) scores)")
    expect_close(log_probs, scores.sort(dim=1, descending=True).values, "their log-probabilities", atol=1e-4)


def test_beam_size_one_is_greedy_decoding(nb, setup):
    model, trie, table, prompts = setup
    sequence, node = prompts, torch.zeros(len(prompts), dtype=torch.long)
    with torch.no_grad():
        for _ in range(trie.depth):
            log_p = torch.log_softmax(model(sequence)[:, -1].float(), dim=-1)
            token = log_p.masked_fill(trie.children[node] < 0, -math.inf).argmax(dim=-1)
            node = trie.children[node, token]
            sequence = torch.cat([sequence, token[:, None]], dim=1)
    items, _ = _search(nb, setup, 1)
    expect_equal(items[:, 0], trie.item[node], "beam_size 1 returns the greedy decoding (the best allowed token at "
                 "each level)", hint="with one beam, each level keeps the single best allowed continuation")


def test_excluded_items_are_never_returned(nb, setup):
    model, _, table, prompts = setup
    exclude = torch.zeros(4, N_ITEMS + 1, dtype=torch.bool)
    exclude[0, [1, 5, 9]] = True
    exclude[3, [13, 7, 3, 11, 12, 14]] = True
    exclude[:, 0] = True
    items, log_probs = _search(nb, setup, N_ITEMS, exclude=exclude)
    scores = item_log_probs(model, prompts, table).masked_fill(exclude[:, 1:], -math.inf)
    for u in range(4):
        allowed = int((~exclude[u, 1:]).sum())
        got = items[u, :allowed]
        expect(not bool(exclude[u, got].any()), f"user {u} never gets an excluded (seen) item", got=got.tolist(),
               hint="trie.available(exclude) says which nodes still have an allowed item below them; pass it to "
                    "trie.allowed(nodes, available) so the search never enters a subtree of seen items")
        expect_equal(got, scores[u].argsort(descending=True)[:allowed] + 1,
                     f"user {u}: all {allowed} allowed items, ranked by log-probability",
                     hint="exclusion happens inside the search, so the best B unseen items come back, not B items "
                          "minus the seen ones")
        expect_equal(items[u, allowed:], torch.zeros(N_ITEMS - allowed, dtype=torch.long),
                     f"user {u}: item 0 after the {allowed} allowed items")
        expect(bool(torch.isinf(log_probs[u, allowed:]).all()), f"user {u}: log-probability -inf after the allowed "
               "items", got=log_probs[u].tolist())


def test_more_beams_than_items(nb, setup):
    items, log_probs = _search(nb, setup, N_ITEMS + 3)
    expect_shape(items, (4, N_ITEMS + 3), "items with beam_size = n_items + 3")
    expect_equal(items[:, N_ITEMS:], torch.zeros(4, 3, dtype=torch.long), "the 3 beams beyond the catalog are item 0",
                 hint="a candidate with score -inf is a dead beam: its node becomes -1 and it returns item 0")
    expect(bool(torch.isinf(log_probs[:, N_ITEMS:]).all() and (log_probs[:, N_ITEMS:] < 0).all()),
           "... with log-probability -inf")
    expect(bool(((items[:, :N_ITEMS] >= 1)).all()), "the first n_items beams are the real items")


def test_dead_beams_end_as_item_0(nb, setup):
    # Three allowed items per user and four beams: the fourth beam dies (score -inf) somewhere in the trie,
    # possibly on a token that IS a child of its node but whose subtree is all excluded.
    allowed = [[4, 8, 13], [3, 10, 13], [2, 10, 14], [1, 3, 11]]
    exclude = torch.ones(4, N_ITEMS + 1, dtype=torch.bool)
    for u, items in enumerate(allowed):
        exclude[u, items] = False
    items, log_probs = _search(nb, setup, 4, exclude=exclude)
    for u, expected in enumerate(allowed):
        expect_equal(items[u].sort().values, torch.tensor([0] + expected), f"user {u}: the 3 allowed items, then "
                     "item 0 for the beam that found no allowed item",
                     hint="a candidate with score -inf is dead whatever its token: set its node to -1 "
                          "(torch.where(torch.isfinite(scores), child, -1)) so it can never become a real item")
        expect(bool(torch.isinf(log_probs[u, 3])), f"user {u}: the dead beam has log-probability -inf",
               got=log_probs[u].tolist())


def test_batched_over_users(nb, setup, reference):
    batched, batched_lp = _search(nb, setup, 3)
    for u, history in enumerate(HISTORIES):
        alone, alone_lp = _search(nb, setup, 3, prompts=left_padded_prompts(reference, [history]))
        expect_equal(batched[u:u + 1], alone, f"user {u}'s items in a batch of 4 vs searched alone",
                     hint="every operation is per user: reorder the cache with row = user * beams + parent")
        expect_close(batched_lp[u:u + 1], alone_lp, f"user {u}'s log-probabilities in a batch vs alone", atol=1e-4)


class Spy(torch.nn.Module):
    """The reference decoder, recording the tokens of each call."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = []

    def forward(self, tokens, cache=None):
        self.calls.append((tokens.detach().clone(), cache is not None))
        return self.model(tokens, cache)


def test_one_call_per_level_with_the_cache(nb, setup):
    model, trie, table, prompts = setup
    spy = Spy(model).eval()
    nb.constrained_beam_search(spy, prompts, trie, 3)
    calls = spy.calls
    expect(len(calls) == trie.depth, f"the model is called once per token of an ID ({trie.depth} times)",
           got=f"{len(calls)} calls", hint="one call over the prompts, then one call per level with the new "
                                            "tokens only, continuing a KVCache")
    expect(torch.equal(calls[0][0], prompts) and calls[0][1], "the first call reads the prompts into a KVCache",
           hint="cache = KVCache(); logits = model(prompts, cache)")
    low = 2
    for level, ((tokens, with_cache), size) in enumerate(zip(calls[1:], SIZES)):
        expect(with_cache and tokens.shape == (len(prompts) * 3, 1), f"call {level + 2} feeds one token per beam "
               f"({len(prompts)} users x 3 beams) with the cache", got=tuple(tokens.shape))
        expect(bool(((tokens >= low) & (tokens < low + size)).all()), f"every token fed at level {level} is a code of "
               f"level {level} (tokens {low}..{low + size - 1}): the search never leaves the trie",
               got=tokens.flatten().tolist(), hint="mask with trie.allowed before topk")
        low += size


def test_does_not_modify_inputs(nb, setup):
    model, trie, _, prompts = setup
    exclude = torch.zeros(4, N_ITEMS + 1, dtype=torch.bool)
    exclude[:, [0, 2]] = True
    call_leaving_inputs_unchanged(nb.constrained_beam_search, model, prompts, trie, 3, exclude=exclude,
                                  what="constrained_beam_search")
