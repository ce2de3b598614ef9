"""Session 10 — full pipeline evaluation: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=10,
    slug="pipeline_eval",
    title="Full pipeline evaluation: retrieve then rank, per-user metrics, percentile bootstrap, paired differences",
    exercises=(
        Exercise(
            "retrieve_then_rank",
            summary="the retriever's top-K unseen items (session 06), scored by the ranker, sorted stably, cut to k",
            hint="candidates = upstream(6).search_excluding_seen(index, queries, seen, K) (K, not k: the ranker must "
                 "see every candidate); scores = rank_fn(users, candidates).float() in ONE call; scores = "
                 "scores.masked_fill(candidates == 0, -math.inf) (padding last); order = torch.argsort(scores, dim=1, "
                 "descending=True, stable=True)[:, :k]; return candidates.gather(1, order), candidates."),
        Exercise(
            "per_user_metrics",
            summary="per-user HR@k and NDCG@k of ranked lists, via session 09's hit_rate_at_k and ndcg_at_k",
            hint="scores = (L - torch.arange(L)).float().expand(B, L) (decreasing: the list's own order); labels = "
                 "ranked == targets[:, None]; mask = ranked != 0; for each k: out[f'HR@{k}'] = "
                 "upstream(9).hit_rate_at_k(scores, labels, k, mask), out[f'NDCG@{k}'] = upstream(9).ndcg_at_k(scores, "
                 "labels, k, mask). Keep them per user: (B,) float32, no mean."),
        Exercise(
            "bootstrap_ci",
            summary="mean and percentile bootstrap interval over users: R resamples with replacement, seeded, float64",
            hint="v = values.double(); idx = torch.randint(0, U, (R, U), generator=torch.Generator().manual_seed(seed)); "
                 "means = v[idx].mean(dim=1); low, high = torch.quantile(means, torch.tensor([(1 - c) / 2, (1 + c) / 2], "
                 "dtype=torch.float64)); return float(v.mean()), float(low), float(high). For c = 0.95 the quantiles "
                 "are 0.025 and 0.975, not 0.05 and 0.95."),
        Exercise(
            "paired_bootstrap",
            summary="one set of resampled users for every system: intervals of the means and of the differences",
            hint="values = torch.stack([per_user[n].double() for n in names]) (S, U); idx as in bootstrap_ci (drawn "
                 "ONCE); means = values[:, idx].mean(dim=2) (S, R); deltas = means - means[baseline row]; "
                 "torch.quantile(means, q, dim=1) and torch.quantile(deltas, q, dim=1). Resampling each system on "
                 "its own (unpaired) puts the users' shared variation back into the difference."),
    ),
)
