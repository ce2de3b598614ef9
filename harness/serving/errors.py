"""The 4xx errors of the service: raised by the endpoint logic, turned into JSON by the app.

A request the service cannot answer because of what the *client* sent is a 4xx with a message
that says what to fix; a 500 means a bug in the service. The endpoint logic raises one of these,
and the exception handlers of :mod:`harness.serving.app` write the response:

=================  ======  ===========================================================
exception          status  body
=================  ======  ===========================================================
``UnknownUser``    404     ``{"detail": "user 99999 is unknown: ..."}``
``UnknownItems``   422     FastAPI's validation-error shape, one entry per unknown id:
                           ``{"detail": [{"loc": ["body", "history", 3], "msg": ..., "type": "unknown_item", "input": 99999}]}``
``PayloadTooLarge`` 413    ``{"detail": "request body of 20,480 bytes is over the limit of 16,384 bytes"}``
``NotReady``       503     ``{"detail": "the model bundle is not loaded (yet)"}``
=================  ======  ===========================================================

``UnknownItems`` uses the same shape as FastAPI's own 422 (a list of ``loc``/``msg``/``type``),
so a client handles "wrong type" and "no such item" the same way.
"""
from __future__ import annotations

from typing import Iterable, Sequence


class ServingError(Exception):
    """A request the service refuses; ``status_code`` and ``detail`` become the response."""

    status_code = 400

    def __init__(self, detail):
        super().__init__(detail if isinstance(detail, str) else str(detail))
        self.detail = detail


class UnknownUser(ServingError):
    """404: a ``user_id`` the bundle has no history for."""

    status_code = 404

    def __init__(self, user_id: int, n_users: int | None = None):
        known = f" (known users are 1..{n_users})" if n_users else ""
        super().__init__(f"user {user_id} is unknown{known}: send their history instead, "
                         '{"history": [item ids, most recent last]}')
        self.user_id = user_id


class UnknownItems(ServingError):
    """422: item ids outside the catalog, one entry per offending position of ``history``."""

    status_code = 422

    def __init__(self, positions: Sequence[int], ids: Sequence[int], n_items: int | None = None,
                 field: str = "history"):
        positions, ids = list(positions), list(ids)
        catalog = f"the catalog's item ids are 1..{n_items}" if n_items else "not in the catalog"
        detail = [{"loc": ["body", field, int(p)], "msg": f"item {int(i)} is unknown: {catalog}",
                   "type": "unknown_item", "input": int(i)} for p, i in zip(positions, ids)]
        super().__init__(detail)
        self.positions, self.ids = positions, ids

    def __str__(self) -> str:
        shown = ", ".join(str(i) for i in self.ids[:5]) + (", ..." if len(self.ids) > 5 else "")
        return f"unknown item id(s) {shown} in the history"


class PayloadTooLarge(ServingError):
    """413: a request body over the size limit (checked before it is parsed)."""

    status_code = 413

    def __init__(self, size: int | None, limit: int):
        what = f"request body of {size:,} bytes" if size is not None else "request body"
        super().__init__(f"{what} is over the limit of {limit:,} bytes: send at most the last few hundred items "
                         "of the history")


class NotReady(ServingError):
    """503: the bundle is not loaded (start-up has not finished, or it failed)."""

    status_code = 503

    def __init__(self, why: str = "the model bundle is not loaded (yet)"):
        super().__init__(why)


def unknown_positions(ids: Iterable[int], n_items: int) -> tuple[list[int], list[int]]:
    """(positions, ids) of the entries of ``ids`` outside 1..n_items."""
    positions, bad = [], []
    for p, i in enumerate(ids):
        if not 1 <= i <= n_items:
            positions.append(p)
            bad.append(i)
    return positions, bad


__all__ = ["NotReady", "PayloadTooLarge", "ServingError", "UnknownItems", "UnknownUser", "unknown_positions"]
