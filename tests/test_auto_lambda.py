"""Auto-Lambda: its meta-gradient is the look-ahead's exact derivative, it turns an auxiliary task up when its gradient
helps the primary and down when it opposes it, it skips what partial labels leave without an objective, and it
trains, resumes and refuses like every weighting."""

import math

import pytest
import torch
from meta_cases import Identity, problem
from torch.func import functional_call

from auxnas.config import load_config
from auxnas.engine.optim import current_lrs, virtual_step
from auxnas.export import export_primary
from auxnas.storage import load_checkpoint
from auxnas.train import fit
from auxnas.weighting import build_weighting


class Quadratic(torch.nn.Module):
    """``L_t(theta; batch) = 0.5 |A theta - batch[t]|^2`` through a shared ``theta`` and a task's private scale:
    smooth, non-linear in the parameters, with each batch's targets chosen by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([0.3, -0.2]))
        self.scale = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, batch):
        a = torch.tensor([[1.0, 0.5], [-0.3, 2.0]])
        pred = a @ torch.tanh(self.theta) * self.scale
        return {t: 0.5 * ((pred - target) ** 2).sum() for t, target in batch.items()}


def exact_gradient(model, optimizer, lambdas, train, meta, base):
    """``d L_p(theta'(lambda); meta) / d lambda`` by autograd through the virtual step (plain SGD, per-group lr)."""
    lam = lambdas.clone().requires_grad_()
    params = list(model.parameters())
    losses = model(train)
    grads = torch.autograd.grad(sum(lam[i] * base[t] * losses[t] for i, t in enumerate(["p", "a"])), params,
                                create_graph=True)
    lrs = current_lrs(optimizer, params)
    ahead = [p - lr * g for p, lr, g in zip(params, lrs, grads)]
    names = [n for n, _ in model.named_parameters()]
    primary = functional_call(model, dict(zip(names, ahead)), (meta,))["p"]
    return torch.autograd.grad(primary, lam)[0]


def test_the_meta_gradient_is_the_look_ahead_derivative_with_each_groups_lr():
    model = Quadratic()
    optimizer = torch.optim.SGD([{"params": [model.theta], "lr": 0.1}, {"params": [model.scale], "lr": 0.03}])
    train = {"p": torch.tensor([1.0, 0.0]), "a": torch.tensor([0.5, 0.8])}
    meta = {"p": torch.tensor([0.9, 0.2])}
    method = build_weighting("auto_lambda", ["p", "a"], "p")
    got = method.meta_gradient(problem(model, optimizer, train, meta, {"p": 1.0, "a": 2.0}))
    expected = exact_gradient(model, optimizer, method.lambdas, train, meta, {"p": 1.0, "a": 2.0})
    assert torch.allclose(torch.stack([got["p"], got["a"]]), expected, rtol=1e-3, atol=1e-7)
    assert float(expected.abs().min()) > 1e-4  # not a trivially zero case


@pytest.mark.parametrize(("aux_target", "direction"), [([1.0, 0.2], 1), ([-1.0, -0.2], -1)])
def test_an_aligned_auxiliary_is_turned_up_and_an_opposed_one_down(aux_target, direction):
    """The primary wants (1, 0) on both batches; the auxiliary's gradient points nearly the same way, or the
    opposite one. One meta update (Adam: a step of lr in the sign's direction) moves its weight accordingly."""
    model = Identity()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train = {"p": torch.tensor([1.0, 0.0]), "a": torch.tensor(aux_target)}
    method = build_weighting("auto_lambda", ["p", "a"], "p", lr=0.01, fix_primary=True)
    stats = method.meta_update(problem(model, optimizer, train, {"p": torch.tensor([1.0, 0.0])}))
    assert stats == {"meta_updated": {"p": 1.0}}
    assert float(method.weights()["a"]) == pytest.approx(0.1 + direction * 0.01, rel=1e-4)
    assert float(method.weights()["p"]) == 1.0  # fix_primary: only the auxiliary weight is learned


def test_partial_labels_skip_the_update_or_the_unlabelled_task():
    model = Quadratic()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    method = build_weighting("auto_lambda", ["p", "a", "b"], "p", lr=0.01)
    train = {"p": torch.tensor([1.0, 0.0]), "a": torch.tensor([1.0, 0.0])}
    before = method.lambdas.clone()
    stats = method.meta_update(problem(model, optimizer, train, {"a": torch.tensor([1.0, 0.0])}))
    assert stats == {"meta_updated": {"p": 0.0}} and torch.equal(method.lambdas, before)  # no primary label
    method.meta_update(problem(model, optimizer, train, {"p": torch.tensor([1.0, 0.0])}))
    moved = (method.lambdas != before).tolist()
    assert moved == [True, True, False] and method.steps.tolist() == [1, 1, 0]  # b: no label, no part


def test_every_sets_the_cadence_and_momentum_enters_the_virtual_step():
    model = Quadratic()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    model(dict(p=torch.tensor([1.0, 0.0])))["p"].backward()
    optimizer.step()  # a momentum buffer now exists
    params = list(model.parameters())
    grads = [torch.ones_like(p) for p in params]
    buffers = [optimizer.state[p]["momentum_buffer"] for p in params]
    moved = virtual_step(optimizer, params, grads)
    expected = [p - 0.1 * (0.9 * b + g + 0.01 * p) for p, b, g in zip(params, buffers, grads)]
    assert all(torch.allclose(m, e) for m, e in zip(moved, expected))
    method = build_weighting("auto_lambda", ["p", "a"], "p", every=3)
    assert [method.meta_due(step) for step in range(7)] == [True, False, False, True, False, False, True]


def test_options_are_checked_and_a_single_task_is_refused():
    with pytest.raises(ValueError, match="lr must be positive"):
        build_weighting("auto_lambda", ["p", "a"], "p", lr=0.0)
    with pytest.raises(ValueError, match="every must be a whole number"):
        build_weighting("auto_lambda", ["p", "a"], "p", every=0)
    with pytest.raises(ValueError, match="no auxiliary task"):
        build_weighting("auto_lambda", ["p"], "p")


TINY = ["data.image_size=32", "data.num_train=32", "data.num_test=8", "data.val_fraction=0.25", "data.batch_size=8",
        "train.epochs=2", "tasks.primary=normal", "tasks.aux=[seg]", "weighting.name=auto_lambda"]


def test_partially_labelled_training_learns_the_weights_from_the_labelled_meta_batches(tmp_path, monkeypatch):
    """A tenth of the images carry the primary label: some meta batches have none (no update), the others move
    the weights; the run trains and reports the share of steps that updated."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    cfg = load_config("demo", [*TINY, "data.labelled_fraction={normal: 0.1}", "data.batch_size=4",
                               "data.num_train=64", "method.name=aux_head",
                               "weighting.options.lr=0.01", f"out_dir={tmp_path / 'run'}"])
    result = fit(cfg, progress=False)
    updated = [r.weighting["meta_updated"]["normal"] for r in result.history]
    assert all(0.0 < u < 1.0 for u in updated), updated
    weights = load_checkpoint(tmp_path / "run" / "last.pt")["weighting"]["lambdas"]
    assert all(abs(float(w) - 0.1) > 1e-3 for w in weights)
    assert math.isfinite(result.test_best["normal"]["mean_angle"])
    report = export_primary(tmp_path / "run", tmp_path / "exported")  # the weighting leaves no trace in the model
    assert report["checks"]["params_equal_single_task"] and report["checks"]["flops_equal_single_task"]
