"""Tasks, their losses and metrics against hand-computed values; Δm and its convention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from auxnas.delta import delta_m, task_delta_metrics
from auxnas.tasks import (
    TASK_NAMES,
    Classification,
    Depth,
    Segmentation,
    SurfaceNormals,
    build_task,
)

NUM_CLASSES = {"seg": 13, "object": 10, "scene": 7, "layout": 4}


def logits_for(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``B x H x W`` labels -> ``B x C x H x W`` logits whose arg-max is ``labels``."""
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float() * 10


# --- segmentation -----------------------------------------------------------------------------------------------

SEG_TARGET = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
SEG_PRED = torch.tensor([[[0, 1, 1], [1, 0, 2]]])
# confusion (label x pred): class 0 -> [1, 1, 0], class 1 -> [0, 2, 0], class 2 -> [1, 0, 0]
# IoU: 1 / (2 + 2 - 1), 2 / (2 + 3 - 2), 0 / (1 + 0 - 0) -> mIoU = 1/3; accuracy 3 / 5


@pytest.mark.parametrize("num_classes", [3, 4])  # class 3 never appears: its union is 0, so it is left out
def test_segmentation_confusion_metric(num_classes):
    metric = Segmentation(num_classes).new_metric()
    metric.update(logits_for(SEG_PRED, num_classes), SEG_TARGET)
    out = metric.compute()
    assert out["miou"] == pytest.approx(100 / 3)
    assert out["pixel_acc"] == pytest.approx(60.0)


def test_segmentation_pools_the_confusion_matrix():
    metric = Segmentation(3).new_metric()
    metric.update(logits_for(SEG_PRED, 3), SEG_TARGET)  # 3 of 5 correct
    one_pixel = torch.tensor([[[2, 255]]])
    metric.update(logits_for(torch.tensor([[[2, 0]]]), 3), one_pixel)  # 1 of 1 correct
    out = metric.compute()
    assert out["pixel_acc"] == pytest.approx(4 / 6 * 100)  # not the mean of 60 and 100
    # class 2 now: hits 1, union 2 + 1 - 1 = 2 -> IoU 1/2
    assert out["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3 * 100)


def test_segmentation_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="labels must lie"):
        Segmentation(3).new_metric().update(logits_for(SEG_PRED, 3), torch.tensor([[[0, 0, 1], [1, 7, 255]]]))


def test_segmentation_loss_ignores_255_and_is_differentiable():
    task = Segmentation(3)
    pred = torch.randn(1, 3, 2, 3, requires_grad=True)
    loss = task.loss(pred, SEG_TARGET)
    valid = SEG_TARGET != 255
    expected = F.cross_entropy(pred.permute(0, 2, 3, 1)[valid], SEG_TARGET[valid])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert pred.grad[0, :, 1, 2].abs().sum() == 0  # the ignored pixel gets no gradient
    assert pred.grad[0, :, 0, 0].abs().sum() > 0
    assert task.loss(logits_for(SEG_TARGET.clamp(max=2), 3) * 10, SEG_TARGET).item() < 1e-6


def test_segmentation_resizes_low_resolution_predictions():
    task = Segmentation(3)
    pred = logits_for(torch.ones(1, 1, 1, dtype=torch.long), 3)  # 1 x 1 prediction of class 1
    metric = task.new_metric()
    metric.update(pred, SEG_TARGET)
    assert metric.compute()["pixel_acc"] == pytest.approx(40.0)  # 2 of the 5 labelled pixels are class 1
    assert torch.isfinite(task.loss(pred, SEG_TARGET))


# --- surface normals --------------------------------------------------------------------------------------------


def normal_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels at 0, 90 and 45 degrees from the target, and one invalid pixel."""
    up = [0.0, 0.0, 1.0]
    target = torch.tensor([[up, up], [up, [0.0, 0.0, 0.0]]]).permute(2, 0, 1).unsqueeze(0)
    pred = torch.tensor([[[0.0, 0.0, 2.0], [1.0, 0.0, 0.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    return pred.permute(2, 0, 1).unsqueeze(0), target


def test_normals_metric_known_angles():
    pred, target = normal_batch()
    metric = SurfaceNormals().new_metric()
    metric.update(pred, target)
    out = metric.compute()
    assert out["mean_angle"] == pytest.approx(45.0)
    assert out["median_angle"] == pytest.approx(45.0, abs=0.005 + 1e-9)  # binned: within half a 0.01-degree bin
    assert out["rmse_angle"] == pytest.approx(math.sqrt((0 + 90**2 + 45**2) / 3))
    for name in ("within_11.25", "within_22.5", "within_30"):
        assert out[name] == pytest.approx(100 / 3)


def test_normals_median_and_mean_pool_all_pixels():
    pred, target = normal_batch()
    metric = SurfaceNormals().new_metric()
    metric.update(pred, target)  # 0, 90, 45
    sixty = torch.tensor([math.sin(math.radians(60)), 0.0, math.cos(math.radians(60))]).view(1, 3, 1, 1)
    metric.update(sixty, torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1))  # 60
    out = metric.compute()
    assert out["mean_angle"] == pytest.approx((0 + 90 + 45 + 60) / 4)  # per-batch means would give 52.5
    assert out["median_angle"] == pytest.approx((45 + 60) / 2, abs=0.005 + 1e-9)
    assert out["within_30"] == pytest.approx(25.0)


def test_normals_loss_and_postprocess():
    task = SurfaceNormals()
    pred, target = normal_batch()
    pred.requires_grad_(True)
    loss = task.loss(pred, target)
    assert loss.item() == pytest.approx((0 + 1 + (1 - math.cos(math.pi / 4))) / 3, rel=1e-6)
    loss.backward()
    assert pred.grad[0, :, 1, 1].abs().sum() == 0  # invalid pixel
    assert task.loss(target * 3, target).item() == pytest.approx(0.0, abs=1e-6)
    unit = task.postprocess(torch.randn(2, 3, 4, 4))
    assert torch.allclose(unit.norm(dim=1), torch.ones(2, 4, 4))


# --- depth / disparity ------------------------------------------------------------------------------------------

DEPTH_TARGET = torch.tensor([[[[2.0, 0.0], [4.0, 1.0]]]])
DEPTH_PRED = torch.tensor([[[[3.0, 100.0], [2.0, 1.0]]]])  # errors 1, (invalid), 2, 0


@pytest.mark.parametrize("name", ["depth", "disparity"])
def test_depth_metric_and_loss(name):
    task = Depth(name)
    metric = task.new_metric()
    metric.update(DEPTH_PRED, DEPTH_TARGET)
    out = metric.compute()
    assert out["abs_err"] == pytest.approx(1.0)
    assert out["rel_err"] == pytest.approx((1 / 2 + 2 / 4 + 0) / 3)
    pred = DEPTH_PRED.clone().requires_grad_(True)
    loss = task.loss(pred, DEPTH_TARGET)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert pred.grad[0, 0, 0, 1] == 0
    assert task.loss(DEPTH_TARGET, DEPTH_TARGET).item() == 0.0


def test_depth_pools_pixels_not_batch_means():
    metric = Depth().new_metric()
    metric.update(torch.tensor([[[[2.0, 7.0]]]]), torch.tensor([[[[1.0, 0.0]]]]))  # 1 valid pixel, error 1
    metric.update(torch.full((1, 1, 1, 3), 5.0), torch.full((1, 1, 1, 3), 5.0))  # 3 valid pixels, error 0
    out = metric.compute()
    assert out["abs_err"] == pytest.approx(0.25)  # mean of per-batch means would be 0.5
    assert out["rel_err"] == pytest.approx(0.25)


def test_depth_resizes_and_checks_shapes():
    task = Depth()
    metric = task.new_metric()
    metric.update(torch.full((1, 1, 1, 1), 3.0), DEPTH_TARGET)  # constant prediction, upsampled to 2 x 2
    assert metric.compute()["abs_err"] == pytest.approx((1 + 1 + 2) / 3)
    with pytest.raises(ValueError, match="target"):
        task.loss(DEPTH_PRED, DEPTH_TARGET[:, 0])


# --- classification ---------------------------------------------------------------------------------------------


def test_classification_topk():
    logits = torch.tensor([
        [9.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 0 ranked 1st: top-1 and top-5 hit
        [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],  # label 2 ranked 3rd: top-5 hit only
        [1.0, 2.0, 3.0, 4.0, 5.0, 0.0],  # label 5 ranked 6th: miss
    ])
    labels = torch.tensor([0, 2, 5])
    metric = Classification(6, "object").new_metric()
    metric.update(logits, labels)
    out = metric.compute()
    assert out["top1"] == pytest.approx(100 / 3)
    assert out["top5"] == pytest.approx(200 / 3)
    small = Classification(3, "scene").new_metric()  # k = min(5, 3) = 3: every label is within the top 3
    small.update(logits[:, :3], torch.tensor([0, 2, 1]))
    assert small.compute() == pytest.approx({"top1": 100 / 3, "top5": 100.0})


def test_classification_loss():
    task = Classification(4, "object")
    assert task.kind == "image"
    logits = torch.randn(5, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0])
    loss = task.loss(logits, labels)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels).item())
    loss.backward()
    assert logits.grad is not None
    assert task.loss(F.one_hot(labels, 4).float() * 50, labels).item() < 1e-6


# --- shared behaviour -------------------------------------------------------------------------------------------

EMPTY_CASES = [
    (Segmentation(3), torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 255)),
    (SurfaceNormals(), torch.randn(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)),
    (Depth(), torch.rand(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)),
]


@pytest.mark.parametrize(("task", "pred", "target"), EMPTY_CASES, ids=lambda x: getattr(x, "name", ""))
def test_empty_metric_is_nan_and_loss_is_zero(task, pred, target):
    fresh = task.new_metric().compute()
    assert set(fresh) == set(task.higher_is_better)
    assert all(math.isnan(v) for v in fresh.values())
    metric = task.new_metric()
    metric.update(pred, target)
    assert all(math.isnan(v) for v in metric.compute().values())
    pred = pred.clone().requires_grad_(True)
    loss = task.loss(pred, target)
    assert loss.item() == 0.0
    loss.backward()


def test_empty_classification_metric_is_nan():
    out = Classification(4, "scene").new_metric().compute()
    assert set(out) == {"top1", "top5"} and all(math.isnan(v) for v in out.values())


def test_build_task():
    tasks = {name: build_task(name, NUM_CLASSES) for name in TASK_NAMES}
    assert isinstance(tasks["seg"], Segmentation) and tasks["seg"].out_channels == 13
    assert isinstance(tasks["normal"], SurfaceNormals) and tasks["normal"].out_channels == 3
    assert isinstance(tasks["depth"], Depth) and isinstance(tasks["disparity"], Depth)
    assert tasks["object"].out_channels == 10 and tasks["scene"].out_channels == 7
    assert isinstance(tasks["layout"], Segmentation) and tasks["layout"].out_channels == 4
    for name, task in tasks.items():
        assert task.name == name
        assert task.main_metric in task.higher_is_better
    with pytest.raises(ValueError, match="valid tasks: seg, normal, depth, disparity, object, scene"):
        build_task("edges", NUM_CLASSES)
    with pytest.raises(ValueError, match="'scene'"):
        build_task("scene", {"seg": 13})
    with pytest.raises(ValueError, match=r"num_classes\['layout'\] is missing"):
        build_task("layout", {"seg": 13})


# --- delta_m ----------------------------------------------------------------------------------------------------

BASELINE = {"seg": {"miou": 50.0}, "depth": {"abs_err": 0.4}}
DIRECTIONS = {("seg", "miou"): True, ("depth", "abs_err"): False}


def test_delta_m_by_hand():
    result = {"seg": {"miou": 55.0}, "depth": {"abs_err": 0.5}}
    # seg: +(55 - 50) / 50 = +10 %; depth (lower is better): -(0.5 - 0.4) / 0.4 = -25 %
    assert delta_m(result, BASELINE, [("seg", "miou")], DIRECTIONS) == pytest.approx(10.0)
    assert delta_m(result, BASELINE, [("depth", "abs_err")], DIRECTIONS) == pytest.approx(-25.0)
    assert delta_m(result, BASELINE, list(DIRECTIONS), DIRECTIONS) == pytest.approx(-7.5)
    better_depth = {"seg": {"miou": 50.0}, "depth": {"abs_err": 0.3}}
    assert delta_m(better_depth, BASELINE, list(DIRECTIONS), DIRECTIONS) == pytest.approx(12.5)  # (0 + 25) / 2
    assert delta_m(BASELINE, BASELINE, list(DIRECTIONS), DIRECTIONS) == 0.0


def test_delta_m_errors():
    result = {"seg": {"miou": 55.0}, "depth": {"abs_err": 0.5}}
    with pytest.raises(ValueError, match="no task 'normal'"):
        delta_m(result, BASELINE, [("normal", "mean_angle")], {("normal", "mean_angle"): False})
    with pytest.raises(ValueError, match="no metric 'pixel_acc'"):
        delta_m(result, BASELINE, [("seg", "pixel_acc")], {("seg", "pixel_acc"): True})
    with pytest.raises(ValueError, match="higher_is_better"):
        delta_m(result, BASELINE, [("seg", "miou")], {})
    with pytest.raises(ValueError, match="is 0"):
        delta_m(result, {"seg": {"miou": 0.0}}, [("seg", "miou")], DIRECTIONS)
    with pytest.raises(ValueError, match="no \\(task, metric\\)"):
        delta_m(result, BASELINE, [], DIRECTIONS)


def test_task_delta_metrics():
    tasks = {name: build_task(name, NUM_CLASSES) for name in TASK_NAMES}
    assert task_delta_metrics(tasks["seg"]) == [("seg", "miou"), ("seg", "pixel_acc")]
    assert [m for _, m in task_delta_metrics(tasks["normal"])] == [
        "mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30"]
    assert task_delta_metrics(tasks["disparity"]) == [("disparity", "abs_err"), ("disparity", "rel_err")]
    assert task_delta_metrics(tasks["object"]) == [("object", "top1"), ("object", "top5")]
    for task in tasks.values():
        assert all(m in task.higher_is_better for _, m in task_delta_metrics(task))


def test_normals_median_is_binned_and_merges_exactly():
    """The median comes from 0.01-degree bins (within half a bin of the exact one); merging two halves gives what
    one metric of every pixel gives, the within-T shares and sums exactly."""
    torch.manual_seed(0)
    pred, target = torch.randn(4, 3, 8, 8), torch.nn.functional.normalize(torch.randn(4, 3, 8, 8), dim=1)
    whole, first, second = (SurfaceNormals().new_metric() for _ in range(3))
    whole.update(pred, target)
    first.update(pred[:2], target[:2])
    second.update(pred[2:], target[2:])
    first.merge(second)
    assert first.compute() == pytest.approx(whole.compute())
    ordered = whole.pixel_angles(pred, target).double().sort().values
    exact = float(ordered[127] + ordered[128]) / 2
    assert whole.compute()["median_angle"] == pytest.approx(exact, abs=0.005 + 1e-9)
