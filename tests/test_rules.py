"""The method rules of methods/base.py, each with its check shown to catch a method that breaks
it (the summary-key rule is in test_records.py, with the keys)."""

import copy

import pytest
import torch

from pruneviz.loop import Session
from pruneviz.masks import apply_masks
from pruneviz.methods.base import masks_changed, masks_signature
from pruneviz.methods.oneshot import Dense
from pruneviz.records import Recorder, RuleBroken, Table
from pruneviz.session import prepare

TINY = dict(start="scratch", epochs=2, max_steps_per_epoch=3)     # steps 0-5, epochs end at 2, 5
TABLE = Table("test_rules_rows", {"x": "a number"})


def session_of(method, fast_config, store) -> Session:
    config = fast_config(**TINY)
    prep = prepare(config)
    prep.method = method
    return Session(prep, store, store.create_run(config))


class Masking(Dense):
    """Holds a mask of ones on every layer, and prunes one weight at step 1 by `edit`."""

    def __init__(self, edit):
        super().__init__()
        self.edit = edit

    def before_training(self, ctx):
        ctx.masks = {l.param: torch.ones_like(l.module.weight) for l in ctx.layers}

    def after_step(self, ctx):
        if ctx.step == 1:
            self.edit(ctx.masks, ctx.layers[0].param)
            apply_masks(ctx.model, ctx.masks)


@pytest.mark.parametrize("edit", [
    lambda masks, k: masks[k].view(-1)[0].zero_(),                       # the tensor in place
    lambda masks, k: masks.__setitem__(k, masks[k].index_fill(0, torch.tensor([0]), 0.0)),
    lambda masks, k: masks.update({k: torch.zeros_like(masks[k])}),       # the dict in place
], ids=["tensor", "setitem", "update"])
def test_masks_edited_in_place_mid_epoch_are_seen_that_step(edit, fast_config, store):
    session = session_of(Masking(edit), fast_config, store)
    assert session.run()["status"] == "completed"
    assert session.last_change == 1        # not the epoch's end (2): the step that pruned


def test_masks_changed_sees_every_edit():
    masks = {"a": torch.ones(3), "b": torch.ones(2)}
    seen = masks_signature(masks)
    assert not masks_changed(seen, masks)
    masks["a"].mul_(1)
    assert masks_changed(seen, masks)
    seen = masks_signature(masks)
    masks["c"] = torch.ones(1)
    assert masks_changed(seen, masks)
    seen = masks_signature(masks)
    assert masks_changed(seen, dict(masks))                             # replaced
    assert masks_changed(None, masks)
    with torch.inference_mode():                 # masks made in inference mode are seen too
        made = {"a": torch.ones(3)}
    seen = masks_signature(made)
    assert not masks_changed(seen, made)
    made["a"] = torch.zeros(3)
    assert masks_changed(seen, made)


def test_one_steps_rows_of_a_table_come_from_one_hook(fast_config, store):
    rec = Recorder()
    rec.hook = "after_step"
    TABLE.write(rec, x=1)
    TABLE.write(rec, x=2)                  # many rows from one hook: fine
    rec.step = 1
    rec.hook = "end_of_epoch"
    TABLE.write(rec, x=3)                  # another step: fine
    rec.hook = "after_step"
    with pytest.raises(RuleBroken, match="step 1's rows come from end_of_epoch and after_step"):
        TABLE.write(rec, x=4)

    class TwoHooks(Dense):
        def after_step(self, ctx):
            TABLE.write(ctx.record, x=ctx.step)

        def end_of_epoch(self, ctx):     # the epoch's last step again, from another hook
            TABLE.write(ctx.record, x=-1)

    s = session_of(TwoHooks(), fast_config, store).run()
    assert s["status"] == "failed" and "from after_step and end_of_epoch" in s["error"]


def test_a_penalty_without_a_gradient_must_add_its_own(fast_config, store):
    class Detached(Dense):
        def loss_penalty(self, ctx):
            return sum(l.module.weight.detach().square().sum() for l in ctx.layers) * 1e-4

    s = session_of(Detached(), fast_config, store).run()
    assert s["status"] == "failed" and "rule 6" in s["error"]

    class AddsItsGradient(Detached):     # as SLR and ADMM do
        def after_backward(self, ctx):
            for layer in ctx.layers:
                layer.module.weight.grad.add_(layer.module.weight.detach(), alpha=2e-4)

    assert session_of(AddsItsGradient(), fast_config, store).run()["status"] == "completed"


def test_layers_stay_the_modules_the_model_holds(fast_config, store):
    class Replaces(Dense):
        def end_of_epoch(self, ctx):
            name = ctx.layers[0].name
            ctx.model.set_submodule(name, copy.deepcopy(ctx.model.get_submodule(name)))

    s = session_of(Replaces(), fast_config, store).run()
    assert s["status"] == "failed" and "rule 7" in s["error"]
