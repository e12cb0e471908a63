"""Weighting methods against hand-computed cases.

The losses are linear in a shared vector ``w`` (``L_t = w . g_t``), so the per-task gradients
on the shared parameters are exactly the chosen ``g_t`` and expected ``.grad`` values are exact.
"""

import io
import math

import pytest
import torch

from auxnas.validate import validate
from auxnas.weighting import TASK_KINDS, WEIGHTING_NAMES, WEIGHTINGS, GradientWeighting, build_weighting, task_kind
from auxnas.weighting.base import LossWeighting
from auxnas.weighting.surgery import CAGrad, cagrad_weights

TASKS = ["p", "a"]
BASE = {"p": 1.0, "a": 1.0}
GRADIENT_METHODS = ["pcgrad", "pcgrad_aux", "cagrad", "gcs"]
#: options that make a method non-degenerate with one auxiliary task
TWO_TASK_OPTIONS = {"dwa": {"fix_primary": False}}


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
    method = build_weighting(name, TASKS, "p", **TWO_TASK_OPTIONS.get(name, {}))
    method.backward(model.losses(), list(model.trunk.parameters()), base, last_shared_layer=model.trunk[2].weight)
    for n, p in model.named_parameters():
        if n.startswith("heads") or n == "primary_scale":  # every method's weights are 1 at the first step
            assert torch.allclose(p.grad, expected[n]), n
    assert model.unused.grad is None


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_without_shared_parameters_are_the_plain_sum(name):
    model, base = TwoHeads(), {"p": 0.5, "a": 2.0}
    expected = reference_grads(model, base)
    model.zero_grad(set_to_none=True)
    assert build_weighting(name, TASKS, "p").backward(model.losses(), [], base) == {}  # no statistics either
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
    shared, _, losses = linear_losses([1.0, 0.0], [-1.0, 1.0])
    CAGrad(TASKS, "p", c=0.0).backward(losses, [shared], BASE)  # build_weighting refuses c = 0: it is the plain sum
    assert torch.allclose(shared.grad, torch.tensor([0.0, 1.0]))


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
    stats = dwa.backward(losses, [shared], {"p": 1.0, "a": 1.0, "b": 0.5})
    assert torch.allclose(shared.grad, torch.tensor([1.0, wa + 1.5 * (2 - wa)]))
    assert stats["weight"] == pytest.approx({"p": 1.0, "a": wa, "b": 2 - wa})  # the method's factor, not b_t


def test_uncertainty_objective_and_gradient():
    shared, _, losses = linear_losses([1.0], [2.0])
    method = build_weighting("uncertainty", TASKS, "p")
    assert [name for name, _ in method.named_parameters()] == ["log_vars.a"]  # primary kept at weight 1
    with torch.no_grad():
        method.log_vars["a"].fill_(math.log(2.0))
    losses = {"p": losses["p"] + 3.0, "a": losses["a"] + 4.0}  # L_p = 3, L_a = 4 at zero
    stats = method.backward(losses, [shared], BASE)
    assert list(stats) == ["weight"] and stats["weight"] == pytest.approx({"p": 1.0, "a": 0.5})
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


def adam_displacement(grads, lr, betas=(0.9, 0.999), eps=1e-8):
    """What Adam subtracts from a scalar at its last step, given its gradient at every step so far."""
    m = v = 0.0
    for g in grads:
        m, v = betas[0] * m + (1 - betas[0]) * g, betas[1] * v + (1 - betas[1]) * g * g
    k = len(grads)
    return lr * (m / (1 - betas[0] ** k)) / (math.sqrt(v / (1 - betas[1] ** k)) + eps)


def test_gradnorm_hand_computed_adam_steps():
    # W = (1, 1). Step 1: L_p = W . (2, 0) = 2, L_a = W . (0, 1) = 1: norms (2, 1), rates (1, 1),
    # G = (2, 1), target mean(G) = 1.5, d/dw = sign(G - 1.5) * norm = (2, -1); Adam's first step is lr * sign:
    # w = (0.9, 1.1), already summing to 2.
    # Step 2: L_p = W . (1, 0) = 1, L_a = 1: norms (1, 1), rates (1/2, 1) / 0.75, G = (0.9, 1.1), mean 1,
    # target = r^1.5 = (0.544, 1.540): d/dw = (1, -1); Adam's moments remember step 1's (2, -1).
    lr = 0.1
    d1 = [adam_displacement([2.0], lr), adam_displacement([-1.0], lr)]
    assert d1 == pytest.approx([lr, -lr])
    w1 = [1 - d1[0], 1 - d1[1]]
    w2 = [w1[0] - adam_displacement([2.0, 1.0], lr), w1[1] - adam_displacement([-1.0, -1.0], lr)]
    w2 = [w * 2 / sum(w2) for w in w2]
    for fix_primary in (False, True):
        method = build_weighting("gradnorm", TASKS, "p", lr=lr, fix_primary=fix_primary)
        assert list(method.parameters()) == [] and method.optimizer_groups() == []  # not the network optimiser's
        shared = torch.nn.Parameter(torch.ones(2))
        stats = method.backward({"p": shared @ torch.tensor([2.0, 0.0]), "a": shared[1]}, [shared], BASE, shared)
        assert stats == {"weight": {"p": 1.0, "a": 1.0}, "grad_norm": {"p": 2.0, "a": 1.0}}
        assert torch.allclose(shared.grad, torch.tensor([2.0, 1.0]))  # the network step uses the weights before
        w = method.weights()
        expected = [1.0, w1[1] / w1[0]] if fix_primary else w1
        assert [float(w["p"]), float(w["a"])] == pytest.approx(expected, rel=1e-5)  # float32 bias corrections
        shared.grad = None
        stats = method.backward({"p": shared[0], "a": shared[1]}, [shared], BASE, shared)
        assert stats["weight"] == pytest.approx(dict(zip(TASKS, expected)), rel=1e-5)
        assert torch.allclose(shared.grad, torch.tensor(expected), rtol=1e-5)
        w = method.weights()
        expected = [1.0, w2[1] / w2[0]] if fix_primary else w2
        assert [float(w["p"]), float(w["a"])] == pytest.approx(expected, rel=1e-5)


def test_gradnorm_update_does_not_depend_on_the_loss_scale():
    def weights(scale):
        method = build_weighting("gradnorm", ["p", "a", "b"], "p", fix_primary=False)
        shared = torch.nn.Parameter(torch.ones(3))
        for step in range(4):
            g = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0 + step, 0.5], [0.2, 0.0, 0.1 * step]])
            losses = dict(zip("pab", scale * (g @ shared + torch.tensor([1.0, 2.0, 3.0 - step]))))
            method.backward(losses, [shared], dict.fromkeys("pab", 1.0), shared)
        return method.task_weights

    assert not torch.allclose(weights(1.0), torch.ones(3))
    assert torch.allclose(weights(1000.0), weights(1.0), rtol=1e-5)


def test_gradnorm_moves_every_weight_at_its_own_rate_whatever_the_gradient_size():
    method = build_weighting("gradnorm", ["p", "a", "b"], "p", lr=0.05, fix_primary=False)
    shared = torch.nn.Parameter(torch.ones(2))
    for _ in range(5):
        losses = {"p": shared.sum(), "a": 10 * shared[0], "b": 0.1 * shared[1]}
        method.backward(losses, [shared], dict.fromkeys("pab", 1.0), shared)
    w = method.weights()
    # G = w |g|: a (|g| = 10) is above the mean, p (1.41) and b (0.1) below; Adam moves each by about lr a step
    assert float(w["a"]) < 1.0 < float(w["b"]) == pytest.approx(float(w["p"]))
    assert float(w["p"] + w["a"] + w["b"]) == pytest.approx(3.0)


def test_gradnorm_raises_the_weight_of_the_slower_task():
    method = build_weighting("gradnorm", TASKS, "p", lr=0.05, fix_primary=True)
    shared = torch.nn.Parameter(torch.ones(1))
    for value in (2.0, 1.0, 0.8):  # equal gradient norms; the primary's loss falls, the auxiliary's does not
        method.backward({"p": 2 * shared.sum() + (value - 2), "a": 2 * shared.sum()}, [shared], BASE, shared)
    w = method.weights()
    assert float(w["p"]) == 1.0 and float(w["a"]) > 1.0


def test_gradnorm_uses_exactly_the_given_last_shared_layer():
    first, last = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))

    def step(layer):
        method = build_weighting("gradnorm", TASKS, "p", lr=0.1, fix_primary=False)
        losses = {"p": 2 * first.sum() + last.sum(), "a": first.sum() + 3 * last.sum()}
        stats = method.backward(losses, [first, last], BASE, last_shared_layer=layer)
        return stats["grad_norm"], method.weights()

    norms, w = step(first)  # norms (2, 1) as in the hand-computed step, although both tasks reach `last` too
    assert norms == pytest.approx({"p": 2.0, "a": 1.0}) and float(w["a"]) == pytest.approx(1.1, rel=1e-5)
    norms, w = step(last)  # norms (1, 3): the other way round
    assert norms == pytest.approx({"p": 1.0, "a": 3.0}) and float(w["a"]) == pytest.approx(0.9, rel=1e-5)


def test_gradnorm_needs_a_shared_layer_every_task_reaches():
    method = build_weighting("gradnorm", TASKS, "p")
    first, last = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="gradnorm needs a shared layer every task reaches.*None"):
        method.backward({"p": first.sum(), "a": first.sum()}, [first], BASE)
    with pytest.raises(ValueError, match="gradnorm needs a shared layer every task reaches: the loss of a does not"):
        method.backward({"p": 2 * first.sum() + last.sum(), "a": first.sum()}, [first, last], BASE, last)


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


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_return_norms_and_cosines_with_the_primary(name):
    shared = torch.nn.Parameter(torch.zeros(2))
    losses = {t: shared @ torch.tensor(g) for t, g in zip("pab", ([1.0, 0.0], [-1.0, 1.0], [0.0, 3.0]))}
    stats = build_weighting(name, list("pab"), "p").backward(losses, [shared], {"p": 1.0, "a": 2.0, "b": 1.0})
    assert list(stats) == ["grad_norm", "cos_primary"]
    assert stats["grad_norm"] == pytest.approx({"p": 1.0, "a": 2 * math.sqrt(2), "b": 3.0})  # of b_t L_t
    assert stats["cos_primary"] == pytest.approx({"a": -1 / math.sqrt(2), "b": 0.0})


def test_uncertainty_kendall_form_by_task_kind():
    # normal is the primary (weight 1); seg is classification: exp(-s) L + s / 2; depth regression: (exp(-s) L + s) / 2
    method = build_weighting("uncertainty", ["normal", "seg", "depth"], "normal", form="kendall")
    with torch.no_grad():
        method.log_vars["seg"].fill_(math.log(2.0))
        method.log_vars["depth"].fill_(math.log(4.0))
    x = torch.nn.Parameter(torch.zeros(1))
    losses = {"normal": x.sum() + 3.0, "seg": 2 * x.sum() + 4.0, "depth": 3 * x.sum() + 8.0}
    stats = method.backward(losses, [x], dict.fromkeys(losses, 1.0))
    assert stats["weight"] == pytest.approx({"normal": 1.0, "seg": 0.5, "depth": 0.5 * 0.25})
    assert float(x.grad) == pytest.approx(1.0 + 0.5 * 2.0 + 0.125 * 3.0)
    assert float(method.log_vars["seg"].grad) == pytest.approx(0.5 - 0.5 * 4.0)  # d/ds: 1/2 - exp(-s) L
    assert float(method.log_vars["depth"].grad) == pytest.approx(0.5 - 0.5 * 0.25 * 8.0)  # 1/2 - exp(-s) L / 2


def test_uncertainty_task_kinds():
    assert {task_kind(t) for t in TASK_KINDS} == {"regression", "classification"}
    from auxnas.tasks import TASK_NAMES

    assert set(TASK_KINDS) == set(TASK_NAMES)
    method = build_weighting("uncertainty", TASKS, "p", form="kendall", task_kinds={"a": "regression"})
    assert float(method.weights()["a"].detach()) == 0.5
    with pytest.raises(ValueError, match="no known kind for task 'a'"):
        build_weighting("uncertainty", TASKS, "p", form="kendall")
    with pytest.raises(ValueError, match="task 'p' needs a kind"):
        build_weighting("uncertainty", TASKS, "p", form="kendall", fix_primary=False, task_kinds={"a": "regression"})
    assert float(build_weighting("uncertainty", TASKS, "p").weights()["a"].detach()) == 1.0  # simple: no kinds
    with pytest.raises(ValueError, match="form must be 'simple' or 'kendall'"):
        build_weighting("uncertainty", TASKS, "p", form="paper")
    with pytest.raises(ValueError, match="valid: fix_primary, form, lr$"):  # task_kinds is not an option
        build_weighting("uncertainty", TASKS, "p", kinds={})


def test_uncertainty_log_variances_have_their_own_parameter_group():
    method = build_weighting("uncertainty", ["p", "a", "b"], "p")
    assert method.optimizer_groups() == [{"params": [method.log_vars["a"], method.log_vars["b"]], "weight_decay": 0.0}]
    method = build_weighting("uncertainty", TASKS, "p", fix_primary=False, lr=0.01)
    groups = method.optimizer_groups()
    assert groups == [{"params": list(method.log_vars.values()), "weight_decay": 0.0, "lr": 0.01}]
    net = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [net]}, *groups], lr=0.1, weight_decay=0.5)
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(0.1, 0.5), (0.01, 0.0)]
    with pytest.raises(ValueError, match="lr must be positive"):
        build_weighting("uncertainty", TASKS, "p", lr=0.0)
    for name in ("equal", "dwa", "gradnorm", *GRADIENT_METHODS):
        assert build_weighting(name, ["p", "a", "b"], "p").optimizer_groups() == [], name


@pytest.mark.parametrize("name, tasks, options, reason", [
    *[(n, ["p"], {}, "with a single task .* can only equal 'equal'") for n in WEIGHTING_NAMES if n != "equal"],
    ("dwa", ["p"], {"fix_primary": False}, "with a single task"),
    ("uncertainty", ["p"], {"fix_primary": False}, "with a single task only learns a rescaling of its loss"),
    ("dwa", TASKS, {}, "with fix_primary=true and one auxiliary task always gives weight 1 .*use fix_primary: false"),
    ("cagrad", TASKS, {"c": 0.0}, "with c=0 is the plain sum"),
])
def test_degenerate_configurations_are_refused(name, tasks, options, reason):
    with pytest.raises(ValueError, match=f"^weighting: {name} {reason}"):
        build_weighting(name, tasks, "p", **options)


def test_configurations_that_can_differ_from_equal_are_accepted():
    build_weighting("equal", ["p"], "p")  # never refused
    build_weighting("dwa", TASKS, "p", fix_primary=False)
    build_weighting("dwa", ["p", "a", "b"], "p")
    build_weighting("cagrad", TASKS, "p", c=0.1)
    for name in ("uncertainty", "gradnorm", *GRADIENT_METHODS):
        build_weighting(name, TASKS, "p")


def test_degenerate_configurations_are_config_errors():
    from auxnas.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match="dwa with fix_primary=true and one auxiliary task"):
        validate(config_from_dict({"tasks": {"primary": "normal", "aux": ["seg"]}, "method": {"name": "aux_head"},
                                   "weighting": {"name": "dwa"}}))


def three_task_losses(gradients_of, present):
    """Linear losses of the tasks in ``present`` on a shared vector; each task also reaches a private scalar."""
    shared = torch.nn.Parameter(torch.zeros(2))
    private = {t: torch.nn.Parameter(torch.zeros(())) for t in "pab"}
    losses = {t: shared @ torch.tensor(gradients_of[t]) + private[t] + 1.0 for t in present}
    return shared, private, losses


@pytest.mark.parametrize("name", WEIGHTING_NAMES)
def test_a_task_without_loss_takes_no_part_in_the_step(name):
    g = {"p": [1.0, 0.0], "a": [-1.0, 1.0], "b": [0.5, -2.0]}
    shared, private, losses = three_task_losses(g, "pa")
    method = build_weighting(name, list("pab"), "p")
    stats = method.backward(losses, [shared], dict.fromkeys("pab", 1.0), last_shared_layer=shared)
    assert all(set(values) <= {"p", "a"} for values in stats.values()) and stats
    assert private["b"].grad is None and float(private["a"].grad) == 1.0  # every weight is 1 at the first step
    reference, _, losses = three_task_losses(g, "pa")  # as if only p and a existed
    build_weighting(name, list("pa"), "p", **TWO_TASK_OPTIONS.get(name, {})).backward(
        losses, [reference], BASE, last_shared_layer=reference
    )
    assert torch.allclose(shared.grad, reference.grad)


@pytest.mark.parametrize("name", ["pcgrad_aux", "gcs"])
def test_primary_focused_surgery_without_a_primary_loss_sums_the_auxiliary_gradients(name):
    shared, _, losses = three_task_losses({"a": [1.0, 0.0], "b": [-1.0, 1.0]}, "ab")  # conflicting
    stats = build_weighting(name, list("pab"), "p").backward(losses, [shared], dict.fromkeys("pab", 1.0))
    assert torch.allclose(shared.grad, torch.tensor([0.0, 1.0]))
    assert stats["cos_primary"] == {} and set(stats["grad_norm"]) == {"a", "b"}


def test_uncertainty_leaves_the_log_variance_of_a_missing_task_alone():
    method = build_weighting("uncertainty", list("pab"), "p")
    shared, _, losses = three_task_losses({"p": [1.0, 0.0], "a": [0.0, 1.0]}, "pa")
    method.backward(losses, [shared], dict.fromkeys("pab", 1.0))
    assert method.log_vars["a"].grad is not None and method.log_vars["b"].grad is None


def test_gradnorm_updates_only_the_tasks_present():
    method = build_weighting("gradnorm", list("pab"), "p", lr=0.1, fix_primary=False)
    g = {"p": [2.0, 0.0], "a": [0.0, 1.0], "b": [1.0, 1.0]}
    shared, _, losses = three_task_losses(g, "pa")
    method.backward(losses, [shared], dict.fromkeys("pab", 1.0), shared)
    # p and a step as in the hand-computed case; b is left alone
    assert method.task_weights.tolist() == pytest.approx([0.9, 1.1, 1.0], rel=1e-5)
    assert method.steps.tolist() == [1, 1, 0] and float(method.initial_losses[2]) == 0.0
    shared, _, losses = three_task_losses(g, "pab")
    method.backward(losses, [shared], dict.fromkeys("pab", 1.0), shared)
    assert method.steps.tolist() == [2, 2, 1] and float(method.initial_losses[2]) == 1.0  # b's first loss
    assert float(method.task_weights.sum()) == pytest.approx(3.0)


def test_dwa_keeps_the_last_loss_of_a_task_missing_from_an_epoch():
    dwa = build_weighting("dwa", list("pab"), "p", fix_primary=False)
    dwa.end_epoch({"p": 1.0, "a": 1.0})  # b never seen: ratio 1
    dwa.end_epoch({"p": 0.5, "a": 2.0})
    ratios = {"p": 0.5, "a": 2.0, "b": 1.0}
    z = sum(math.exp(r / 2) for r in ratios.values())
    assert {t: float(w) for t, w in dwa.weights().items()} == pytest.approx(
        {t: 3 * math.exp(r / 2) / z for t, r in ratios.items()}
    )
    dwa.end_epoch({"p": 0.5, "a": 2.0, "b": 4.0})
    dwa.end_epoch({"p": 0.5, "a": 2.0})  # b keeps 4: ratio 1
    assert float(dwa.weights()["b"]) == pytest.approx(1.0)


STATE_TASKS = ["p", "a", "b"]
TARGETS = torch.tensor([[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0], [0.0, -1.0, -1.0]])  # conflicting pulls on `shared`


def training_step(method, shared, step):
    """One step of SGD on ``shared`` and the method's parameters; returns what it produced."""
    optimizer = torch.optim.SGD([{"params": [shared]}, *method.optimizer_groups()], lr=0.1)
    optimizer.zero_grad(set_to_none=True)
    scale = torch.tensor([1.0, 1.0 + step, 2.0 - 0.3 * step])
    losses = {t: s * ((shared - g) ** 2).sum() for t, s, g in zip(STATE_TASKS, scale, TARGETS)}
    stats = method.backward(losses, [shared], dict.fromkeys(STATE_TASKS, 1.0), last_shared_layer=shared)
    grads = [shared.grad.clone(), *[p.grad.clone() for p in method.parameters()]]
    optimizer.step()
    return stats, grads, {t: float(v.detach()) for t, v in losses.items()}


@pytest.mark.parametrize("name", WEIGHTING_NAMES)
def test_state_round_trips_through_a_weights_only_checkpoint(name):
    method = build_weighting(name, STATE_TASKS, "p", **({"fix_primary": False} if name == "uncertainty" else {}))
    shared = torch.nn.Parameter(torch.tensor([0.2, -0.3, 0.1]))
    step = 0
    for _ in range(3):  # epochs
        for _ in range(2):
            _, _, losses = training_step(method, shared, step)
            step += 1
        method.end_epoch(losses)
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    fresh = build_weighting(name, STATE_TASKS, "p", **({"fix_primary": False} if name == "uncertainty" else {}))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    fresh_shared = torch.nn.Parameter(shared.detach().clone())
    for _ in range(2):
        expected_stats, expected_grads, _ = training_step(method, shared, step)
        stats, grads, _ = training_step(fresh, fresh_shared, step)
        step += 1
        assert stats == expected_stats
        assert all(torch.equal(g, e) for g, e in zip(grads, expected_grads))
    if name in ("uncertainty", "dwa", "gradnorm"):
        assert any(v != 1.0 for v in stats["weight"].values())  # the state mattered


#: weightings that combine per-task gradients (they report gradient norms and cosines, no weights)
GRADIENT_NAMES = [name for name in WEIGHTING_NAMES if issubclass(WEIGHTINGS[name], GradientWeighting)]
#: method -> the final weights under ``equal`` (computed once)
_EQUAL_WEIGHTS: dict[str, dict[str, torch.Tensor]] = {}


def trained_weights(tmp_path, method: str, name: str) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Three one-step epochs of ``method`` under weighting ``name``: the history and the final weights."""
    from auxnas.config import config_from_dict
    from auxnas.io import load_checkpoint
    from auxnas.train import fit

    cfg = config_from_dict({
        "out_dir": str(tmp_path / f"run-{method}-{name}"),
        "data": {"image_size": 32, "num_train": 16, "num_test": 4, "val_fraction": 0.25, "batch_size": 4},
        "tasks": {"primary": "normal", "aux": ["seg", "depth"]},
        "model": {"backbone": "tiny_resnet"},
        "method": {"name": method},
        "weighting": {"name": name},
        "train": {"epochs": 3, "max_steps_per_epoch": 1},
    })
    result = fit(cfg, progress=False)
    assert math.isfinite(result.test_best["normal"]["mean_angle"])
    return result.history, load_checkpoint(result.out_dir / "last.pt")["model"]


@pytest.mark.parametrize("name", WEIGHTING_NAMES)
@pytest.mark.parametrize("method", ["aux_head", "aux_nas"])
def test_every_weighting_trains_with_real_methods(tmp_path, name, method):
    """In ``fit``, every weighting reports its statistics for every task each epoch, and steers the updates: the
    weights end elsewhere than under ``equal`` from the same seed."""
    history, weights = trained_weights(tmp_path, method, name)
    tasks, aux = {"normal", "seg", "depth"}, {"seg", "depth"}
    assert all(math.isfinite(h["train_loss"]) for h in history)
    for record in history:
        stats = record["weighting"]
        if name in GRADIENT_NAMES:
            assert set(stats) == {"grad_norm", "cos_primary"} and set(stats["cos_primary"]) == aux
            assert all(-1.0 <= v <= 1.0 for v in stats["cos_primary"].values())
        else:
            assert set(stats["weight"]) == tasks and set(stats) == {"weight", *(("grad_norm",) if name == "gradnorm"
                                                                               else ())}
        # a gradient may be 0 at first (zero-initialised heads and fusion ops), not after three updates
        assert all(v >= 0 for v in stats.get("grad_norm", {}).values())
    if name in GRADIENT_NAMES or name == "gradnorm":
        assert history[-1]["weighting"]["grad_norm"]["normal"] > 0
    if name in ("uncertainty", "dwa", "gradnorm"):  # weights learnt or adapted from the loss history
        assert any(v != 1.0 for v in history[-1]["weighting"]["weight"].values())
    if name == "equal":
        _EQUAL_WEIGHTS[method] = weights
    else:
        equal = _EQUAL_WEIGHTS.get(method) or trained_weights(tmp_path, method, "equal")[1]
        _EQUAL_WEIGHTS[method] = equal
        assert any(not torch.equal(weights[k], equal[k]) for k in weights)


def test_a_loss_weighting_that_overrides_backward_must_say_it_needs_task_gradients():
    """Data-parallel training back-propagates a loss weighting's objective() and would skip its own backward."""
    with pytest.raises(TypeError, match="needs_task_gradients = True"):
        type("OwnBackward", (LossWeighting,), {"backward": lambda self, *args, **kwargs: {}})
    declared = type("OwnBackward", (LossWeighting,), {"backward": lambda self, *args, **kwargs: {},
                                                      "needs_task_gradients": True})
    assert declared.needs_task_gradients
    assert not type("OwnWeights", (LossWeighting,), {"weights": lambda self: {}}).needs_task_gradients
