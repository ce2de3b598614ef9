"""Session 03 — the two-tower model: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=3,
    slug="two_tower",
    title="Two-tower model: item tower, mean-pool and Transformer user towers, scoring",
    exercises=(
        Exercise(
            "ItemTower",
            summary="item id embedding (padding_idx=0) + category embedding -> residual MLP -> L2-normalised",
            hint="encode: e = item_embedding(ids); h = e + mlp(cat([e, category_embedding(item_categories[ids])], -1)); "
                 "multiply by (ids != 0) so padding encodes to zeros. forward = F.normalize(encode(ids), dim=-1). "
                 "Register layers as attributes (nn.Embedding, nn.Sequential) so .parameters() and .to() see them."),
        Exercise(
            "MeanPoolUserTower",
            summary="masked mean of the history's item encodings at every position (prefix means), then MLP, normalised",
            hint="e = item_tower.encode(history); m = mask[..., None].float(); prefix means are "
                 "(e * m).cumsum(1) / m.cumsum(1).clamp_min(1). Never divide by L: padding is not an item. "
                 "Then p + mlp(p), F.normalize(..., dim=-1). forward() is encode(...)[:, -1] (left padding)."),
        Exercise(
            "RMSNorm",
            summary="x / sqrt(mean(x^2) + eps) * weight over the last dimension",
            hint="Compute in float32: x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps), then "
                 "cast back to x.dtype and multiply by self.weight (an nn.Parameter of ones, shape (dim,))."),
        Exercise(
            "apply_rope",
            summary="rotary position embedding: rotate feature pairs by position-dependent angles",
            hint="theta_i = base ** (-2i / d) for i < d/2; angle = positions[:, None] * theta[None, :]. With "
                 "x1 = x[..., 0::2], x2 = x[..., 1::2]: out pairs are (x1 cos - x2 sin, x1 sin + x2 cos), "
                 "interleaved back with torch.stack(..., -1).flatten(-2)."),
        Exercise(
            "TransformerBlock",
            summary="pre-norm block: x + attention(RMSNorm(x)) with RoPE, then x + SwiGLU(RMSNorm(x))",
            hint="q, k, v = qkv(norm1(x)) split into heads (B, H, L, Dh); rotate q and k with apply_rope; "
                 "F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask) (True = may attend); merge heads, "
                 "out-projection, dropout, residual. SwiGLU: w_down(silu(w_gate(h)) * w_up(h))."),
        Exercise(
            "TransformerUserTower",
            summary="causal Transformer over the history: a user embedding at every position",
            hint="Build attn = causal (j <= i) AND key is real (mask[:, None, None, :]); let every query attend to "
                 "itself as well, so fully padded rows have no all-False row (NaN). Run the blocks, final RMSNorm, "
                 "F.normalize. forward() is encode(...)[:, -1]."),
        Exercise(
            "score_all_items",
            summary="cosine scores of each user against the whole catalog, padding column at -inf",
            hint="users = model.user_tower(history, mask) (B, d); items = model.item_tower(torch.arange(n_items + 1)) "
                 "(N + 1, d); scores = users @ items.T; set column 0 to -inf. Both sides are normalised, so this "
                 "is cosine similarity."),
    ),
)
