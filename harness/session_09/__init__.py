"""Session 09 — offline metrics: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=9,
    slug="offline_metrics",
    title="Offline metrics: DCG/NDCG@K with graded relevance, AP@K, reciprocal rank, hit rate, AUC, batched",
    exercises=(
        Exercise(
            "ranked_labels",
            summary="each user's labels in ranked order: stable descending sort of the scores, padding last as 0",
            hint="real = real_candidates(scores, mask); order = scores.masked_fill(~real, -math.inf).argsort(dim=1, "
                 "descending=True, stable=True) (masked_fill, not masked_fill_: the caller's scores stay as they "
                 "were); labels.to(scores.device, torch.float32).masked_fill(~real, 0.0).gather(1, order)."),
        Exercise(
            "dcg_at_k",
            summary="DCG@K: gain(rel_i) / log2(i + 1) summed over positions i = 1..k, gain 2^rel - 1 or rel",
            hint="top = ranked_labels(scores, labels, mask)[:, :k]; gains = 2.0 ** top - 1 (or top for "
                 "gain='linear'); positions = torch.arange(1, top.shape[1] + 1); return (gains / "
                 "torch.log2(positions + 1.0)).sum(1). Positions start at 1 and the first discount is "
                 "log2(2) = 1; torch.log is the natural log."),
        Exercise(
            "ndcg_at_k",
            summary="NDCG@K = DCG@K / IDCG@K, the ideal DCG of all the user's relevant candidates, cut at k",
            hint="dcg = dcg_at_k(scores, labels, k, mask, gain); ideal = dcg_at_k(labels.float(), labels, k, mask, "
                 "gain) (the labels ranked by themselves: every relevant candidate, not only the retrieved top k, "
                 "and the ideal is cut at k too); torch.where(ideal > 0, dcg / ideal.clamp_min(1e-12), 0)."),
        Exercise(
            "average_precision_at_k",
            summary="AP@K: precision@i at each relevant position i <= k, summed, over min(k, number relevant)",
            hint="rel = ranked_labels(...) > 0 (binary: grades do not matter); n = rel.sum(1) over the whole row; "
                 "top = rel[:, :k].float(); precision = top.cumsum(1) / arange(1, K + 1); return (precision * "
                 "top).sum(1) / n.clamp(min=1, max=k). Not / n (a perfect top k of 30 relevant would score 1/3), "
                 "not / the hits in the top k (one hit at position 1 would score 1)."),
        Exercise(
            "reciprocal_rank",
            summary="1 / position of the first relevant candidate (within k when given); 0 when there is none",
            hint="rel = ranked_labels(...) > 0, cut to [:, :k] when k is given; first = rel.float().argmax(1) "
                 "(argmax of an all-False row is 0: check rel.any(1)); torch.where(rel.any(1), 1 / (first + 1), 0). "
                 "The first relevant item, not the highest grade: argmax over the flags, not over the labels."),
        Exercise(
            "hit_rate_at_k",
            summary="1.0 if any relevant candidate is in the top k, else 0.0",
            hint="(ranked_labels(scores, labels, mask)[:, :k] > 0).any(dim=1).float(): any, not sum (two hits are "
                 "still one hit), and as float32."),
        Exercise(
            "auc",
            summary="per-user AUC: share of (relevant, non-relevant) pairs with the relevant one scored higher, "
                    "ties one half",
            hint="pos = (labels > 0) & real; neg = real & ~pos; sorted_neg = scores.masked_fill(~neg, inf).sort(1)"
                 ".values; below = torch.searchsorted(sorted_neg, scores) (negatives strictly below); ties = "
                 "searchsorted(..., right=True) - below; wins = where(pos, below + 0.5 * ties, 0).sum(1); divide by "
                 "pos.sum(1) * neg.sum(1), clamped to >= 1 so that a user with no pair gets 0."),
        Exercise(
            "global_auc",
            summary="AUC over the pooled pairs of every user's real candidates, as a Python float",
            hint="real = real_candidates(scores, mask); return float(auc(scores[real][None], labels[real][None])[0]). "
                 "Not the mean of the per-user AUCs: pooling compares a positive of one user with a negative of "
                 "another, so it also measures whether scores are comparable across users."),
    ),
)
