"""The bad-input corpus of ``POST /recommend``: what clients really send, and the 4xx each must get.

    for case in bad_requests(bundle, limits):
        r = client.post("/recommend", content=case.body, headers={"content-type": case.content_type})
        assert r.status_code in case.expected

Every case is a request a correct server answers with a 4xx and a message (never a 500, never a
200): wrong types, values out of range, padding and unknown ids, typos, both ways of asking at
once, malformed or oversized payloads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    expected: tuple[int, ...] = (422,)
    content_type: str = "application/json"


def _json(value) -> bytes:
    return json.dumps(value).encode()


def bad_requests(bundle, limits) -> list[Case]:
    """The corpus for one bundle (its catalog size, a known user) and the server's limits."""
    known = next(u for u in range(1, bundle.n_users + 1) if bundle.knows_user(u))
    n_items, n_users = bundle.n_items, bundle.n_users
    item = int(bundle.popular[0])
    too_big = {"history": [item] * (limits.max_body_bytes // 3 + 10)}
    return [
        Case("k = 0", _json({"user_id": known, "k": 0})),
        Case("k above max_k", _json({"user_id": known, "k": limits.max_k + 1})),
        Case("k negative", _json({"user_id": known, "k": -5})),
        Case("k as a string", _json({"user_id": known, "k": "10"})),
        Case("k as a float", _json({"user_id": known, "k": 10.5})),
        Case("k as a boolean", _json({"user_id": known, "k": True})),
        Case("k as NaN", f'{{"user_id": {known}, "k": NaN}}'.encode()),
        Case("user_id as a string", _json({"user_id": str(known)})),
        Case("user_id = 0 (padding)", _json({"user_id": 0})),
        Case("user_id negative", _json({"user_id": -1})),
        Case("user_id as a float", _json({"user_id": known + 0.5})),
        Case("unknown user id", _json({"user_id": n_users + 1000}), (404,)),
        Case("huge user id (2**70)", _json({"user_id": 2 ** 70}), (404, 422)),
        Case("history with padding id 0", _json({"history": [item, 0, item]})),
        Case("history with a negative id", _json({"history": [-3]})),
        Case("history with an unknown item", _json({"history": [item, n_items + 1]})),
        Case("history with a huge id (2**63)", _json({"history": [2 ** 63]})),
        Case("history with a huge id (2**70)", _json({"history": [item, 2 ** 70]})),
        Case("history as a string", _json({"history": "1,2,3"})),
        Case("history of strings", _json({"history": [str(item)]})),
        Case("history of floats", _json({"history": [item + 0.5]})),
        Case("history with null", _json({"history": [item, None]})),
        Case("history of objects", _json({"history": [{"item_id": item}]})),
        Case("history over max_history", _json({"history": [item] * (limits.max_history + 1)})),
        Case("both user_id and history", _json({"user_id": known, "history": [item]})),
        Case("unknown field (typo)", _json({"userid": known, "k": 5})),
        Case("body is a list", _json([known, 10])),
        Case("body is a number", _json(42)),
        Case("body is a string", _json("user 1")),
        Case("body is null", b"null"),
        Case("empty body", b""),
        Case("malformed JSON", b'{"user_id": 1,'),
        Case("not JSON", b"user_id=1&k=10"),
        Case("invalid UTF-8", b'{"user_id": "\xff\xfe"}', (400, 422)),
        Case("deeply nested arrays", b"[" * 3000 + b"]" * 3000, (400, 413, 422)),
        Case("JSON sent as text/plain", _json({"user_id": known}), (415, 422), "text/plain"),
        Case("payload over the size limit", _json(too_big), (413,)),
    ]


__all__ = ["Case", "bad_requests"]
