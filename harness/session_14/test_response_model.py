"""Exercise 2: response_model (a ranked list: ids >= 1, finite scores best first, no duplicates, the fallback flag)."""
import copy
import json

import pytest
from pydantic import BaseModel, ValidationError

from harness.autograder.checks import expect, expect_equal

pytestmark = pytest.mark.exercise("response_model")

GOOD = {"user_id": 7, "fallback": False, "strategy": "retrieve-rank", "bundle_id": "abc123",
        "items": [{"item_id": 5, "title": "Toy Story (1995)", "score": 2.5, "cold": False},
                  {"item_id": 9, "title": "Heat (1995)", "score": 2.5, "cold": True},
                  {"item_id": 2, "title": "GoldenEye (1995)", "score": -1.0, "cold": False}]}


def _model(nb):
    model = nb.response_model()
    expect(isinstance(model, type) and issubclass(model, BaseModel), "response_model returns a pydantic model class",
           got=repr(model)[:120], hint="define the classes inside the function and return RecommendResponse")
    return model


def _rejects(model, body: dict, why: str, hint: str):
    try:
        model.model_validate(body)
    except ValidationError:
        return
    expect(False, f"a response where {why} is rejected", got="accepted", hint=hint)


def _variant(**changes):
    body = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if key.startswith("item"):
            index, field = key[4], key[6:]
            body["items"][int(index)][field] = value
        else:
            body[key] = value
    return body


def test_fields_and_names(nb):
    model = _model(nb)
    expect_equal(model.__name__, "RecommendResponse", "the class's name (it names the schema in /docs)")
    expect_equal(set(model.model_fields), {"user_id", "items", "fallback", "strategy", "bundle_id"},
                 "the response's fields", hint="exactly the fields of the table: response_body fills them")
    schema = model.model_json_schema()
    items = schema.get("$defs", {}).get("RecommendedItem", {})
    expect(set(items.get("properties", {})) == {"item_id", "title", "score", "cold"},
           "the schema has a RecommendedItem with item_id, title, score and cold",
           got=sorted(schema.get("$defs", {})), hint="class RecommendedItem(BaseModel): item_id, title, score, cold")
    expect(set(items.get("required", [])) == {"item_id", "title", "score", "cold"},
           "every field of an item is required", got=items.get("required"))


def test_accepts_a_ranked_list(nb):
    model = _model(nb)
    for body in (GOOD, {**GOOD, "items": []}, {**GOOD, "user_id": None, "fallback": True, "strategy": "popularity"}):
        try:
            parsed = model.model_validate(body)
        except ValidationError as err:
            expect(False, "a valid response is accepted (equal scores are fine; an empty list too)",
                   got=str(err)[:300])
        expect_equal(json.loads(parsed.model_dump_json()), body, "the response round-trips to the same JSON")


def test_rejects_bad_items(nb):
    model = _model(nb)
    _rejects(model, _variant(item1_item_id=0), "an item id is 0 (padding)", "item_id: int = Field(ge=1)")
    _rejects(model, _variant(item2_score=float("-inf")), "a score is -inf (a padding candidate)",
             "score: float = Field(allow_inf_nan=False): -inf and NaN are not valid JSON")
    _rejects(model, _variant(item0_score=float("nan")), "a score is NaN", "score: float = Field(allow_inf_nan=False)")
    _rejects(model, _variant(item0_title=None), "a title is missing", "title: str")
    body = _variant()
    del body["items"][1]["cold"]
    _rejects(model, body, "an item has no `cold` flag", "cold: bool (no default)")


def test_rejects_what_is_not_a_ranked_list(nb):
    model = _model(nb)
    _rejects(model, _variant(item2_item_id=5), "item 5 appears twice",
             "a @model_validator(mode='after') on RecommendResponse: len(set(ids)) == len(ids)")
    _rejects(model, _variant(item2_score=3.0), "the scores go up again (2.5, 2.5, 3.0)",
             "scores must never increase down the list: a.score >= b.score for consecutive items")
    _rejects(model, {**GOOD, "fallback": True}, "fallback is true but the strategy is retrieve-rank",
             "fallback must be true exactly when strategy == 'popularity'")
    _rejects(model, {**GOOD, "strategy": "popularity"}, "the strategy is popularity but fallback is false",
             "fallback must be true exactly when strategy == 'popularity'")
    _rejects(model, {**GOOD, "strategy": "random"}, "the strategy is not one of the two",
             "strategy: Literal['retrieve-rank', 'popularity']")
    body = dict(GOOD)
    del body["bundle_id"]
    _rejects(model, body, "bundle_id is missing", "bundle_id: str (no default)")
