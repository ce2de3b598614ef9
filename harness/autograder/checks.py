"""Assertions that fail like a tutor: what was checked, expected vs got, and a hint.

    expect_shape(scores, (4, 10), "scores returned by `recommend_popular`")
    expect_close(loss, reference, "in-batch softmax loss", hint="softmax over items, dim=1")
    expect(not leaked, "no seen item is recommended", got=f"user 3 got item 50", hint="...")

Values are summarised (shape, dtype, a few numbers), never dumped whole.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


class ExerciseFailure(AssertionError):
    """A check on the learner's code failed; the message is meant to be read as is."""

    def __init__(self, what: str, *, expected: Any = None, got: Any = None, hint: str | None = None,
                 has_expected: bool = False, has_got: bool = False):
        self.what = what
        self.expected = expected
        self.got = got
        self.hint = hint
        lines = [what]
        if has_expected or expected is not None:
            lines.append(f"  expected: {describe(expected) if not isinstance(expected, str) else expected}")
        if has_got or got is not None:
            lines.append(f"  got:      {describe(got) if not isinstance(got, str) else got}")
        if hint:
            lines.append(f"  hint:     {hint}")
        super().__init__("\n".join(lines))


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "shape") and hasattr(x, "dtype")


def describe(x: Any, max_items: int = 6) -> str:
    """A short, readable summary of a value: shape, dtype and its first few entries."""
    if _is_tensor(x):
        flat = x.detach().reshape(-1)[:max_items].cpu().tolist()
        more = ", ..." if x.numel() > max_items else ""
        return f"tensor(shape={tuple(x.shape)}, dtype={str(x.dtype).replace('torch.', '')}, device={x.device.type}, [{_fmt_list(flat)}{more}])"
    if isinstance(x, np.ndarray):
        flat = x.reshape(-1)[:max_items].tolist()
        more = ", ..." if x.size > max_items else ""
        return f"array(shape={x.shape}, dtype={x.dtype}, [{_fmt_list(flat)}{more}])"
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, (list, tuple)) and len(x) > max_items:
        head = ", ".join(describe(v) for v in x[:max_items])
        return f"{type(x).__name__} of {len(x)}: [{head}, ...]"
    if isinstance(x, dict):
        items = list(x.items())
        body = ", ".join(f"{k!r}: {describe(v)}" for k, v in items[:max_items])
        return "{" + body + (", ...}" if len(items) > max_items else "}")
    text = repr(x)
    return text if len(text) <= 200 else text[:197] + "..."


def _fmt_list(values: list) -> str:
    return ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values)


def fail(what: str, *, expected: Any = None, got: Any = None, hint: str | None = None) -> None:
    raise ExerciseFailure(what, expected=expected, got=got, hint=hint)


def expect(condition: bool, what: str, *, expected: Any = None, got: Any = None, hint: str | None = None) -> None:
    """Fail with a tutor message unless ``condition`` holds."""
    if not condition:
        raise ExerciseFailure(what, expected=expected, got=got, hint=hint)


def expect_type(value: Any, types: type | tuple[type, ...], what: str, hint: str | None = None) -> None:
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ExerciseFailure(f"{what} has the wrong type", expected=names, got=type(value).__name__, hint=hint)


def expect_shape(value: Any, shape: tuple, what: str, hint: str | None = None) -> None:
    """Shape check; ``None`` in ``shape`` matches any size on that axis."""
    got = tuple(getattr(value, "shape", ()))
    ok = len(got) == len(shape) and all(w is None or w == g for w, g in zip(shape, got))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ExerciseFailure(f"{what} has the wrong shape", expected=want, got=str(got), hint=hint)


def expect_dtype(value: Any, dtype: Any, what: str, hint: str | None = None) -> None:
    dtypes = dtype if isinstance(dtype, (tuple, list)) else (dtype,)
    if getattr(value, "dtype", None) not in dtypes:
        want = " or ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ExerciseFailure(f"{what} has the wrong dtype", expected=want,
                              got=str(getattr(value, "dtype", type(value).__name__)).replace("torch.", ""), hint=hint)


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().double().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def expect_close(got: Any, expected: Any, what: str, *, rtol: float = 1e-5, atol: float = 1e-6,
                 hint: str | None = None) -> None:
    """Values agree within ``atol + rtol * |expected|``; reports the worst entry, not the whole array."""
    g, e = _to_numpy(got), _to_numpy(expected)
    if g.shape != e.shape:
        raise ExerciseFailure(f"{what} has the wrong shape", expected=str(e.shape), got=str(g.shape), hint=hint)
    if g.size == 0:
        return
    g64, e64 = g.astype(np.float64), e.astype(np.float64)
    if np.isnan(g64).any() and not np.isnan(e64).any():
        where = tuple(int(i) for i in np.argwhere(np.isnan(g64))[0])
        raise ExerciseFailure(f"{what} contains NaN (first at index {where})", got=describe(got),
                              hint=hint or "look for log(0), 0/0 or exp overflow; use log-sum-exp forms")
    err = np.abs(g64 - e64)
    tol = atol + rtol * np.abs(e64)
    bad = ~(err <= tol) & ~(np.isnan(g64) & np.isnan(e64))
    if bad.any() and g.ndim == 0:
        raise ExerciseFailure(f"{what} is off by {float(err):.3g}", expected=f"{float(e64):.6g}",
                              got=f"{float(g64):.6g}", hint=hint)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(np.where(bad, err - tol, -np.inf))), err.shape)
        at = f" at index {tuple(int(i) for i in idx)}" if g.ndim else ""
        rel = err[idx] / max(abs(e64[idx]), 1e-12)
        raise ExerciseFailure(
            f"{what} is off{at} ({int(bad.sum())} of {bad.size} entries outside tolerance; "
            f"abs error {err[idx]:.3g}, relative {rel:.3g})",
            expected=f"{e64[idx]:.6g}" + (f"   (all: {describe(expected)})" if g.ndim else ""),
            got=f"{g64[idx]:.6g}" + (f"   (all: {describe(got)})" if g.ndim else ""),
            hint=hint)


def expect_equal(got: Any, expected: Any, what: str, hint: str | None = None) -> None:
    """Exact equality for ints, bools, strings and integer arrays."""
    if _is_tensor(got) or _is_tensor(expected) or isinstance(got, np.ndarray) or isinstance(expected, np.ndarray):
        g, e = _to_numpy(got), _to_numpy(expected)
        if g.shape != e.shape:
            raise ExerciseFailure(f"{what} has the wrong shape", expected=str(e.shape), got=str(g.shape), hint=hint)
        if not np.array_equal(g, e):
            idx = tuple(int(i) for i in np.argwhere(g != e)[0])
            n_bad = int((g != e).sum())
            if g.ndim == 0:
                raise ExerciseFailure(what, expected=repr(e.item()), got=repr(g.item()), hint=hint)
            if g.size <= 40:  # small enough to show whole
                raise ExerciseFailure(f"{what} differs at index {idx} ({n_bad} of {g.size} entries)",
                                      expected=str(e.tolist()), got=str(g.tolist()), hint=hint)
            if g.ndim == 2 and g.shape[1] <= 20:  # show the first wrong row
                row = idx[0]
                raise ExerciseFailure(f"{what} differs in row {row} ({n_bad} of {g.size} entries differ)",
                                      expected=str(e[row].tolist()), got=str(g[row].tolist()), hint=hint)
            raise ExerciseFailure(f"{what} differs at index {idx} ({n_bad} of {g.size} entries)",
                                  expected=f"{e[idx].item()!r}   (all: {describe(expected)})",
                                  got=f"{g[idx].item()!r}   (all: {describe(got)})", hint=hint)
        return
    if isinstance(expected, float) or isinstance(got, float):
        if not (isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)):
            raise ExerciseFailure(what, expected=expected, got=got, hint=hint, has_expected=True, has_got=True)
        return
    if got != expected:
        raise ExerciseFailure(what, expected=repr(expected), got=repr(got), hint=hint)


def call_leaving_inputs_unchanged(fn, *args: Any, what: str, hint: str | None = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, failing if it wrote into any tensor argument the caller passed.

    A function that edits its input in place (``counts[0] = 0``, ``x += 1`` on a ``.to()`` that
    returned the very same tensor) corrupts data the caller still uses, far from the bug.
    """
    def tensors(values):
        return [(name, v) for name, v in values if _is_tensor(v)]

    given = tensors([(f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items()))
    before = [(name, v, v.detach().clone()) for name, v in given]
    out = fn(*args, **kwargs)
    for name, v, copy in before:
        now = v.detach()
        same = now.shape == copy.shape and bool(((now == copy) | (now.isnan() & copy.isnan())).all()
                                                if now.is_floating_point() else (now == copy).all())
        if not same:
            raise ExerciseFailure(f"{what} changed its input ({name}) in place", expected=describe(copy),
                                  got=describe(v), hint=hint or "work on a copy (x.clone()) or with out-of-place "
                                  "operations; beware that x.to(dtype) and x.double() return x itself when it "
                                  "already has that dtype, and indexing like x[1:] is a view")
    return out
