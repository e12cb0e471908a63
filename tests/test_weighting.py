"""Weighting methods against hand-computed cases, and with real methods for a few steps."""

import math

import pytest
import torch

from auxnas.weighting import WEIGHTING_NAMES, build_weighting

TASKS = ["p", "a"]
BASE = {"p": 1.0, "a": 1.0}


def linear_losses(gp, ga, own=(0.0, 0.0)):
    """Losses whose gradients on the shared vector are exactly ``gp`` and ``ga``; ``own`` only in p's loss."""
    shared = torch.nn.Parameter(torch.zeros(len(gp)))
    private = torch.nn.Parameter(torch.zeros(len(own)))
    losses = {
        "p": shared @ torch.tensor(gp) + private @ torch.tensor(own),
        "a": shared @ torch.tensor(ga),
    }
    return shared, private, losses


def run(name, gp, ga, own=(0.0, 0.0), **options):
    shared, private, losses = linear_losses(gp, ga, own)
    build_weighting(name, TASKS, "p", **options).backward(losses, [shared], BASE)
    return shared.grad, private.grad


def test_equal_is_the_plain_sum():
    grad, private = run("equal", [1.0, 2.0], [3.0, -1.0], own=(5.0, 6.0))
    assert torch.allclose(grad, torch.tensor([4.0, 1.0]))
    assert torch.allclose(private, torch.tensor([5.0, 6.0]))


def test_pcgrad_projects_both_conflicting_gradients():
    # g1 = (1, 0), g2 = (-1, 1): g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1)
    grad, private = run("pcgrad", [1.0, 0.0], [-1.0, 1.0], own=(2.0, 0.0))
    assert torch.allclose(grad, torch.tensor([0.5, 1.5]))
    assert torch.allclose(private, torch.tensor([2.0, 0.0]))  # non-shared parameters: ordinary gradient


def test_pcgrad_leaves_agreeing_gradients_alone():
    grad, _ = run("pcgrad", [1.0, 0.0], [1.0, 1.0])
    assert torch.allclose(grad, torch.tensor([2.0, 1.0]))


def test_pcgrad_aux_never_changes_the_primary():
    # only a's gradient is projected: (-1, 1) - (-1/1)(1, 0) = (0, 1); sum with the untouched primary (1, 0)
    grad, _ = run("pcgrad_aux", [1.0, 0.0], [-1.0, 1.0])
    assert torch.allclose(grad, torch.tensor([1.0, 1.0]))
    grad, _ = run("pcgrad_aux", [1.0, 0.0], [2.0, 1.0])
    assert torch.allclose(grad, torch.tensor([3.0, 1.0]))


def test_gcs_masks_disagreeing_tensors():
    first = torch.nn.Parameter(torch.zeros(2))
    second = torch.nn.Parameter(torch.zeros(2))
    losses = {
        "p": first @ torch.tensor([1.0, 0.0]) + second @ torch.tensor([0.0, 1.0]),
        "a": first @ torch.tensor([1.0, 1.0]) + second @ torch.tensor([0.0, -2.0]),
    }
    build_weighting("gcs", TASKS, "p").backward(losses, [first, second], BASE)
    assert torch.allclose(first.grad, torch.tensor([2.0, 1.0]))  # cos > 0: auxiliary kept
    assert torch.allclose(second.grad, torch.tensor([0.0, 1.0]))  # cos < 0: auxiliary dropped
    shared, _, losses = linear_losses([1.0, 0.0], [1.0, 1.0])
    build_weighting("gcs", TASKS, "p", mode="weighted").backward(losses, [shared], BASE)
    cos = 1 / math.sqrt(2)
    assert torch.allclose(shared.grad, torch.tensor([1.0 + cos, cos]))


def test_gcs_global_granularity_uses_one_cosine():
    first, second = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    losses = {"p": 3 * first.sum() + second.sum(), "a": first.sum() - second.sum()}  # global cos > 0
    build_weighting("gcs", TASKS, "p", granularity="global").backward(losses, [first, second], BASE)
    assert torch.allclose(second.grad, torch.tensor([0.0]))  # 1 + (-1): kept as a whole


def cagrad_brute_force(g, c):
    g0 = g.mean(0)
    best = min((torch.linspace(0, 1, 20001)), key=lambda w: float(
        (w * g[0] + (1 - w) * g[1]) @ g0 + c * g0.norm() * (w * g[0] + (1 - w) * g[1]).norm()
    ))
    gw = best * g[0] + (1 - best) * g[1]
    return 2 * (g0 + c * g0.norm() / gw.norm() * gw) / (1 + c**2)


@pytest.mark.parametrize("c", [0.0, 0.4, 0.9])
def test_cagrad_matches_brute_force_on_two_tasks(c):
    gp, ga = [1.0, 0.0], [-0.5, 1.0]
    grad, _ = run("cagrad", gp, ga, c=c)
    expected = cagrad_brute_force(torch.tensor([gp, ga], dtype=torch.float64), c).float()
    assert torch.allclose(grad, expected, atol=1e-3)


def test_dwa_weights_from_loss_history():
    dwa = build_weighting("dwa", ["p", "a", "b"], "p", temperature=2.0, fix_primary=False)
    assert all(float(w) == 1.0 for w in dwa.weights().values())
    dwa.end_epoch({"p": 1.0, "a": 1.0, "b": 1.0})
    dwa.end_epoch({"p": 0.5, "a": 1.0, "b": 2.0})
    ratios = {"p": 0.5, "a": 1.0, "b": 2.0}
    z = sum(math.exp(r / 2) for r in ratios.values())
    for t, r in ratios.items():
        assert float(dwa.weights()[t]) == pytest.approx(3 * math.exp(r / 2) / z)
    focused = build_weighting("dwa", ["p", "a", "b"], "p")
    focused.end_epoch({"p": 1.0, "a": 1.0, "b": 1.0})
    focused.end_epoch({"p": 0.5, "a": 1.0, "b": 2.0})
    w = focused.weights()
    assert float(w["p"]) == 1.0
    assert float(w["a"]) == pytest.approx(2 * math.exp(0.5) / (math.exp(0.5) + math.exp(1.0)))


def test_uncertainty_objective_and_gradient():
    shared, _, losses = linear_losses([1.0], [2.0])
    method = build_weighting("uncertainty", TASKS, "p")
    assert [name for name, _ in method.named_parameters()] == ["log_vars.a"]  # primary kept at weight 1
    with torch.no_grad():
        method.log_vars["a"].fill_(math.log(2.0))
    losses = {"p": losses["p"] + 3.0, "a": losses["a"] + 4.0}  # L_p = 3, L_a = 4 at zero
    method.backward(losses, [shared], BASE)
    assert torch.allclose(shared.grad, torch.tensor([1.0 + 0.5 * 2.0]))
    # d/ds [exp(-s) L + s] = 1 - exp(-s) L = 1 - 4 / 2
    assert float(method.log_vars["a"].grad) == pytest.approx(-1.0)


def test_gradnorm_raises_the_weight_of_the_task_with_the_smaller_gradient():
    method = build_weighting("gradnorm", ["p", "a", "b"], "p", lr=0.1)
    shared = torch.nn.Parameter(torch.ones(2))
    for _ in range(3):
        losses = {"p": shared.sum(), "a": 10 * shared[0], "b": 0.1 * shared[1]}
        method.backward(losses, [shared], {"p": 1.0, "a": 1.0, "b": 1.0})
    w = method.weights()
    assert float(w["p"]) == 1.0
    assert float(w["b"]) > 1.0 > float(w["a"])
    assert float(w["a"] + w["b"]) == pytest.approx(2.0)


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="valid: equal"):
        build_weighting("nash", TASKS, "p")
    with pytest.raises(ValueError, match="weighting.options.temp: not an option of dwa; valid: temperature"):
        build_weighting("dwa", TASKS, "p", temp=2.0)
    assert len(WEIGHTING_NAMES) == 8


@pytest.mark.parametrize("name", WEIGHTING_NAMES)
@pytest.mark.parametrize("method", ["aux_head", "aux_nas"])
def test_every_weighting_trains_with_real_methods(tmp_path, name, method):
    from auxnas.config import config_from_dict
    from auxnas.train import fit

    cfg = config_from_dict({
        "out_dir": str(tmp_path / "run"),
        "data": {"image_size": 32, "num_train": 16, "num_test": 4, "val_fraction": 0.25, "batch_size": 4},
        "tasks": {"primary": "normal", "aux": ["seg", "depth"]},
        "model": {"backbone": "tiny_resnet"},
        "method": {"name": method},
        "weighting": {"name": name},
        "train": {"epochs": 3, "max_steps_per_epoch": 1},
    })
    result = fit(cfg, progress=False)
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert math.isfinite(result.test_best["normal"]["mean_angle"])
