"""Loss weightings (DWA, uncertainty, GradNorm) against hand-computed cases: their weights from the loss history, the
learned log-variances and their parameter group, GradNorm's Adam steps on its task weights.

The losses are linear in a shared vector ``w`` (``L_t = w . g_t``, ``weighting_cases``), so the per-task gradients
on the shared parameters are exactly the chosen ``g_t`` and expected ``.grad`` values are exact.
"""

import math

import pytest
import torch
from weighting_cases import BASE, GRADIENT_METHODS, TASKS, linear_losses

from auxnas.weighting import TASK_KINDS, build_weighting, task_kind


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
