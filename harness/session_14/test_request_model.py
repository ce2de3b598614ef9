"""Exercise 1: request_model (the pydantic request body, its strictness and the limits in its schema)."""
import pytest
from pydantic import BaseModel, ValidationError

from harness.autograder.checks import expect, expect_equal
from harness.serving.app import ServingLimits

pytestmark = pytest.mark.exercise("request_model")

LIMITS = ServingLimits(max_k=25, max_history=6, max_body_bytes=4096)


def _model(nb, limits=LIMITS):
    model = nb.request_model(limits)
    expect(isinstance(model, type) and issubclass(model, BaseModel), "request_model returns a pydantic model class",
           got=repr(model)[:120], hint="define `class RecommendRequest(BaseModel): ...` inside the function and "
                                       "return the class itself, not an instance")
    return model


def _rejects(model, text: str, why: str, hint: str | None = None):
    try:
        model.model_validate_json(text)
    except ValidationError:
        return
    expect(False, f"the body {text} is rejected ({why})", got="accepted", hint=hint)


def test_is_a_model_named_recommend_request(nb):
    model = _model(nb)
    expect_equal(model.__name__, "RecommendRequest", "the class's name (it names the schema in /docs)")
    expect_equal(set(model.model_fields), {"user_id", "history", "k"}, "the request's fields",
                 hint="exactly user_id, history and k")


def test_valid_bodies(nb):
    model = _model(nb)
    r = model.model_validate_json('{"user_id": 3, "k": 5}')
    expect((r.user_id, r.history, r.k) == (3, None, 5), "a user request", got=(r.user_id, r.history, r.k))
    r = model.model_validate_json('{"history": [4, 9, 4]}')
    expect((r.user_id, r.history, r.k) == (None, [4, 9, 4], 10), "a history request, k defaults to 10",
           got=(r.user_id, r.history, r.k), hint="k: int = Field(10, ...); keep repeated items and their order")
    for text in ("{}", '{"history": []}', '{"user_id": null, "k": 3}', '{"history": null}'):
        try:
            model.model_validate_json(text)
        except ValidationError as err:
            expect(False, f"{text} is a valid request (a cold visitor)", got=str(err)[:200],
                   hint="user_id and history are both optional (default None)")
    r = model.model_validate_json('{"k": 25, "history": [1, 2, 3, 4, 5, 6]}')
    expect(r.k == 25 and len(r.history) == 6, "k = max_k and a history of exactly max_history items are allowed")


def test_strict_types(nb):
    model = _model(nb)
    hint = "model_config = ConfigDict(extra='forbid', strict=True): lax mode turns '7' into 7 and true into 1"
    _rejects(model, '{"k": "10"}', "k is a string", hint)
    _rejects(model, '{"k": true}', "k is a boolean", hint)
    _rejects(model, '{"k": 10.5}', "k is not an integer", hint)
    _rejects(model, '{"user_id": "3"}', "user_id is a string", hint)
    _rejects(model, '{"history": ["4"]}', "a history id is a string", hint)
    _rejects(model, '{"history": [4.0]}', "a history id is a float", hint)
    _rejects(model, '{"history": "4,9"}', "history is not a list", hint)


def test_ranges(nb):
    model = _model(nb)
    _rejects(model, '{"k": 0}', "k must be at least 1", "k: int = Field(10, ge=1, le=limits.max_k)")
    _rejects(model, '{"k": 26}', "k must be at most limits.max_k = 25", "k: int = Field(10, ge=1, le=limits.max_k)")
    _rejects(model, '{"user_id": 0}', "user ids start at 1", "user_id: int | None = Field(None, ge=1)")
    _rejects(model, '{"user_id": -4}', "user ids start at 1", "user_id: int | None = Field(None, ge=1)")
    _rejects(model, '{"history": [3, 0, 5]}', "0 is padding, never an item",
             "history: list[Annotated[int, Field(ge=1)]] | None = ...: the constraint applies to each id")
    _rejects(model, '{"history": [-2]}', "item ids start at 1", "each id: Annotated[int, Field(ge=1)]")
    _rejects(model, '{"history": [1, 2, 3, 4, 5, 6, 7]}', "at most limits.max_history = 6 items",
             "history: ... = Field(None, max_length=limits.max_history)")


def test_limits_come_from_the_argument(nb):
    small = _model(nb, ServingLimits(max_k=3, max_history=2, max_body_bytes=1024))
    _rejects(small, '{"k": 4}', "with max_k = 3, k = 4 is too large", "use limits.max_k, not a constant")
    _rejects(small, '{"history": [1, 2, 3]}', "with max_history = 2, three items are too many",
             "use limits.max_history, not a constant")
    large = _model(nb, ServingLimits(max_k=500, max_history=1000, max_body_bytes=1024))
    try:
        large.model_validate_json('{"k": 400}')
    except ValidationError as err:
        expect(False, "with max_k = 500, k = 400 is allowed", got=str(err)[:200], hint="use limits.max_k")


def test_no_extra_fields_and_not_both(nb):
    model = _model(nb)
    _rejects(model, '{"userid": 3}', "a misspelt field must not be silently ignored",
             "model_config = ConfigDict(extra='forbid', ...)")
    _rejects(model, '{"user_id": 3, "history": [1, 2]}', "give either user_id or history, not both",
             "a @model_validator(mode='after') that raises ValueError when user_id is set and history is not None")
    _rejects(model, '{"user_id": 3, "history": []}', "user_id with a history field (even an empty one) is ambiguous",
             "test `self.history is not None`, not the truthiness of the list")


def test_schema_shows_the_limits(nb):
    schema = _model(nb).model_json_schema()
    props = schema.get("properties", {})

    def branch(field, key):
        spec = props.get(field, {})
        for option in [spec, *spec.get("anyOf", [])]:
            if key in option:
                return option
        return {}

    k = props.get("k", {})
    expect(k.get("maximum") == 25 and k.get("minimum") == 1, "the schema of k says 1 <= k <= max_k",
           got={key: k.get(key) for key in ("minimum", "maximum")},
           hint="constraints in Field(...) go into the OpenAPI schema (/docs, schemathesis); a check written in a "
                "validator does not")
    expect(k.get("default") == 10, "the schema of k shows its default 10", got=k.get("default"))
    hist = branch("history", "maxItems")
    expect(hist.get("maxItems") == 6, "the schema of history says at most max_history items", got=props.get("history"),
           hint="Field(None, max_length=limits.max_history)")
    expect(hist.get("items", {}).get("minimum") == 1, "the schema of each history id says >= 1", got=hist.get("items"),
           hint="list[Annotated[int, Field(ge=1)]]")
    expect(branch("user_id", "minimum").get("minimum") == 1, "the schema of user_id says >= 1",
           got=props.get("user_id"), hint="Field(None, ge=1)")
    expect(schema.get("additionalProperties") is False, "the schema forbids extra fields",
           got=schema.get("additionalProperties"), hint="ConfigDict(extra='forbid')")
