"""Exercise 1: format_item_text."""

import numpy as np
import pandas as pd
import pytest

from harness.autograder.checks import expect, expect_equal

from .conftest import SpyTokenizer

pytestmark = pytest.mark.exercise("format_item_text")

TOY_STORY = {"item_id": 1, "title": "Toy Story", "year": 1995, "genres": "Animation|Children's|Comedy",
             "category": "Animation", "text": "Toy Story (1995). Genres: Animation, Children's, Comedy."}
TABLET = {"item_id": 1, "title": "Tundra Lightweight Tablet T4108", "category": "Tablets", "store": "Tundra",
          "price": 70.01, "features": np.array(["LED indicator"], dtype=object),
          "description": "A lightweight tablet by Tundra."}
TEMPLATE = "prefix + '. '.join([title (year), 'Genres: a, b' or 'Category: c', description]) + '.'"
WORDS = ("the quick brown fox jumps over a lazy dog while seven tall wizards quietly juggle "
         "forty amber lanterns beneath an old stone bridge ").split()


def _long_description(n_words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words)) + "."


def test_movielens_item(nb):
    expect_equal(nb.format_item_text(TOY_STORY), "passage: Toy Story (1995). Genres: Animation, Children's, Comedy.",
                 "the passage of a MovieLens item", hint=TEMPLATE + "; genres split on '|' and joined by ', '")


def test_amazon_item(nb):
    expect_equal(nb.format_item_text(TABLET),
                 "passage: Tundra Lightweight Tablet T4108. Category: Tablets. A lightweight tablet by Tundra.",
                 "the passage of an item with a category and a description (no genres)",
                 hint=TEMPLATE + "; the description's own full stop is not doubled")


def test_prefix(nb):
    for prefix in ("passage: ", "query: ", ""):
        text = nb.format_item_text(TOY_STORY, prefix=prefix)
        expect_equal(text, prefix + "Toy Story (1995). Genres: Animation, Children's, Comedy.",
                     f"the passage with prefix={prefix!r}",
                     hint="prepend the prefix exactly once, as given: e5 was trained on 'passage: ...' inputs")


def test_genres_win_over_category_and_lists_work(nb):
    item = {"title": "Casablanca", "year": 1942.0, "genres": ["Drama", "Romance", "War"], "category": "Drama"}
    expect_equal(nb.format_item_text(item), "passage: Casablanca (1942). Genres: Drama, Romance, War.",
                 "genres given as a list, a float year, and a category that is not repeated",
                 hint="'Genres: ...' when there are genres, else 'Category: ...'; the year as an int")


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA, "", "   "], ids=["None", "nan", "pd.NA", "empty", "blank"])
def test_missing_fields_are_left_out(nb, missing):
    item = {"title": "Heat", "year": missing, "genres": missing, "category": missing, "description": missing}
    text = nb.format_item_text(item)
    expect_equal(text, "passage: Heat.", f"an item whose other fields are {missing!r}",
                 hint="skip a field that is None, NaN, pd.NA or blank, with its label: never 'nan', 'None', "
                      "'<NA>', '()' or 'Genres: .'")
    item = {"title": missing, "year": 1995, "genres": "Drama", "description": "Two friends."}
    expect(all(bad not in nb.format_item_text(item) for bad in ("nan", "None", "<NA>")),
           "a missing title is left out too", got=nb.format_item_text(item))


def test_whitespace_collapsed_and_empty_item(nb):
    item = {"title": "  The   Matrix \n", "genres": " Sci-Fi ", "description": "  Neo  wakes\tup.  "}
    expect_equal(nb.format_item_text(item), "passage: The Matrix. Genres: Sci-Fi. Neo wakes up.",
                 "fields with runs of spaces, tabs and newlines", hint="' '.join(str(value).split()) per field")
    expect_equal(nb.format_item_text({}), "passage:", "an item without any field: the prefix alone, stripped")


def test_item_not_modified(nb):
    item = dict(TABLET)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in item.items()}
    nb.format_item_text(item)
    expect(set(item) == set(before) and all(
        (np.array_equal(item[k], before[k]) if isinstance(before[k], np.ndarray) else item[k] == before[k])
        for k in before), "format_item_text leaves the item's dict as it was")


def test_short_passage_is_not_cut(nb, minilm):
    tokenizer, _ = minilm
    expect_equal(nb.format_item_text(TABLET, tokenizer=tokenizer, max_tokens=128), nb.format_item_text(TABLET),
                 "a passage within the budget is returned whole")


def test_budget_cuts_the_description_by_words(nb, minilm):
    tokenizer, _ = minilm
    item = {"title": "Orion Fast-charging Keyboard O4719", "category": "Keyboards",
            "description": _long_description(300)}
    head = "passage: Orion Fast-charging Keyboard O4719. Category: Keyboards."
    for budget in (40, 64, 100):
        text = nb.format_item_text(item, tokenizer=tokenizer, max_tokens=budget)
        n = len(tokenizer(text)["input_ids"])
        expect(n <= budget, f"with max_tokens={budget}, the passage fits: len(tokenizer(text)['input_ids']) <= {budget}",
               got=f"{n} tokens", hint="count what the encoder sees, special tokens included ([CLS] ... [SEP])")
        expect(text.startswith(head[:-1] + ". "), f"with max_tokens={budget}, the title and category are kept whole "
               "and the description follows", got=text[:90], hint="cut the description, never the head")
        kept = text[len(head) + 1:].rstrip(".").split()
        words = item["description"].rstrip(".").split()
        expect(kept == words[:len(kept)] and len(kept) > 0, f"with max_tokens={budget}, what remains of the "
               "description is its first words, whole", got=" ".join(kept[-5:]),
               hint="keep words[:n] for the largest n that fits; never drop words from the start or cut inside one")
        longer = nb.format_item_text({**item, "description": " ".join(words[:len(kept) + 1])})
        expect(len(tokenizer(longer)["input_ids"]) > budget, f"with max_tokens={budget}, as many words as fit are kept "
               "(one more word would not fit)", got=f"{len(kept)} words, {n} of {budget} tokens",
               hint="the longest prefix of the description's words that fits: compare with <= max_tokens")


def test_head_longer_than_the_budget(nb, minilm):
    tokenizer, _ = minilm
    item = {"title": "A Very Long Title " * 20, "genres": "Drama", "description": "Never shown."}
    text = nb.format_item_text(item, tokenizer=tokenizer, max_tokens=16)
    expect_equal(text, nb.format_item_text({k: v for k, v in item.items() if k != "description"}),
                 "when even the passage without a description is over budget, it is returned without one",
                 hint="the title and genres are never cut here: the encoder's truncation does that")


def test_binary_search_not_one_word_at_a_time(nb, minilm):
    tokenizer, _ = minilm
    spy = SpyTokenizer(tokenizer)
    item = {"title": "Helio Charger", "category": "Chargers", "description": _long_description(1500)}
    text = nb.format_item_text(item, tokenizer=spy, max_tokens=64)
    expect(len(tokenizer(text)["input_ids"]) <= 64, "the passage fits the budget")
    expect(len(spy.calls) <= 40, "a 1,500-word description is cut with a handful of tokenizer calls",
           got=f"{len(spy.calls)} calls",
           hint="binary search over the number of words kept (about log2(1500) = 11 calls); dropping one word at a "
                "time costs one call per word, hours over an Amazon catalog")
