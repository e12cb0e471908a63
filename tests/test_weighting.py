"""Weighting methods against hand-computed cases.

The losses are linear in a shared vector ``w`` (``L_t = w . g_t``), so the per-task gradients
on the shared parameters are exactly the chosen ``g_t`` and expected ``.grad`` values are exact.
"""

import math

import pytest
import torch

from auxnas.weighting import WEIGHTING_NAMES, build_weighting
from auxnas.weighting.surgery import cagrad_weights

TASKS = ["p", "a"]
BASE = {"p": 1.0, "a": 1.0}
GRADIENT_METHODS = ["pcgrad", "pcgrad_aux", "cagrad", "gcs"]


def linear_losses(gp, ga, own=(0.0, 0.0)):
    """Losses whose gradients on the shared vector are exactly ``gp`` and ``ga``; ``own`` only in p's loss."""
    shared = torch.nn.Parameter(torch.zeros(len(gp)))
    private = torch.nn.Parameter(torch.zeros(len(own)))
    losses = {
        "p": shared @ torch.tensor(gp) + private @ torch.tensor(own),
        "a": shared @ torch.tensor(ga),
    }
    return shared, private, losses


def run(name, gp, ga, own=(0.0, 0.0), base=BASE, **options):
    """``.grad`` of the shared vector and of p's private parameters after one ``backward``."""
    shared, private, losses = linear_losses(gp, ga, own)
    build_weighting(name, TASKS, "p", **options).backward(losses, [shared], base)
    return shared.grad, private.grad


class TwoHeads(torch.nn.Module):
    """Hard sharing: a shared trunk, one head per task, and a parameter only the primary reaches."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4))
        self.heads = torch.nn.ModuleDict({t: torch.nn.Linear(4, 1) for t in TASKS})
        self.primary_scale = torch.nn.Parameter(torch.tensor(2.0))
        self.unused = torch.nn.Parameter(torch.zeros(2))

    def losses(self):
        z = self.trunk(torch.linspace(-1, 1, 6).reshape(2, 3))
        return {"p": (self.primary_scale * self.heads["p"](z)).pow(2).mean(), "a": self.heads["a"](z).sin().mean()}


def reference_grads(model, base):
    """Every parameter's ``.grad`` after the plain backward of the base-weighted sum."""
    model.zero_grad(set_to_none=True)
    losses = model.losses()
    sum(base[t] * losses[t] for t in TASKS).backward()
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", WEIGHTING_NAMES)
def test_private_parameters_get_their_ordinary_gradients(name):
    model, base = TwoHeads(), {"p": 0.5, "a": 2.0}
    expected = reference_grads(model, base)
    model.zero_grad(set_to_none=True)
    build_weighting(name, TASKS, "p").backward(model.losses(), list(model.trunk.parameters()), base)
    for n, p in model.named_parameters():
        if n.startswith("heads") or n == "primary_scale":  # every method's weights are 1 at the first step
            assert torch.allclose(p.grad, expected[n]), n
    assert model.unused.grad is None


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_without_shared_parameters_are_the_plain_sum(name):
    model, base = TwoHeads(), {"p": 0.5, "a": 2.0}
    expected = reference_grads(model, base)
    model.zero_grad(set_to_none=True)
    build_weighting(name, TASKS, "p").backward(model.losses(), [], base)
    for n, p in model.named_parameters():
        assert (p.grad is None) if expected[n] is None else torch.allclose(p.grad, expected[n]), n


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_accumulate_and_skip_unreached_shared_parameters(name):
    shared, private, losses = linear_losses([1.0, 2.0], [1.0, 1.0], own=(3.0, 0.0))
    unreached = torch.nn.Parameter(torch.zeros(3))
    shared.grad, private.grad = torch.ones(2), torch.ones(2)
    build_weighting(name, TASKS, "p").backward(losses, [shared, unreached], BASE)
    # the gradients agree (no surgery): everything is the plain sum, added to the existing .grad
    assert torch.allclose(private.grad, torch.tensor([4.0, 1.0]))
    assert unreached.grad is None
    if name != "cagrad":  # CAGrad moves towards the worse task even without conflict
        assert torch.allclose(shared.grad, torch.tensor([3.0, 4.0]))


def test_equal_is_the_plain_sum():
    grad, private = run("equal", [1.0, 2.0], [3.0, -1.0], own=(5.0, 6.0), base={"p": 1.0, "a": 2.0})
    assert torch.allclose(grad, torch.tensor([7.0, 0.0]))
    assert torch.allclose(private, torch.tensor([5.0, 6.0]))


def test_pcgrad_projects_both_conflicting_gradients():
    # g1 = (1, 0), g2 = (-1, 1): g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1)
    grad, private = run("pcgrad", [1.0, 0.0], [-1.0, 1.0], own=(2.0, 0.0))
    assert torch.allclose(grad, torch.tensor([0.5, 1.5]))
    assert torch.allclose(private, torch.tensor([2.0, 0.0]))


def test_pcgrad_applies_the_base_weights_first():
    # g2 = 2 (-1, 1): g1' = (1, 0) + (2/8)(-2, 2) = (0.5, 0.5); g2' = (-2, 2) + 2 (1, 0) = (0, 2)
    grad, _ = run("pcgrad", [1.0, 0.0], [-1.0, 1.0], base={"p": 1.0, "a": 2.0})
    assert torch.allclose(grad, torch.tensor([0.5, 2.5]))


def test_pcgrad_three_tasks_is_order_dependent_but_seeded():
    def grad(seed):
        shared = torch.nn.Parameter(torch.zeros(2))
        losses = {t: shared @ torch.tensor(g) for t, g in zip("pab", ([1.0, 0.0], [-1.0, 1.0], [-1.0, -0.5]))}
        build_weighting("pcgrad", list("pab"), "p", seed=seed).backward(losses, [shared], dict.fromkeys("pab", 1.0))
        return shared.grad

    assert torch.equal(grad(0), grad(0))
    assert any(not torch.allclose(grad(0), grad(s)) for s in range(1, 6))


def test_no_surgery_when_gradients_agree():
    for name in ("pcgrad", "pcgrad_aux", "gcs"):
        grad, _ = run(name, [1.0, 0.0], [1.0, 1.0])
        assert torch.allclose(grad, torch.tensor([2.0, 1.0])), name


def test_pcgrad_aux_never_changes_the_primary():
    # only a's gradient is projected: (-1, 1) - (-1/1)(1, 0) = (0, 1); sum with the untouched primary (1, 0)
    grad, _ = run("pcgrad_aux", [1.0, 0.0], [-1.0, 1.0])
    assert torch.allclose(grad, torch.tensor([1.0, 1.0]))
    # the primary conflicting with a would be projected by pcgrad, never by pcgrad_aux
    grad, _ = run("pcgrad_aux", [2.0, 1.0], [-1.0, 0.0])
    assert torch.allclose(grad, torch.tensor([2.0, 1.0]) + torch.tensor([-1.0, 0.0]) + 2 / 5 * torch.tensor([2.0, 1.0]))


def test_gcs_masks_disagreeing_tensors():
    first = torch.nn.Parameter(torch.zeros(2))
    second = torch.nn.Parameter(torch.zeros(2))
    losses = {
        "p": first @ torch.tensor([1.0, 0.0]) + second @ torch.tensor([0.0, 1.0]),
        "a": first @ torch.tensor([1.0, 1.0]) + second @ torch.tensor([1.0, -2.0]),
    }
    build_weighting("gcs", TASKS, "p").backward(losses, [first, second], BASE)
    assert torch.allclose(first.grad, torch.tensor([2.0, 1.0]))  # cos > 0: auxiliary kept
    assert torch.allclose(second.grad, torch.tensor([0.0, 1.0]))  # cos < 0: auxiliary dropped


def test_gcs_weighted_scales_by_the_cosine():
    grad, _ = run("gcs", [1.0, 0.0], [1.0, 1.0], mode="weighted")
    cos = 1 / math.sqrt(2)
    assert torch.allclose(grad, torch.tensor([1.0 + cos, cos]))
    grad, _ = run("gcs", [1.0, 0.0], [-1.0, 1.0], mode="weighted")
    assert torch.allclose(grad, torch.tensor([1.0, 0.0]))


def test_gcs_global_granularity_uses_one_cosine():
    first, second = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    losses = {"p": 3 * first.sum() + second.sum(), "a": first.sum() - second.sum()}  # cos (3,1).(1,-1) > 0
    build_weighting("gcs", TASKS, "p", granularity="global").backward(losses, [first, second], BASE)
    assert torch.allclose(first.grad, torch.tensor([4.0]))
    assert torch.allclose(second.grad, torch.tensor([0.0]))  # 1 + (-1): kept, although it disagrees there
    first.grad = second.grad = None
    losses = {"p": 3 * first.sum() + second.sum(), "a": first.sum() - second.sum()}
    build_weighting("gcs", TASKS, "p").backward(losses, [first, second], BASE)
    assert torch.allclose(second.grad, torch.tensor([1.0]))  # per tensor: dropped on the second


def cagrad_two_tasks(g1, g2, c):
    """CAGrad's output for two tasks from the closed-form minimiser of ``g_w . g0 + c |g0| |g_w|``."""
    g0, diff = (g1 + g2) / 2, g1 - g2
    r = c * g0.norm()
    # g_w = g2 + w diff; with u = A w + B: f'(w) = alpha + r u / sqrt(u^2 / A + D)
    a, b, alpha = diff @ diff, g2 @ diff, diff @ g0
    d = g2 @ g2 - b * b / a
    k = -alpha / r
    if k * k >= a:  # f' never vanishes: a vertex
        w = 0.0 if alpha > 0 else 1.0
    else:
        u = torch.sign(k) * k.abs() * torch.sqrt(d / (1 - k * k / a))
        w = float(((u - b) / a).clamp(0, 1))
    gw = w * g1 + (1 - w) * g2
    return 2 * (g0 + r / gw.norm() * gw) / (1 + c * c)


@pytest.mark.parametrize("c", [0.1, 0.4, 0.9, 2.0])
@pytest.mark.parametrize("gp, ga", [
    ([1.0, 0.0], [-0.5, 1.0]),
    ([1.0, 0.0], [-1.0, 0.2]),  # nearly opposite
    ([3.0, 1.0], [0.2, 0.1]),  # very different norms: the minimiser is a vertex
    ([1.0, 2.0, -1.0], [0.5, -2.0, 0.3]),
])
def test_cagrad_matches_the_two_task_closed_form(gp, ga, c):
    grad, _ = run("cagrad", gp, ga, c=c)
    expected = cagrad_two_tasks(torch.tensor(gp, dtype=torch.float64), torch.tensor(ga, dtype=torch.float64), c)
    assert torch.allclose(grad.double(), expected, atol=1e-5)


def test_cagrad_hand_computed_orthogonal_case():
    # g1 = e1, g2 = e2: by symmetry w = (1/2, 1/2), g_w = g0, so d = (1 + c) g0 and the output 2 d / (1 + c^2)
    c = 0.4
    grad, _ = run("cagrad", [1.0, 0.0], [0.0, 1.0], c=c)
    assert torch.allclose(grad, torch.full((2,), (1 + c) / (1 + c * c)))
    grad, _ = run("cagrad", [1.0, 0.0], [-1.0, 1.0], c=0.0)
    assert torch.allclose(grad, torch.tensor([0.0, 1.0]))  # c = 0: the plain sum


def test_cagrad_weights_are_optimal_on_three_tasks():
    torch.manual_seed(0)
    n = 300
    grid = torch.stack(torch.meshgrid(torch.arange(n + 1.0), torch.arange(n + 1.0), indexing="ij"), -1).reshape(-1, 2)
    grid = torch.cat([grid, n - grid.sum(1, keepdim=True)], 1).double() / n
    grid = grid[grid[:, 2] >= 0]
    for _ in range(5):
        g = torch.randn(3, 4, dtype=torch.float64)
        g[2] = -0.6 * g[0] + 0.1 * g[2]  # a conflicting pair
        g0 = g.mean(0)

        def objective(w, g=g, g0=g0):
            return w @ g @ g0 + 0.4 * g0.norm() * (w @ g).norm(dim=-1)

        w = torch.from_numpy(cagrad_weights((g @ g.T).numpy(), 0.4))
        assert w.min() >= 0 and float(w.sum()) == pytest.approx(1.0)
        assert float(objective(w)) <= float(objective(grid).min()) + 1e-12


def test_dwa_weights_from_loss_history():
    dwa = build_weighting("dwa", ["p", "a", "b"], "p", temperature=2.0, fix_primary=False)
    assert all(float(w) == 1.0 for w in dwa.weights().values())
    dwa.end_epoch({"p": 1.0, "a": 1.0, "b": 1.0})
    assert all(float(w) == 1.0 for w in dwa.weights().values())  # 1 for the first two epochs
    dwa.end_epoch({"p": 0.5, "a": 1.0, "b": 2.0})
    ratios = {"p": 0.5, "a": 1.0, "b": 2.0}
    z = sum(math.exp(r / 2) for r in ratios.values())
    for t, r in ratios.items():
        assert float(dwa.weights()[t]) == pytest.approx(3 * math.exp(r / 2) / z)
    dwa.end_epoch({"p": 0.5, "a": 0.5, "b": 0.5})  # ratios of the last two epochs only: (1, 0.5, 0.25)
    z = math.exp(0.5) + math.exp(0.25) + math.exp(0.125)
    assert float(dwa.weights()["b"]) == pytest.approx(3 * math.exp(0.125) / z)


def test_dwa_primary_focused_and_gradient():
    dwa = build_weighting("dwa", ["p", "a", "b"], "p")
    dwa.end_epoch({"p": 1.0, "a": 1.0, "b": 1.0})
    dwa.end_epoch({"p": 0.5, "a": 1.0, "b": 2.0})
    w = dwa.weights()
    assert float(w["p"]) == 1.0
    wa = 2 * math.exp(0.5) / (math.exp(0.5) + math.exp(1.0))
    assert float(w["a"]) == pytest.approx(wa)
    assert float(w["a"] + w["b"]) == pytest.approx(2.0)
    shared = torch.nn.Parameter(torch.zeros(2))
    losses = {"p": shared[0], "a": shared[1], "b": 3 * shared[1]}
    effective = dwa.backward(losses, [shared], {"p": 1.0, "a": 1.0, "b": 0.5})
    assert torch.allclose(shared.grad, torch.tensor([1.0, wa + 1.5 * (2 - wa)]))
    assert effective["a"] == pytest.approx(wa)


def test_uncertainty_objective_and_gradient():
    shared, _, losses = linear_losses([1.0], [2.0])
    method = build_weighting("uncertainty", TASKS, "p")
    assert [name for name, _ in method.named_parameters()] == ["log_vars.a"]  # primary kept at weight 1
    with torch.no_grad():
        method.log_vars["a"].fill_(math.log(2.0))
    losses = {"p": losses["p"] + 3.0, "a": losses["a"] + 4.0}  # L_p = 3, L_a = 4 at zero
    effective = method.backward(losses, [shared], BASE)
    assert effective == pytest.approx({"p": 1.0, "a": 0.5})
    assert torch.allclose(shared.grad, torch.tensor([1.0 + 0.5 * 2.0]))
    # d/ds [exp(-s) L + s] = 1 - exp(-s) L = 1 - 4 / 2
    assert float(method.log_vars["a"].grad) == pytest.approx(-1.0)


def test_uncertainty_learns_every_task_when_not_primary_focused():
    method = build_weighting("uncertainty", TASKS, "p", fix_primary=False)
    s = torch.nn.Parameter(torch.zeros(()))
    losses = {"p": 2.0 + 0 * s, "a": 0.5 + s}  # L_p = 2, L_a = 0.5 at s = 0
    method.backward(losses, [], {"p": 1.0, "a": 2.0})  # base weights multiply L: 2 and 1
    assert float(method.log_vars["p"].grad) == pytest.approx(1 - 2.0)
    assert float(method.log_vars["a"].grad) == pytest.approx(1 - 1.0)
    assert float(s.grad) == pytest.approx(2.0)


def test_gradnorm_hand_computed_step():
    # W = (1, 1), L_p = W . (2, 0) = 2, L_a = W . (0, 1) = 1: norms (2, 1), rates (1, 1) at the first step.
    # G = (2, 1), target mean(G) = 1.5, d/dw = sign(G - 1.5) * norm = (2, -1): w = (0.8, 1.1), renormalised x 2/1.9
    for fix_primary in (False, True):
        method = build_weighting("gradnorm", TASKS, "p", lr=0.1, fix_primary=fix_primary)
        assert list(method.parameters()) == []  # its own update: nothing for the network optimiser
        shared = torch.nn.Parameter(torch.ones(2))
        effective = method.backward({"p": shared @ torch.tensor([2.0, 0.0]), "a": shared[1]}, [shared], BASE)
        assert effective == {"p": 1.0, "a": 1.0}
        assert torch.allclose(shared.grad, torch.tensor([2.0, 1.0]))  # the network step uses the weights before
        w = method.weights()
        if fix_primary:
            assert float(w["p"]) == 1.0 and float(w["a"]) == pytest.approx(1.1 / 0.8)
        else:
            assert float(w["p"]) == pytest.approx(0.8 * 2 / 1.9) and float(w["a"]) == pytest.approx(1.1 * 2 / 1.9)


def test_gradnorm_raises_the_weight_of_the_task_with_the_smaller_gradient():
    method = build_weighting("gradnorm", ["p", "a", "b"], "p", lr=0.05, fix_primary=False)
    shared = torch.nn.Parameter(torch.ones(2))
    for _ in range(5):
        losses = {"p": shared.sum(), "a": 10 * shared[0], "b": 0.1 * shared[1]}
        method.backward(losses, [shared], dict.fromkeys("pab", 1.0))
    w = method.weights()
    # G = w |g|: a (|g| = 10) is above the mean, p (1.41) and b (0.1) below; each moves at a rate |g|
    assert float(w["a"]) < 1.0 < float(w["b"]) < float(w["p"])
    assert float(w["p"] + w["a"] + w["b"]) == pytest.approx(3.0)


def test_gradnorm_raises_the_weight_of_the_slower_task():
    method = build_weighting("gradnorm", TASKS, "p", lr=0.05, fix_primary=True)
    shared = torch.nn.Parameter(torch.ones(1))
    for value in (2.0, 1.0, 0.8):  # equal gradient norms; the primary's loss falls, the auxiliary's does not
        method.backward({"p": 2 * shared.sum() + (value - 2), "a": 2 * shared.sum()}, [shared], BASE)
    w = method.weights()
    assert float(w["p"]) == 1.0 and float(w["a"]) > 1.0


def test_gradnorm_uses_the_last_shared_tensor_every_task_reaches():
    method = build_weighting("gradnorm", TASKS, "p", lr=0.1, fix_primary=False)
    first, last = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    # only p reaches `last`; on `first` the norms are (2, 1) as in the hand-computed step
    method.backward({"p": 2 * first.sum() + 5 * last.sum(), "a": first.sum()}, [first, last], BASE)
    assert float(method.weights()["a"]) == pytest.approx(1.1 * 2 / 1.9)


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown method 'nash'; valid: equal, uncertainty, dwa, gradnorm"):
        build_weighting("nash", TASKS, "p")
    with pytest.raises(ValueError, match="weighting.options.temp: not an option of dwa; valid: temperature"):
        build_weighting("dwa", TASKS, "p", temp=2.0)
    with pytest.raises(ValueError, match="not an option of pcgrad_aux; valid: none"):
        build_weighting("pcgrad_aux", TASKS, "p", seed=1)
    with pytest.raises(ValueError, match="granularity"):
        build_weighting("gcs", TASKS, "p", granularity="layer")
    with pytest.raises(ValueError, match="not among"):
        build_weighting("equal", TASKS, "q")
    assert WEIGHTING_NAMES == ("equal", "uncertainty", "dwa", "gradnorm", "pcgrad", "pcgrad_aux", "cagrad", "gcs")


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
