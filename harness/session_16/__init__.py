"""Session 16 — the generative capstone: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=16,
    slug="generative",
    title="Generative retrieval: semantic-ID sequences, a causal decoder with a KV cache, trie-constrained beam search",
    exercises=(
        Exercise(
            "item_token_table",
            summary="each item's semantic ID as tokens of one vocabulary: codes + per-column offsets, row 0 all PAD",
            hint="offsets = level_offsets(codebook_sizes) (2, 2 + s0, 2 + s0 + s1, ...): tokens 0 and 1 are PAD and "
                 "BOS, so level 0's code 0 is token 2. table = codes + offsets (broadcast over rows), then "
                 "table[0] = PAD. Check first: one size per column, and every code of rows 1.. in [0, size)."),
        Exercise(
            "history_tokens",
            summary="left-padded token sequences: PAD ... BOS, then the C tokens of each of the last max_items items",
            hint="width = 1 + max_items * C; for each history keep history[-max_items:] (the most recent items), "
                 "row = cat([BOS], table[items].reshape(-1)) (item after item: an item's C tokens stay together), "
                 "and write it at the right end of a row of PAD: out[b, width - len(row):] = row."),
        Exercise(
            "next_token_examples",
            summary="training windows from the train items only, inputs = tokens[:, :-1], targets = tokens[:, 1:]",
            hint="dataset.sequences(upto='valid') holds the train items (the valid and test items stay unseen). "
                 "Cut each into windows of max_items + 1 items from the end backwards: range(len(s), 0, -(max_items "
                 "+ 1)). tokens = history_tokens(windows, table, max_items + 1); inputs = tokens[:, :-1]; targets = "
                 "tokens[:, 1:].clone() with IGNORE where inputs == PAD (nothing to predict from padding)."),
        Exercise(
            "causal_attention",
            summary="masked multi-head attention by hand, queries being the last Tq of Tk positions (a KV cache)",
            hint="query i sits at position p = Tk - Tq + i: allowed = ((j <= p) & key_mask[:, None, None, :]) | "
                 "(j == p), shape (B, 1, Tq, Tk). scores = q @ k.transpose(-2, -1) / sqrt(D); masked_fill(~allowed, "
                 "-inf); softmax over the last (key) dimension; dropout if dropout_p > 0; @ v. A plain tril(Tq, Tk) "
                 "is only right when Tq == Tk."),
        Exercise(
            "DecoderBlock",
            summary="session 03's block over new positions continuing a cache: RoPE at the given positions, past k/v "
                    "concatenated, causal_attention",
            hint="q, k, v from self.qkv(self.norm1(x)) as in session 03; apply_rope(q, positions) and (k, positions): "
                 "the NEW rows only (past keys were rotated when they were new); then k = cat([past_k, k], dim=2), "
                 "same for v; causal_attention(q, k, v, key_mask, dropout_p if training); out, residual, SwiGLU, "
                 "residual. Return (x, (k, v)) with all Tk positions."),
        Exercise(
            "GenerativeDecoder",
            summary="token embedding, DecoderBlocks with positions continuing the cache, final RMSNorm, tied head",
            hint="start = cache.length (0 without a cache); key_mask = cat([cache.key_mask, tokens != PAD]); "
                 "positions = arange(start, start + T); x = dropout(token_embedding(tokens)); each block gets "
                 "cache.layers[i] as past when start > 0; store the returned (k, v) and key_mask in the cache; "
                 "logits = norm(x) @ token_embedding.weight.T (tied: no separate head)."),
        Exercise(
            "build_trie",
            summary="prefix trie of the valid token tuples as a transition table children[node, token] (-1 = none)",
            hint="Level by level: the pairs (node, token) of all items, made unique (torch.unique(..., dim=0, "
                 "return_inverse=True)), become the new nodes; children[parent, token] = new id; each item moves "
                 "to its new node. One node per distinct prefix, so shared prefixes share a node. Leaves: item[leaf] "
                 "= item id. Two items on one leaf collide: raise ValueError."),
        Exercise(
            "constrained_beam_search",
            summary="beam search over the ID's tokens, logits masked to the trie's children, log-probs summed, top-B "
                    "distinct items per user, batched",
            hint="One forward over the prompts with a KVCache; log_softmax of the last position. Start with ONE beam "
                 "per user (the root, score 0), not B copies. Each level: mask = trie.allowed(nodes, available); "
                 "candidates = scores[..., None] + log_p.masked_fill(~mask, -inf), flattened to (U, b * V); topk; "
                 "parent = idx // V, token = idx % V; nodes = trie.children[parent's node, token]; reorder the cache "
                 "rows (u * b + parent) and feed the tokens. Sum log-probabilities, never probabilities."),
    ),
)
