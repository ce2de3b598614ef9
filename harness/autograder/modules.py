"""``nn.Module`` exercises graded numerically: the learner's module runs with the reference's weights.

Shape, masking and causality tests cannot see a module that computes another function than
the notebook specifies (another activation, another split of a fused projection into heads, a
missing residual). So each notebook fixes the names and shapes of its modules' parameters, and
the test:

1. builds the learner's module and the reference under the same arguments,
2. gives the reference non-trivial weights (:func:`perturb`: no gain is 1, no bias is 0),
3. copies the reference ``state_dict`` into the learner's (:func:`share_weights`; a parameter
   that is missing, unexpected or misshapen is named, with what to rename),
4. compares outputs, and gradients where training depends on them (:func:`expect_same_function`).

    learner, reference = nb.TransformerBlock(16, 2, dropout=0.0), ref.TransformerBlock(16, 2, dropout=0.0)
    share_weights(learner, reference, "TransformerBlock")
    expect_same_function(learner, reference, (x, mask), "TransformerBlock output")
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .checks import ExerciseFailure, describe, expect_close

RENAME_HINT = ("the notebook fixes the name and shape of every parameter, so that the autograder can run your module "
               "with the reference's weights; keep your computation, rename the attribute")


def perturb(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every floating parameter random values of its own scale, in place; returns ``module``.

    1-D weights (norm gains) become ``1 + 0.3 z``, biases ``0.2 z``, larger tensors keep their
    standard deviation (or ``1/sqrt(fan_in)`` when constant). Padding rows of ``nn.Embedding`` /
    ``nn.EmbeddingBag`` tables stay zero: that is part of what the notebooks specify.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if not param.is_floating_point():
                continue
            z = torch.randn(param.shape, generator=generator, dtype=torch.float64)
            leaf = name.rsplit(".", 1)[-1]
            if param.ndim <= 1 and "bias" in leaf:
                value = 0.2 * z
            elif param.ndim <= 1:
                value = 1.0 + 0.3 * z
            else:
                std = float(param.detach().double().std()) if param.numel() > 1 else 0.0
                if not math.isfinite(std) or std == 0.0:
                    std = 1.0 / math.sqrt(max(param.shape[-1], 1))
                value = std * z
            param.copy_(value.to(param.dtype))
        for sub in module.modules():
            padding_idx = getattr(sub, "padding_idx", None)
            if isinstance(sub, (nn.Embedding, nn.EmbeddingBag)) and padding_idx is not None:
                sub.weight[padding_idx].zero_()
    return module


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ("," if t.ndim == 1 else "") + ")"


def _rename_suggestions(missing: dict, unexpected: dict) -> list[str]:
    """Pairs (missing, unexpected) of the same shape, suggested as renames (the module path that differs)."""
    out, taken = [], set()
    for want, w_shape in missing.items():
        for have, h_shape in unexpected.items():
            if have in taken or h_shape != w_shape:
                continue
            w_parts, h_parts = want.split("."), have.split(".")
            if w_parts[-1] != h_parts[-1]:
                continue
            # the first dotted component that differs is what to rename
            i = next((i for i, (a, b) in enumerate(zip(w_parts, h_parts)) if a != b), None)
            if i is None or len(w_parts) != len(h_parts):
                out.append(f"rename `{'.'.join(h_parts[:-1])}` to `{'.'.join(w_parts[:-1])}`")
            else:
                out.append(f"rename `{'.'.join(h_parts[:i + 1])}` to `{'.'.join(w_parts[:i + 1])}`")
            taken.add(have)
            break
    return list(dict.fromkeys(out))


def share_weights(learner: nn.Module, reference: nn.Module, what: str, *, seed: int = 0,
                  randomize: bool = True) -> nn.Module:
    """Load the reference's (perturbed) ``state_dict`` into ``learner``; returns ``learner``.

    Fails with a tutor message listing every parameter or buffer that is missing, unexpected or of
    another shape than the notebook specifies, with the renames that would fix it.
    """
    if not isinstance(learner, nn.Module):
        raise ExerciseFailure(f"{what} is not an nn.Module", expected="a subclass of torch.nn.Module",
                              got=type(learner).__name__, hint="class X(nn.Module): ... with super().__init__() first")
    if randomize:
        perturb(reference, seed)
    want = {k: v for k, v in reference.state_dict().items()}
    have = learner.state_dict()
    missing = {k: _shape(v) for k, v in want.items() if k not in have}
    unexpected = {k: _shape(v) for k, v in have.items() if k not in want}
    misshapen = {k: (_shape(have[k]), _shape(v)) for k, v in want.items() if k in have and have[k].shape != v.shape}
    if missing or unexpected or misshapen:
        lines = [f"{what}: the parameters of your module are not the ones the notebook specifies"]
        for k, s in missing.items():
            lines.append(f"  missing:    `{k}` of shape {s}")
        for k, s in unexpected.items():
            lines.append(f"  unexpected: `{k}` of shape {s}")
        for k, (h, w) in misshapen.items():
            lines.append(f"  wrong shape: `{k}` is {h}, the notebook specifies {w}")
        renames = _rename_suggestions(missing, unexpected)
        hint = "; ".join(renames) + " — " + RENAME_HINT if renames else RENAME_HINT
        if misshapen and not missing and not unexpected:
            hint = ("check the order of the dimensions (nn.Linear(in, out) stores weight as (out, in)) and the sizes "
                    "the notebook gives; " + RENAME_HINT.split(", so")[0])
        lines.append(f"  hint:     {hint}")
        raise ExerciseFailure("\n".join(lines))
    try:
        learner.load_state_dict(want, strict=True)
    except RuntimeError as err:  # dtype or a custom _load_from_state_dict
        raise ExerciseFailure(f"{what}: the reference weights could not be loaded into your module",
                              got=str(err)[:300], hint=RENAME_HINT) from None
    return learner


Outputs = Any  # a tensor, or a tuple / dict of tensors


def _flatten(out: Outputs, label: str) -> list[tuple[str, torch.Tensor]]:
    if torch.is_tensor(out):
        return [(label, out)]
    if isinstance(out, dict):
        return [pair for k, v in out.items() for pair in _flatten(v, f"{label}[{k!r}]")]
    if isinstance(out, (tuple, list)):
        return [pair for i, v in enumerate(out) for pair in _flatten(v, f"{label}[{i}]")]
    return []


def expect_same_function(learner: nn.Module, reference: nn.Module, inputs: Sequence[Any], what: str, *,
                         call: Callable[..., Outputs] | None = None, where: torch.Tensor | None = None,
                         grads: bool = True, rtol: float = 1e-4, atol: float = 1e-5, seed: int = 1,
                         hint: str | None = None) -> Outputs:
    """Same outputs (and parameter gradients) from the learner's module and the reference, same weights.

    Args:
        inputs: positional arguments of ``call``; tensors are cloned per module, so an in-place
            edit by one side cannot change what the other sees.
        call: ``call(module, *inputs) -> outputs``; default ``module(*inputs)``.
        where: optional bool mask broadcastable to the first output's leading dimensions: compare
            only there (for instance real positions, when padded ones are unspecified).
        grads: also backpropagate the same random projection of the outputs through both and
            compare the gradient of every parameter, by name.

    Returns the learner's outputs.
    """
    call = call or (lambda module, *args: module(*args))

    def run(module: nn.Module):
        args = [a.clone() if torch.is_tensor(a) else a for a in inputs]
        module.zero_grad(set_to_none=True)
        return call(module, *args)

    got, expected = run(learner), run(reference)
    got_parts, want_parts = _flatten(got, "output"), _flatten(expected, "output")
    if len(got_parts) != len(want_parts):
        raise ExerciseFailure(f"{what} returns another structure than the notebook specifies",
                              expected=describe(expected), got=describe(got), hint=hint)
    for (label, g), (_, e) in zip(got_parts, want_parts):
        if g.shape != e.shape:
            raise ExerciseFailure(f"{what}: {label} has the wrong shape", expected=_shape(e), got=_shape(g), hint=hint)
        if g.dtype != e.dtype:
            raise ExerciseFailure(f"{what}: {label} has the wrong dtype", expected=str(e.dtype).replace("torch.", ""),
                                  got=str(g.dtype).replace("torch.", ""), hint=hint)
        if e.is_floating_point():
            if not torch.isfinite(g).all() and torch.isfinite(e).all():
                bad = tuple(int(i) for i in torch.nonzero(~torch.isfinite(g))[0])
                raise ExerciseFailure(f"{what}: {label} is not finite at index {bad} (the reference is finite everywhere)",
                                      got=describe(g), hint=hint or "look for 0/0 at padded positions, or a row "
                                      "of attention with nothing to attend to")
            g_cmp, e_cmp = (g, e) if where is None else (g[where], e[where])
            expect_close(g_cmp.detach(), e_cmp.detach(),
                         f"with the reference's weights loaded, the {label} of your {what}", rtol=rtol, atol=atol,
                         hint=hint or "your module computes another function than the notebook specifies; compare "
                                      "your forward with the equations, step by step")
        else:
            if not torch.equal(g, e):
                raise ExerciseFailure(f"{what}: {label} differs from the reference", expected=describe(e),
                                      got=describe(g), hint=hint)
    if grads:
        generator = torch.Generator().manual_seed(seed)
        floats = [(lab, g, e) for (lab, g), (_, e) in zip(got_parts, want_parts) if e.is_floating_point()]
        if floats and any(e.requires_grad for _, _, e in floats):
            weights = [torch.randn(e.shape, generator=generator, dtype=torch.float64) for _, _, e in floats]

            def objective(tensors):
                total = 0.0
                for t, w in zip(tensors, weights):
                    w = w.to(t.dtype)
                    if where is not None:
                        w = w * where.reshape(where.shape + (1,) * (t.ndim - where.ndim)).to(t.dtype)
                    total = total + (t.float() * w.float()).sum()
                return total

            if not any(g.requires_grad for _, g, _ in floats):
                raise ExerciseFailure(f"{what}: your output carries no gradient", hint="do not detach the output, "
                                      "call .item() or wrap the forward in torch.no_grad()")
            objective([g for _, g, _ in floats]).backward()
            objective([e for _, _, e in floats]).backward()
            mine = dict(learner.named_parameters())
            for name, param in reference.named_parameters():
                if param.grad is None:
                    continue
                grad = mine[name].grad if name in mine else None
                if grad is None:
                    raise ExerciseFailure(f"{what}: `{name}` receives no gradient, the reference's does",
                                          hint="is the parameter used in forward, and not behind .detach() / no_grad?")
                expect_close(grad, param.grad, f"with the reference's weights loaded, the gradient of `{name}` in your {what}", rtol=max(rtol, 1e-4),
                             atol=max(atol, 1e-5), hint=hint or "the outputs agree, the gradients do not: is a "
                             "computation detached, or done in place on a tensor autograd needs?")
    return got
