"""Session 07 — DLRM: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=7,
    slug="dlrm",
    title="DLRM: embedding tables and bags, bottom MLP, dot interaction, top MLP and a logit",
    exercises=(
        Exercise(
            "EmbeddingTables",
            summary="one embedding table per categorical feature (padding_idx=0); bags pooled by a masked mean",
            hint="self.tables = nn.ModuleDict(); tables[f.name] = nn.Embedding(f.cardinality, dim, padding_idx=0) for "
                 "spec.sparse and nn.EmbeddingBag(f.cardinality, dim, mode='mean', padding_idx=0) for spec.bags. "
                 "Initialise uniform(-1/sqrt(n), 1/sqrt(n)) under torch.no_grad(), then weight[0].zero_() again. "
                 "forward: torch.stack([self.tables[name](batch[name]) for name in self.names], dim=1): look each "
                 "feature up by name, in spec order. A hand-made bag mean divides by the number of non-zero entries "
                 "(clamped to 1), never by L."),
        Exercise(
            "BottomMLP",
            summary="standardise the dense features with the training mean/std (buffers), then Linear+ReLU layers to d",
            hint="self.register_buffer('dense_mean', dense_mean.float().clone()) (and dense_std): buffers are saved and "
                 "moved with the model but never trained. mlp = nn.Sequential(Linear(D, h1), ReLU(), ..., "
                 "Linear(hk, dim), ReLU()). forward: self.mlp((dense - self.dense_mean) / self.dense_std), not in "
                 "place, and never with the batch's own mean/std."),
        Exercise(
            "DotInteraction",
            summary="dot products of all distinct pairs of feature vectors, strict lower triangle, indices as buffers",
            hint="In __init__: rows, cols = torch.tril_indices(F, F, offset=-1); self.register_buffer('rows', rows) "
                 "(and cols). forward: Z = torch.bmm(T, T.transpose(1, 2)) (B, F, F); return Z[:, self.rows, "
                 "self.cols]. offset=-1 drops the diagonal (self-interaction); the lower triangle alone keeps each "
                 "pair once, in tril_indices' order. Create no tensor in forward."),
        Exercise(
            "DLRM",
            summary="the whole DLRM: [z; embeddings; extra] -> dot interaction -> top MLP on [z; pairs] -> logit (B,)",
            hint="__init__: embeddings = EmbeddingTables(spec, dim); bottom_mlp = BottomMLP(*spec.dense_stats(), "
                 "bottom, dim); extra = nn.ModuleDict(extra or {}); interaction = DotInteraction(len(feature_names)); "
                 "top_mlp = Linear+ReLU layers from dim + F(F-1)/2, and a last Linear(.., 1) with no activation. "
                 "feature_vectors: torch.cat([z[:, None], embeddings(batch), *(m(batch)[:, None] for m in "
                 "extra.values())], 1). forward: top_mlp(torch.cat([T[:, 0], interaction(T)], 1)).squeeze(-1); "
                 "no sigmoid (the loss applies it)."),
    ),
)
