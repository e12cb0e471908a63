"""AuxiLearn: its hypergradient is the truncated Neumann series of the implicit derivative, it turns an auxiliary task
up when its gradient helps the primary on the auxiliary set and down when it opposes it, its auxiliary set is held
out of the primary-labelled training images, and it trains and refuses like every weighting."""

import math

import pytest
import torch
from meta_cases import Identity, problem

from auxnas.config import load_config
from auxnas.data import build_splits
from auxnas.engine.loaders import epoch_pools, held_out_images
from auxnas.export import export_primary
from auxnas.train import fit
from auxnas.weighting import COMPOSED_NAMES, build_weighting

#: L_t(theta) = 0.5 (theta - t)^T A_t (theta - t) per task; the meta batch asks the primary for TARGET_META
A = {"p": torch.tensor([[2.0, 0.3], [0.3, 1.0]]), "a": torch.tensor([[1.0, -0.2], [-0.2, 0.5]])}


class Quadratic(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([0.2, -0.1]))

    def forward(self, batch):
        return {t: 0.5 * (self.theta - target) @ A[t] @ (self.theta - target) for t, target in batch.items()}


def sgd_problem(model, lr, train, meta):
    """The ``MetaProblem`` of ``model`` under SGD at ``lr`` (the Neumann series' step)."""
    return problem(model, torch.optim.SGD(model.parameters(), lr=lr), train, meta)


def test_the_hypergradient_is_the_truncated_neumann_series_of_the_implicit_derivative():
    model, alpha = Quadratic(), 0.1
    train = {"p": torch.tensor([1.0, 0.0]), "a": torch.tensor([0.5, 1.0])}
    meta = {"p": torch.tensor([0.8, 0.4])}
    method = build_weighting("auxilearn", ["p", "a"], "p", neumann_terms=3)
    with torch.no_grad():
        method.phi["w"].copy_(torch.tensor([1.0, 0.7]))
    got = method.hypergradient(sgd_problem(model, alpha, train, meta))
    theta = model.theta.detach()
    w = {"p": 1.0, "a": 0.7}
    hessian = sum(w[t] * A[t] for t in A)
    g = A["p"] @ (theta - meta["p"])
    p, v = g.clone(), g.clone()
    for _ in range(3):
        v = v - alpha * hessian @ v
        p = p + v
    expected = torch.stack([-(A[t] @ (theta - train[t])) @ p for t in ("p", "a")])
    assert torch.allclose(got["w"], expected, rtol=1e-5, atol=1e-7)
    assert float(expected.abs().min()) > 1e-3


@pytest.mark.parametrize(("aux_target", "direction"), [([1.0, 0.2], 1), ([-1.0, -0.2], -1)])
def test_an_aligned_auxiliary_is_turned_up_and_an_opposed_one_down(aux_target, direction):
    method = build_weighting("auxilearn", ["p", "a"], "p", lr=0.01, weight_decay=0.0)
    train = {"p": torch.tensor([1.0, 0.0]), "a": torch.tensor(aux_target)}
    stats = method.meta_update(sgd_problem(Identity(), 0.1, train, {"p": torch.tensor([1.0, 0.0])}))
    assert stats == {"meta_updated": {"p": 1.0}}
    assert (float(method.phi["w"][1].detach()) - 1.0) * direction > 1e-4


def test_the_combination_stays_monotone_and_a_meta_batch_without_primary_label_is_skipped():
    method = build_weighting("auxilearn", ["p", "a"], "p", combine="nonlinear", lr=10.0)
    train = {"p": torch.tensor([1.0, 0.0]), "a": torch.tensor([-1.0, -0.2])}
    assert method.meta_update(sgd_problem(Identity(), 0.1, train, {"a": torch.tensor([1.0, 0.0])})) == {
        "meta_updated": {"p": 0.0}}
    assert int(method.meta_steps) == 0
    method.meta_update(sgd_problem(Identity(), 0.1, train, {"p": torch.tensor([1.0, 0.0])}))
    assert int(method.meta_steps) == 1
    assert float(method.phi["w1"].detach().min()) >= 0 and float(method.phi["w2"].detach().min()) >= 0  # clamped
    x = torch.tensor([0.3, 0.5], requires_grad=True)
    slopes = torch.autograd.grad(method.combined(x, dict(method.phi.items())), x)[0]
    assert float(slopes.min()) >= 0 and float(slopes[0]) >= 1.0  # the primary's loss enters with weight 1 at least


def test_options_are_checked():
    for options, message in [({"combine": "mlp"}, "combine"), ({"aux_share": 0.0}, "aux_share"),
                             ({"every": 0}, "every"), ({"lr": -1.0}, "lr"), ({"neumann_lr": 0.0}, "neumann_lr")]:
        with pytest.raises(ValueError, match=message):
            build_weighting("auxilearn", ["p", "a"], "p", **options)
    with pytest.raises(ValueError, match="no auxiliary task"):
        build_weighting("auxilearn", ["p"], "p")
    assert "auxilearn+cagrad" not in COMPOSED_NAMES  # a non-linear combination has no weights to compose


TINY = ["data.image_size=32", "data.num_train=64", "data.num_test=8", "data.val_fraction=0.25", "data.batch_size=4",
        "train.epochs=2", "tasks.primary=normal", "tasks.aux=[seg]", "method.name=aux_head",
        "weighting.name=auxilearn", "data.labelled_fraction={normal: 0.5}"]


def test_the_auxiliary_set_is_held_out_of_the_primary_labelled_images(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    cfg = load_config("demo", [*TINY, "weighting.options={aux_share: 0.2}"])
    train = build_splits(cfg.data, progress=False).train
    held = held_out_images(train, cfg, 0.2)
    labelled = [i for i in range(len(train)) if train.labelled["normal"][i]]
    assert len(held) == round(0.2 * len(labelled)) and set(held) <= set(labelled)
    for bilevel in (False, True):
        network, architecture, _ = epoch_pools(len(train), cfg, 1, bilevel, held)
        assert not set(held) & set(network) and not set(held) & set(architecture or [])
        assert len(network) + len(architecture or []) == len(train) - len(held)
    scarce = load_config("demo", [*TINY, "data.labelled_fraction={normal: 0.05}"])
    with pytest.raises(ValueError, match="needs at least 3"):
        held_out_images(build_splits(scarce.data, progress=False).train, scarce, 0.025)


@pytest.mark.parametrize("combine", ["linear", "nonlinear"])
def test_partially_labelled_training_learns_the_combination(tmp_path, monkeypatch, combine):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    cfg = load_config("demo", [*TINY, f"weighting.options={{every: 2, combine: {combine}, lr: 0.1}}",
                               f"out_dir={tmp_path / 'run'}"])
    result = fit(cfg, progress=False)
    assert all(r.weighting["meta_updated"]["normal"] == 1.0 for r in result.history)  # held-out: all labelled
    assert any(v != 1.0 for v in result.history[-1].weighting["weight"].values())
    assert math.isfinite(result.test_best["normal"]["mean_angle"])
    report = export_primary(tmp_path / "run", tmp_path / "exported")
    assert report["checks"]["params_equal_single_task"] and report["checks"]["flops_equal_single_task"]
