"""Session 08 — ranking losses and training: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=8,
    slug="ranking_losses",
    title="Ranking losses and training: stable BCE and BPR, hard negatives from the retriever, mixed sampling, "
          "the ranker's loss in session 05's loop",
    exercises=(
        Exercise(
            "bce_with_logits",
            summary="binary cross-entropy on logits, max(x, 0) - x y + log1p(exp(-|x|)), mean/sum/none",
            hint="y = labels.to(logits.dtype); loss = logits.clamp_min(0) - logits * y + "
                 "torch.log1p(torch.exp(-logits.abs())); then loss.mean(), loss.sum() or loss. Never "
                 "log(sigmoid(x)) or log(1 - sigmoid(x)): sigmoid(100) is exactly 1.0 in float32, and "
                 "exp(-x) without the abs overflows at x = -100. log1p keeps the tiny loss of a confident, "
                 "right logit (log(1 + 1e-13) rounds to 0)."),
        Exercise(
            "bpr_loss",
            summary="pairwise BPR, -logsigmoid(pos - neg) per pair of the same row, (B,) or (B, N) negatives",
            hint="diff = pos_scores[:, None] - neg_scores for (B, N) negatives (pos_scores - neg_scores for (B,)); "
                 "loss = -F.logsigmoid(diff) (stable; -torch.log(torch.sigmoid(diff)) is -inf at -104); reduce "
                 "with mean over ALL pairs, sum, or none. pos_scores - neg_scores with (B, N) negatives lines "
                 "pos up with the columns, and pos[:, None] - neg[None, :] compares every row with every row."),
        Exercise(
            "mine_hard_negatives",
            summary="n distinct negatives drawn uniformly from each row's retrieved candidates, positives removed",
            hint="pool = candidates[:, skip_top:]; forbidden = cat([zeros(B, 1), exclude], 1).sort(1).values; "
                 "where = searchsorted(forbidden, pool).clamp_max(width - 1); eligible = forbidden.gather(1, where) "
                 "!= pool. keys = torch.rand(pool.shape, generator=generator); keys = where(eligible, keys, -1); "
                 "top, order = keys.topk(min(n, K'), 1); picked = where(top >= 0, pool.gather(1, order), 0); "
                 "pad with zero columns up to n. Never edit candidates or exclude in place."),
        Exercise(
            "mixed_negatives",
            summary="uniform / popularity / hard negatives by largest-remainder counts; hard shortfall refilled uniformly",
            hint="w = shares per SOURCES, normalised; exact = n * w; counts = floor(exact); give the n - sum "
                 "leftovers to the largest exact - counts (ties in SOURCES order). Uniform: "
                 "upstream(2).sample_negatives(popularity_distribution(ones, 0.0), exclude, n_u, generator); "
                 "popularity: sample_negatives(probs, exclude, n_p, generator); hard: mine_hard_negatives(candidates, "
                 "exclude, n_h, generator=generator, skip_top=skip_top), zeros replaced by uniform draws. cat the "
                 "blocks in SOURCES order and build source codes 0/1/2 (0 where a hard slot was refilled)."),
        Exercise(
            "ranking_loss",
            summary="one forward, scores.view(B, G) with the positive in column 0, BCE on all entries or BPR per group",
            hint="G = int(batch['group_size']); scores = model(batch).view(-1, G) (groups are consecutive rows: "
                 "view(G, -1) mixes them). bce: labels = zeros_like(scores), labels[:, 0] = 1, "
                 "bce_with_logits(scores, labels). bpr: bpr_loss(scores[:, 0], scores[:, 1:]). No sigmoid: both "
                 "losses take logits. Raise ValueError for another loss name."),
    ),
)
