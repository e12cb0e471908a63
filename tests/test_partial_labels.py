"""Partially labelled data: label subsets, masked losses and metrics, every method and weighting, oversampling."""

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch

from auxnas.config import ConfigError, config_from_dict, replace
from auxnas.config.validate import validate
from auxnas.data import PartiallyLabelled, build_splits, labelled_subset
from auxnas.engine.evaluation import evaluate_model
from auxnas.engine.loaders import make_loader, oversampled
from auxnas.engine.state import build_train_state
from auxnas.engine.steps import architecture_step, task_losses
from auxnas.methods import LinkedBranches, build_model
from auxnas.storage import load_checkpoint
from auxnas.tasks import build_task, build_tasks
from auxnas.train import Callback, fit
from auxnas.weighting import WEIGHTING_NAMES, build_weighting

NUM_CLASSES = {"seg": 9, "object": 6, "scene": 5}


def config(tmp_path, method="aux_head", aux=("seg",), weighting="equal", **data):
    return config_from_dict({
        "out_dir": str(tmp_path / "run"),
        "data": {"image_size": 32, "num_train": 40, "num_test": 8, "val_fraction": 0.2, "batch_size": 4, **data},
        "tasks": {"primary": "normal", "aux": list(aux)},
        "model": {"backbone": "tiny_vgg" if method.startswith("adashare") else "tiny_resnet"},
        "method": {"name": method},
        "weighting": {"name": weighting},
        "train": {"epochs": 2, "max_steps_per_epoch": 2},
    })


def test_labelled_subsets_are_deterministic_nested_and_sized():
    small, large = labelled_subset(200, 0.1, "normal", 0), labelled_subset(200, 0.3, "normal", 0)
    assert small.sum() == 20 and large.sum() == 60
    assert np.all(large[small])  # the 10 % subset lies inside the 30 % one
    assert np.array_equal(small, labelled_subset(200, 0.1, "normal", 0))
    assert not np.array_equal(small, labelled_subset(200, 0.1, "seg", 0))  # each task its own subset
    assert not np.array_equal(small, labelled_subset(200, 0.1, "normal", 1))
    assert labelled_subset(5, 0.01, "normal", 0).sum() == 1 and labelled_subset(5, 0.0, "seg", 0).sum() == 0


def test_only_training_images_lose_labels(tmp_path):
    cfg = config(tmp_path, labelled_fraction={"normal": 0.25})
    splits = build_splits(cfg.data, progress=False)
    assert isinstance(splits.train, PartiallyLabelled)
    assert splits.train_label_counts(["normal", "seg"]) == {"normal": 8, "seg": 32}
    sample = splits.train[0]
    assert set(sample["labelled"]) == {"normal"}
    assert "labelled" not in splits.val[0] and "labelled" not in splits.test[0]


@pytest.mark.parametrize("fractions", [{"normal": 0.0}, {"normal": 1.5}, {"nope": 0.5}])
def test_bad_fractions_are_refused(tmp_path, fractions):
    with pytest.raises(ConfigError, match="data.labelled_fraction"):
        validate(config(tmp_path, labelled_fraction=fractions))


def test_masked_loss_uses_only_labelled_images():
    task = build_task("normal", NUM_CLASSES)
    pred = torch.randn(4, 3, 8, 8, requires_grad=True)
    target = torch.nn.functional.normalize(torch.randn(4, 3, 8, 8), dim=1)
    mask = torch.tensor([True, False, True, False])
    loss = task.batch_loss(pred, {"normal": target, "labelled": {"normal": mask}})
    assert torch.allclose(loss, task.loss(pred[mask], target[mask]))
    (grad,) = torch.autograd.grad(loss, pred)
    assert grad[~mask].abs().sum() == 0 and grad[mask].abs().sum() > 0  # no gradient from unlabelled images
    assert task.batch_loss(pred, {"normal": target, "labelled": {"normal": torch.zeros(4, dtype=torch.bool)}}) is None
    assert torch.allclose(task.batch_loss(pred, {"normal": target}), task.loss(pred, target))


def test_metrics_pool_only_labelled_images_and_count_them(tmp_path):
    cfg = config(tmp_path, method="single", aux=(), labelled_fraction={"normal": 0.25}, augment=False)
    splits = build_splits(cfg.data, progress=False)
    model = build_model(cfg, build_tasks(cfg, splits.num_classes))
    loader = make_loader(splits.train, 4, False, 0)
    metrics = evaluate_model(model, loader, torch.device("cpu"))["normal"]
    assert metrics["num_images"] == 8
    labelled_only = torch.utils.data.Subset(splits.train, np.flatnonzero(splits.train.labelled["normal"]).tolist())
    expected = evaluate_model(model, make_loader(labelled_only, 4, False, 0), torch.device("cpu"))["normal"]
    assert metrics == pytest.approx(expected)


def batch_with_primary_labels(cfg, labelled: list[bool]):
    splits = build_splits(cfg.data, progress=False)
    batch = next(iter(make_loader(splits.val, len(labelled), False, 0)))
    batch["labelled"] = {"normal": torch.tensor(labelled)}
    return splits, batch


METHODS = ["single", "aux_head", "aux_module", "adashare", "adashare_aux", "aux_g", "aux_nas"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("primary_labels", ["some", "none"])
def test_every_method_trains_on_a_batch_with_missing_primary_labels(tmp_path, method, primary_labels):
    cfg = config(tmp_path, method=method, aux=() if method == "single" else ("seg",))
    flags = [True, False, True, False] if primary_labels == "some" else [False] * 4
    splits, batch = batch_with_primary_labels(cfg, flags)
    model = build_model(cfg, build_tasks(cfg, splits.num_classes)).train()
    weights = dict.fromkeys(model.tasks, 1.0)
    losses, extra = task_losses(model, batch, weights)
    assert ("normal" in losses) == (primary_labels == "some")
    assert all(torch.isfinite(v) for v in losses.values())
    weighting = build_weighting("equal", list(model.tasks), "normal")
    if losses or extra is not None:
        weighting.backward(losses, model.shared_parameters(), weights, model.last_shared_layer(), extra=extra)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    head = model.primary_branch.head if isinstance(model, LinkedBranches) else model.branch.head
    head_grads = [p.grad for p in head.parameters()]
    touched = any(g is not None and g.abs().sum() > 0 for g in head_grads)
    assert touched == (primary_labels == "some")  # no spurious gradient into the primary head
    if model.architecture_parameters():
        state = build_train_state(cfg, model, torch.device("cpu"), total_steps=10)
        loss = architecture_step(state, state.parallel.batch(batch, model.tasks), progress=0.9)
        assert loss is None or math.isfinite(loss)


@pytest.mark.parametrize("name", WEIGHTING_NAMES)
@pytest.mark.parametrize("primary_labels", ["some", "none"])
def test_every_weighting_handles_missing_primary_labels(tmp_path, name, primary_labels):
    cfg = config(tmp_path, method="aux_head", aux=("seg", "depth"), weighting=name)
    flags = [True, False, True, False] if primary_labels == "some" else [False] * 4
    splits, batch = batch_with_primary_labels(cfg, flags)
    model = build_model(cfg, build_tasks(cfg, splits.num_classes)).train()
    weights = dict.fromkeys(model.tasks, 1.0)
    weighting = build_weighting(name, list(model.tasks), "normal")
    for _ in range(3):  # several steps, so that stateful methods (GradNorm, DWA) see the task come and go
        model.zero_grad(set_to_none=True)
        losses, _ = task_losses(model, batch, weights)
        stats = weighting.backward(losses, model.shared_parameters(), weights, model.last_shared_layer())
        weighting.end_epoch({t: float(v.detach()) for t, v in losses.items()})
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        for values in stats.values():
            assert all(math.isfinite(v) for v in values.values())
            if primary_labels == "none":
                assert set(values) <= {"seg", "depth"}
    primary_head = [p.grad for p in model.branch.head.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in primary_head) == (primary_labels == "some")


def test_oversampling_draws_every_primary_label_every_epoch():
    has_label = np.zeros(100, dtype=bool)
    has_label[:10] = True
    draws = oversampled(list(range(100)), has_label, 0.5, torch.Generator().manual_seed(0))
    assert len(draws) == 100
    assert sum(has_label[d] for d in draws) == 50
    assert set(range(10)) <= set(draws)
    assert len(set(draws) - set(range(10))) == 50  # the other draws are distinct unlabelled images
    assert sorted(oversampled(list(range(100)), has_label, 0.05, torch.Generator())) == list(range(100))


def test_fit_with_partial_labels_reports_label_counts_and_oversamples(tmp_path):
    cfg = config(tmp_path, method="aux_nas", labelled_fraction={"normal": 0.1}, oversample_primary=0.5)
    result = fit(replace(cfg, train={"max_steps_per_epoch": None}), progress=False)
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics["train_labels"] == {"normal": 3, "seg": 32} and metrics["train_images"] == 32
    assert metrics["test_best"]["normal"]["num_images"] == 8  # test images carry every label
    assert all(math.isfinite(h.train_task_losses["normal"]) for h in result.history)


def test_random_targets_replace_training_labels_only(tmp_path):
    cfg = config(tmp_path, random_targets=["seg", "scene"], augment=False)
    cfg = replace(cfg, tasks={"aux": ["seg", "scene"]})
    splits = build_splits(cfg.data, progress=False)
    clean = build_splits(dataclasses.replace(cfg.data, random_targets=[]), progress=False)
    noisy, real = splits.train[3], clean.train[3]
    assert torch.equal(noisy["normal"], real["normal"]) and torch.equal(noisy["image"], real["image"])
    assert noisy["seg"].shape == real["seg"].shape and noisy["seg"].dtype == real["seg"].dtype
    assert (noisy["seg"] != real["seg"]).float().mean() > 0.5
    assert 0 <= int(noisy["seg"].min()) and int(noisy["seg"].max()) < NUM_CLASSES["seg"]
    assert torch.equal(noisy["seg"], splits.train[3]["seg"])  # fixed per image, across epochs
    assert not torch.equal(noisy["seg"], splits.train[4]["seg"])
    assert torch.equal(splits.val[0]["seg"], clean.val[0]["seg"])  # held-out labels stay real
    with pytest.raises(ConfigError, match="primary task 'normal' must keep its real targets"):
        config(tmp_path, random_targets=["normal"])


def test_layout_takes_partial_labels_and_random_targets(tmp_path):
    cfg = config(tmp_path, aux=("layout",), labelled_fraction={"layout": 0.25}, random_targets=["layout"],
                 augment=False)
    splits = build_splits(cfg.data, progress=False)
    assert splits.num_classes["layout"] == 4
    assert splits.train_label_counts(["layout", "normal"]) == {"layout": 8, "normal": 32}
    clean = build_splits(dataclasses.replace(cfg.data, random_targets=[], labelled_fraction={}), progress=False)
    noisy, real = splits.train[3], clean.train[3]
    assert noisy["layout"].dtype == real["layout"].dtype == torch.int64
    assert (noisy["layout"] != real["layout"]).float().mean() > 0.5 and int(noisy["layout"].max()) < 4
    assert torch.equal(splits.val[0]["layout"], clean.val[0]["layout"])


class RecordUpdates(Callback):
    """The step index and the learning rate of every network update (a batch without labels makes none)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.lrs: list[float] = []

    def on_losses(self, state, losses) -> None:
        self.steps.append(state.step)
        self.lrs.append(state.optimizer.param_groups[0]["lr"])


def test_a_batch_without_labels_advances_the_schedule_without_a_warning(tmp_path):
    """The schedule counts batches: the lr of the update on batch k is the schedule's k-th value, also when
    earlier batches (the first among them) had no label and made no update; torch's ordering warning stays away."""
    cfg = config(tmp_path, method="single", aux=(), labelled_fraction={"normal": 0.1})
    cfg = replace(cfg, seed=3,  # its first batch carries no label
                  train={"epochs": 1, "max_steps_per_epoch": None, "schedule": "poly", "poly_power": 0.9})
    record = RecordUpdates()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(cfg, progress=False, callbacks=[record])
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    state = load_checkpoint(result.out_dir / "last.pt")["state"]
    total, updated = state["step"], record.steps
    assert total == 8 and updated[0] > 0 and 0 < len(updated) < total  # the case that warned
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {float(len(updated))}  # Adam's count
    assert record.lrs == pytest.approx([cfg.train.lr * (1 - k / total) ** 0.9 for k in updated])
