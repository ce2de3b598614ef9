"""Exercise 1: interaction_stats."""
import pandas as pd
import pytest

from harness.autograder.checks import expect, expect_close, expect_equal

pytestmark = pytest.mark.exercise("interaction_stats")

KEYS = ("n_users", "n_items", "n_interactions", "density",
        "mean_per_user", "median_per_user", "mean_per_item", "median_per_item")


def _log():
    # user 1 is very active (5 rows, one repeated item), users 7 and 9 have one row each;
    # ids are not contiguous, so "max id" and "distinct ids" differ.
    return pd.DataFrame({
        "user_id": [1, 1, 1, 1, 1, 7, 9],
        "item_id": [10, 11, 12, 10, 40, 10, 11],
        "rating": [5, 4, 3, 5, 2, 1, 4],
        "timestamp": range(7),
    })


def _stats(nb, frame):
    out = nb.interaction_stats(frame)
    expect(isinstance(out, dict), "interaction_stats returns a dict", got=type(out).__name__)
    missing = [k for k in KEYS if k not in out]
    expect(not missing, "interaction_stats returns every key of the table", expected=", ".join(KEYS),
           got=f"missing {', '.join(missing)}")
    return out


def test_counts_distinct_users_and_items(nb):
    out = _stats(nb, _log())
    expect_equal(out["n_users"], 3, "n_users counts distinct users (1, 7, 9)",
                 hint="count distinct ids with `nunique()`, not rows (`len`) and not the largest id")
    expect_equal(out["n_items"], 4, "n_items counts distinct items (10, 11, 12, 40)",
                 hint="count distinct ids with `nunique()`, not rows (`len`) and not the largest id")
    expect_equal(out["n_interactions"], 7, "n_interactions counts rows, repeats included")


def test_density_is_share_of_the_user_item_matrix(nb):
    out = _stats(nb, _log())
    expect_close(out["density"], 7 / (3 * 4), "density = n_interactions / (n_users * n_items)",
                 hint="divide by the product of the distinct counts, not their sum or the largest ids")


def test_activity_mean_and_median(nb):
    out = _stats(nb, _log())
    # rows per user: 5, 1, 1; rows per item: 10 -> 3, 11 -> 2, 12 -> 1, 40 -> 1
    expect_close(out["mean_per_user"], 7 / 3, "mean interactions per user")
    expect_close(out["median_per_user"], 1.0, "median interactions per user (of 5, 1, 1)",
                 hint="median and mean differ on skewed data: that difference is the point of the statistic")
    expect_close(out["mean_per_item"], 7 / 4, "mean interactions per item")
    expect_close(out["median_per_item"], 1.5, "median interactions per item (of 3, 2, 1, 1)",
                 hint="group by item_id for the per-item statistics")


def test_movielens_100k_figures(nb):
    from harness.data import load_dataset

    out = _stats(nb, load_dataset("ml-100k").interactions)
    expect_equal((out["n_users"], out["n_items"], out["n_interactions"]), (943, 1682, 100_000),
                 "MovieLens-100K has 943 users, 1,682 items and 100,000 ratings")
    expect_close(out["density"], 100_000 / (943 * 1682), "MovieLens-100K density", rtol=1e-9)
