"""Session 12 — semantic IDs: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=12,
    slug="semantic_ids",
    title="Semantic IDs: residual k-means, reconstruction error, codebook use, collisions, per-level embeddings",
    exercises=(
        Exercise(
            "residual_kmeans",
            summary="L levels of k-means, level l on the residuals of levels < l: codes (N, L) and L codebooks",
            hint="residual = vectors.float().clone(); for level in range(levels): centroids, c = kmeans(residual, "
                 "codebook_size, seed=seed + level, niter=niter); residual = residual - centroids[c] (not in place "
                 "on the caller's tensor); keep c and centroids. Return torch.stack(codes, dim=1) (int64, (N, L)) "
                 "and the list of centroids. Level 2 clusters what level 1 missed, never the vectors again."),
        Exercise(
            "reconstruction_errors",
            summary="mean over items of the squared distance between x and the sum of its first l centroids, per l",
            hint="reconstruction = zeros_like(x); for l, C in enumerate(codebooks): reconstruction += C[codes[:, l]]; "
                 "errors.append(((x - reconstruction) ** 2).sum(dim=1).mean()). Cumulative over the levels, summed "
                 "over the dimensions (not a mean over them), squared (not the norm). Return float32 (L,)."),
        Exercise(
            "codebook_utilization",
            summary="per level: distinct codes used / K, and perplexity exp(-sum p log p) of the code distribution",
            hint="for each level l separately: counts = torch.bincount(codes[:, l], minlength=K_l); p = counts / "
                 "counts.sum(); entropy = -(p[p > 0] * p[p > 0].log()).sum() (0 log 0 = 0: drop the zeros, or NaN "
                 "appears); perplexity = entropy.exp() (natural log with exp). used = (counts > 0).sum() / K_l."),
        Exercise(
            "disambiguate",
            summary="append a column: for rows sharing all L codes, 0, 1, 2, ... in row order; 0 for unique rows",
            hint="_, group = torch.unique(codes, dim=0, return_inverse=True); order = torch.sort(group, "
                 "stable=True).indices; the index of a row is its position in `order` minus the position where its "
                 "group starts (torch.cumsum(counts) - counts). Or loop with a dict tuple -> count seen so far. "
                 "Start at 0, count per group (not globally), and cat the column on the right: (N, L + 1)."),
        Exercise(
            "SemanticIDEmbedding",
            summary="a buffer of codes per item, one nn.Embedding per level (rows shifted by one), summed or "
                    "concatenated + projected: a (B, d) DLRM feature vector",
            hint="register_buffer('codes', codes.long().clone()); tables = nn.ModuleList(nn.Embedding(K + 1, dim, "
                 "padding_idx=0) for K in codebook_sizes), uniform(+-1/sqrt(K + 1)) then row 0 zeroed; proj = "
                 "nn.Linear(C * dim, dim, bias=False) for 'concat'. forward: rows = (self.codes[batch['item']] + 1) "
                 "* (batch['item'] != 0)[:, None]; sum the tables[l](rows[:, l]), or proj(torch.cat(...)). Look the "
                 "codes up by the raw item id batch['item'], not by the item_id feature code."),
    ),
)
