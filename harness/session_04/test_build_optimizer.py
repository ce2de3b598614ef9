"""Exercise 4: build_optimizer."""
import pytest
import torch

from harness.autograder.checks import expect

pytestmark = pytest.mark.exercise("build_optimizer")


def _groups(opt):
    return [(g["weight_decay"], {id(p) for p in g["params"]}) for g in opt.param_groups]


def test_adamw_with_settings(nb, model):
    opt = nb.build_optimizer(model, lr=3e-4, weight_decay=0.05, betas=(0.9, 0.98))
    expect(isinstance(opt, torch.optim.AdamW), "an AdamW optimizer", got=type(opt).__name__)
    expect(all(g["lr"] == 3e-4 and tuple(g["betas"]) == (0.9, 0.98) for g in opt.param_groups),
           "learning rate and betas are set", got=[(g["lr"], g["betas"]) for g in opt.param_groups])


def test_every_parameter_once(nb, model):
    opt = nb.build_optimizer(model, lr=1e-3, weight_decay=0.01)
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    expected = {id(p) for p in model.parameters()}
    expect(len(grouped) == len(set(grouped)), "no parameter appears twice (the item tower is shared by both towers)",
           hint="model.parameters() / named_parameters() already skip duplicates; collect ids if you walk modules")
    expect(set(grouped) == expected, "every trainable parameter is in a group",
           got=f"{len(set(grouped))} of {len(expected)} parameters")


def test_decay_only_linear_weights(nb, model):
    opt = nb.build_optimizer(model, lr=1e-3, weight_decay=0.01)
    decayed = {pid for wd, ids in _groups(opt) if wd > 0 for pid in ids}
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{name}.{pname}" if name else pname
            should = isinstance(module, torch.nn.Linear) and pname == "weight"
            if (id(p) in decayed) != should:
                if isinstance(module, torch.nn.Embedding):
                    hint = "embedding tables are 2-D like Linear weights, but must not decay: test the module type"
                else:
                    hint = "decay only nn.Linear weights; biases and norm gains get weight_decay=0"
                expect(False, f"`{full}` {'is' if id(p) in decayed else 'is not'} decayed",
                       expected="decayed" if should else "weight_decay = 0", got="decayed" if id(p) in decayed else "0",
                       hint=hint)


def test_frozen_parameters_are_left_out(nb, model):
    model.item_tower.category_embedding.weight.requires_grad_(False)  # frozen, as a pretrained table would be
    frozen = id(model.item_tower.category_embedding.weight)
    opt = nb.build_optimizer(model, lr=1e-3, weight_decay=0.01)
    grouped = {id(p) for g in opt.param_groups for p in g["params"]}
    expect(frozen not in grouped, "a frozen parameter (requires_grad=False) is in no group",
           hint="skip parameters with requires_grad False: AdamW's weight decay would still shrink them every step, "
                "and their optimizer state wastes memory")
    expect(grouped == {id(p) for p in model.parameters() if p.requires_grad}, "every trainable parameter is still there")
