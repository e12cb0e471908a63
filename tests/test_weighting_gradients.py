"""Gradient weightings (PCGrad, PCGrad on the auxiliaries, CAGrad, GCS) and every method's backward contract against
hand-computed cases: private parameters keep their ordinary gradients, unreached shared parameters stay untouched.

The losses are linear in a shared vector ``w`` (``L_t = w . g_t``, ``weighting_cases``), so the per-task gradients
on the shared parameters are exactly the chosen ``g_t`` and expected ``.grad`` values are exact.
"""

import math

import pytest
import torch
from weighting_cases import BASE, GRADIENT_METHODS, TASKS, TWO_TASK_OPTIONS, linear_losses, run

from auxnas.weighting import WEIGHTING_NAMES, build_weighting
from auxnas.weighting.surgery import CAGrad, cagrad_weights


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


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_return_norms_and_cosines_with_the_primary(name):
    shared = torch.nn.Parameter(torch.zeros(2))
    losses = {t: shared @ torch.tensor(g) for t, g in zip("pab", ([1.0, 0.0], [-1.0, 1.0], [0.0, 3.0]))}
    stats = build_weighting(name, list("pab"), "p").backward(losses, [shared], {"p": 1.0, "a": 2.0, "b": 1.0})
    assert list(stats) == ["grad_norm", "cos_primary"]
    assert stats["grad_norm"] == pytest.approx({"p": 1.0, "a": 2 * math.sqrt(2), "b": 3.0})  # of b_t L_t
    assert stats["cos_primary"] == pytest.approx({"a": -1 / math.sqrt(2), "b": 0.0})
