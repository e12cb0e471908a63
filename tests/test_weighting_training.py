"""Weightings in training: a task without a loss in a step takes no part in it, a method's state round-trips through
a weights-only checkpoint, and every weighting trains and reports its statistics in ``fit`` with the real methods."""

import io
import math

import pytest
import torch
from weighting_cases import BASE, TWO_TASK_OPTIONS

from auxnas.weighting import WEIGHTING_NAMES, WEIGHTINGS, GradientWeighting, build_weighting


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
    method = build_weighting(name, list("pab"), "p", **TWO_TASK_OPTIONS.get(name, {}))
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
    stepped = [p for group in method.optimizer_groups() for p in group["params"]]
    grads = [shared.grad.clone(), *[p.grad.clone() for p in stepped]]
    optimizer.step()
    return stats, grads, {t: float(v.detach()) for t, v in losses.items()}


@pytest.mark.parametrize("name", [*WEIGHTING_NAMES, "dwa+pcgrad"])  # a composed one: both parts' state
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
    from auxnas.storage import load_checkpoint
    from auxnas.train import fit

    cfg = config_from_dict({
        "out_dir": str(tmp_path / f"run-{method}-{name}"),
        "data": {"image_size": 32, "num_train": 16, "num_test": 4, "val_fraction": 0.25, "batch_size": 4},
        "tasks": {"primary": "normal", "aux": ["seg", "depth"]},
        "model": {"backbone": "tiny_resnet"},
        "method": {"name": method},
        "weighting": {"name": name, "options": {"every": 1} if name == "auxilearn" else {}},  # a meta step a step
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
    assert all(math.isfinite(h.train_loss) for h in history)
    for record in history:
        stats = record.weighting
        if name in GRADIENT_NAMES:
            assert set(stats) == {"grad_norm", "cos_primary"} and set(stats["cos_primary"]) == aux
            assert all(-1.0 <= v <= 1.0 for v in stats["cos_primary"].values())
        else:
            own = {"gradnorm": {"grad_norm"}, "auto_lambda": {"meta_updated"}, "auxilearn": {"meta_updated"}}.get(
                name, set())
            assert set(stats["weight"]) == tasks and set(stats) == {"weight", *own}
        # a gradient may be 0 at first (zero-initialised heads and fusion ops), not after three updates
        assert all(v >= 0 for v in stats.get("grad_norm", {}).values())
    if name in GRADIENT_NAMES or name == "gradnorm":
        assert history[-1].weighting["grad_norm"]["normal"] > 0
    if name in ("uncertainty", "dwa", "gradnorm"):  # weights learnt or adapted from the loss history
        assert any(v != 1.0 for v in history[-1].weighting["weight"].values())
    if name in ("auto_lambda", "auxilearn"):  # learnt from the primary's loss on the meta batches, one update a step
        assert all(v not in (0.1, 1.0) for v in history[-1].weighting["weight"].values())
        assert all(r.weighting["meta_updated"] == {"normal": 1.0} for r in history)
    if name == "equal":
        _EQUAL_WEIGHTS[method] = weights
    else:
        equal = _EQUAL_WEIGHTS.get(method) or trained_weights(tmp_path, method, "equal")[1]
        _EQUAL_WEIGHTS[method] = equal
        assert any(not torch.equal(weights[k], equal[k]) for k in weights)
