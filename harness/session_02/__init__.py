"""Session 02 — the data pipeline: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=2,
    slug="data_pipeline",
    title="Data pipeline: Dataset, padding and masks, negative sampling",
    exercises=(
        Exercise(
            "NextItemDataset",
            summary="one training example per (user, position): the history before it and the next item",
            hint="In __init__, build two flat arrays with NumPy, the user and the position t of every example "
                 "(np.repeat over users, then positions min_history..len-1), so __getitem__ is O(1). The history "
                 "is seq[max(0, t - max_len):t]: it stops before t (t is the target) and keeps the most recent "
                 "items. Store only arrays and tensors: no lambdas, generators or open files, so it pickles for "
                 "DataLoader workers."),
        Exercise(
            "collate_sequences",
            summary="pad variable-length histories into a (B, L) batch with lengths and a boolean mask",
            hint="L = max length (at least 1). Start from torch.zeros(B, L, dtype=torch.long) and a False mask; "
                 "for left padding write history b into the last len_b columns, for right padding into the first "
                 "len_b. The mask is True where there is a real item. Keep each history's order; stack targets "
                 "and user ids into (B,) long tensors."),
        Exercise(
            "popularity_distribution",
            summary="sampling probabilities proportional to count ** alpha, padding excluded",
            hint="p = counts.double() ** alpha, then p[0] = 0 and p / p.sum(). alpha = 0 is uniform over the "
                 "catalog, alpha = 1 is proportional to popularity, 0.75 is word2vec's compromise."),
        Exercise(
            "sample_negatives",
            summary="negatives drawn from a distribution, never one of the user's positives, reproducibly",
            hint="Draw with torch.multinomial(probs, B * n, replacement=True, generator=generator), find clashes "
                 "with (samples[:, :, None] == positives[:, None, :]).any(-1), redraw only those, and repeat. "
                 "Pass the generator to every random call so the global RNG is untouched. Check first that each "
                 "user has probability mass left outside their positives, else raise ValueError."),
    ),
)
