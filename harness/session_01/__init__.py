"""Session 01 — orientation and the system map: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=1,
    slug="orientation",
    title="Orientation and the system map",
    exercises=(
        Exercise(
            "interaction_stats",
            summary="users, items, interactions, density and per-user / per-item activity of an interaction log",
            hint="Count distinct ids with `Series.nunique()`, not rows. Density is interactions divided by the "
                 "size of the user x item matrix, n_users * n_items. Per-user activity is "
                 "`df.groupby('user_id').size()`; take its mean and median."),
        Exercise(
            "item_popularity",
            summary="interaction count per item id as a tensor indexed by item id",
            hint="`torch.bincount(item_ids, minlength=n_items + 1)` gives one slot per id, including ids nobody "
                 "touched; then zero slot 0, because padding is not an item."),
        Exercise(
            "long_tail_share",
            summary="share of all interactions that go to the most popular items",
            hint="Drop slot 0 (padding), sort the counts in descending order, keep the first "
                 "ceil(head_fraction * n_items) and divide their sum by the total. Return a Python float."),
        Exercise(
            "recommend_popular",
            summary="top-k most popular items per user, never an item the user has seen",
            hint="Expand the counts to (B, n_items + 1) floats, set seen items and column 0 to -inf with "
                 "`masked_fill`, then `torch.sort(scores, dim=1, descending=True, stable=True)` so equal counts "
                 "keep id order, and keep the first k columns. Check first that every user has k unseen items."),
    ),
)
