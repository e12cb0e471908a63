"""Loss options and metric conventions (docs/tasks.md): hand-computed values, validation, and the record of which
conventions produced every result file."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from auxnas.backbones import build_branch
from auxnas.cli import main
from auxnas.config import ConfigError, TasksConfig, config_from_dict
from auxnas.config.validate import validate
from auxnas.data.labels import random_target
from auxnas.export import export_primary, load_exported
from auxnas.methods import build_model
from auxnas.tasks import (
    LOSSES,
    TASK_NAMES,
    Classification,
    Depth,
    Segmentation,
    SurfaceNormals,
    build_task,
    build_tasks,
)
from auxnas.train import evaluate, fit

NUM_CLASSES = {"seg": 4, "object": 3, "scene": 3, "layout": 4}


def column(values: list[float]) -> torch.Tensor:
    """One ``1 x 1 x 1 x W`` image."""
    return torch.tensor(values).view(1, 1, 1, -1)


# --- config keys and validation ---------------------------------------------------------------------------------


def test_defaults_are_todays_behaviour():
    tasks = TasksConfig()
    assert (tasks.losses, tasks.normal_angle, tasks.miou_classes, tasks.align_corners) == ({}, "unit", "present", False)
    built = {name: build_task(name, NUM_CLASSES, **tasks.task_options(name)) for name in TASK_NAMES}
    assert {name: task.loss_name for name, task in built.items()} == {
        "seg": "cross_entropy", "normal": "cosine", "depth": "l1", "disparity": "l1", "object": "cross_entropy",
        "scene": "cross_entropy", "layout": "cross_entropy"}
    assert built["normal"].conventions() == {"loss": "cosine", "align_corners": False, "normal_angle": "unit",
                                             "nddr_grey_normals": "invalid"}
    assert built["seg"].conventions() == {"loss": "cross_entropy", "align_corners": False, "miou_classes": "present"}
    assert built["object"].conventions() == {"loss": "cross_entropy"}
    assert all(LOSSES[name][0] == task.loss_name for name, task in built.items())  # the default is listed first


def config(**tasks) -> dict:
    return {"method": {"name": "aux_head"}, "tasks": {"primary": "seg", "aux": ["normal"], **tasks}}


@pytest.mark.parametrize(("tasks", "message"), [
    ({"losses": {"edges": "l1"}}, "tasks.losses.edges: unknown task; valid tasks: seg, normal, depth"),
    ({"losses": {"depth": "huber"}}, "tasks.losses.depth: unknown loss 'huber' for task depth; valid: l1, mse, ssi"),
    ({"losses": {"seg": "ssi"}}, "tasks.losses.seg: unknown loss 'ssi' for task seg; valid: cross_entropy"),
    ({"losses": {"object": "mse"}}, "valid: cross_entropy, l2_soft"),
    ({"losses": {"normal": "mse"}}, "tasks.losses.normal: unknown loss 'mse' for task normal; valid: cosine, l1"),
    ({"normal_angle": "true"}, "tasks.normal_angle: expected one of 'unit', 'nddr_encoded'"),
    ({"miou_classes": "some"}, "tasks.miou_classes: expected one of 'present', 'all'"),
    ({"align_corners": "yes"}, "tasks.align_corners: expected true/false"),
    ({"nddr_grey_normals": "valid"}, "tasks.nddr_grey_normals: expected one of 'invalid', 'score'"),
    ({"nddr_grey_normals": "score"}, "tasks.nddr_grey_normals: score counts the grey normal pixels of "
                                     "data.name=nyuv2_nddr; synthetic has none (leave it at invalid)"),
])
def test_invalid_options_name_the_key_and_the_valid_values(tasks, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(config_from_dict(config(**tasks)))


def test_build_task_rejects_unknown_options():
    with pytest.raises(ValueError, match="depth: unknown loss 'cosine'; valid: l1, mse, ssi"):
        build_task("depth", NUM_CLASSES, loss="cosine")
    with pytest.raises(ValueError, match="normal_angle 'encoded'"):
        build_task("normal", NUM_CLASSES, normal_angle="encoded")
    with pytest.raises(ValueError, match="miou_classes 'every'"):
        build_task("seg", NUM_CLASSES, miou_classes="every")
    with pytest.raises(ValueError, match="nddr_grey_normals 'yes'; valid: invalid, score"):
        build_task("normal", NUM_CLASSES, nddr_grey_normals="yes")


def test_config_options_reach_every_task_and_head():
    cfg = config_from_dict({
        "tasks": {"primary": "normal", "aux": ["seg", "depth", "object"],
                  "losses": {"depth": "ssi", "object": "l2_soft"}, "normal_angle": "nddr_encoded",
                  "miou_classes": "all", "align_corners": True},
        "method": {"name": "aux_head"}, "data": {"image_size": 32},
    })
    tasks = build_tasks(cfg, NUM_CLASSES)
    assert tasks["depth"].loss_name == "ssi" and tasks["object"].loss_name == "l2_soft"
    assert tasks["normal"].normal_angle == "nddr_encoded" and tasks["seg"].miou_classes == "all"
    model = build_model(cfg, tasks)
    dense_heads = [m for m in model.modules() if type(m).__name__ == "MapFusion"]
    assert len(dense_heads) == 3 and all(h.align_corners for h in dense_heads)  # normal, seg and depth heads


# --- losses -----------------------------------------------------------------------------------------------------

# valid pixels p = 1, 2, 3 against g = 2, 4, 7 (the last pixel is invalid: g = 0)
P, G = column([1.0, 2.0, 3.0, 5.0]), column([2.0, 4.0, 7.0, 0.0])


def test_ssi_loss_by_hand():
    # normal equations: n = 3, sum p = 6, sum p^2 = 14, sum g = 13, sum pg = 31, det = 3 * 14 - 36 = 6
    # s = (3 * 31 - 6 * 13) / 6 = 2.5, t = (14 * 13 - 6 * 31) / 6 = -2/3
    # aligned 11/6, 13/3, 41/6 against 2, 4, 7: residuals 1/6, 1/3, 1/6 -> mean 2/9
    task = Depth("depth", loss="ssi")
    assert task.loss(P, G).item() == pytest.approx(2 / 9, rel=1e-6)
    assert Depth("depth").loss(P, G).item() == pytest.approx(7 / 3, rel=1e-6)  # l1, the default
    assert task.loss(3 * P + 5, G).item() == pytest.approx(2 / 9, rel=1e-5)  # invariant to scale and shift
    # per image: two images of different scale and shift, each exactly aligned -> 0
    exact = torch.cat([column([1.0, 2.0, 3.0]), column([1.0, 2.0, 3.0])])
    target = torch.cat([column([3.0, 5.0, 7.0]), column([10.0, 7.0, 4.0])])
    assert task.loss(exact, target).item() == pytest.approx(0.0, abs=1e-5)
    # a constant prediction has no unique scale: s = 0, t = mean g = 13/3 -> mean |g - 13/3| = 16/9
    assert task.loss(torch.full_like(P, 0.3), G).item() == pytest.approx(16 / 9, rel=1e-6)
    pred = P.clone().requires_grad_(True)
    task.loss(pred, G).backward()
    assert pred.grad[0, 0, 0, 3] == 0 and pred.grad.abs().sum() > 0  # through s and t; the invalid pixel gets none
    # no valid pixel: 0, still differentiable
    empty = task.loss(pred, torch.zeros_like(G))
    assert empty.item() == 0.0
    empty.backward()


def test_mse_loss_by_hand():
    assert Depth("disparity", loss="mse").loss(P, G).item() == pytest.approx((1 + 4 + 16) / 3)
    assert Depth("disparity").loss(P, G).item() == pytest.approx((1 + 2 + 4) / 3)


def test_l2_soft_by_hand():
    task = Classification(2, "object", loss="l2_soft")
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # softmax (1/2, 1/2) and (3/4, 1/4)
    soft = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    # ((1/2)^2 + (1/2)^2 + (1/4)^2 + (1/4)^2) / 4 elements
    assert task.loss(logits, soft).item() == pytest.approx(0.625 / 4)
    assert task.loss(logits, torch.tensor([0, 0])).item() == pytest.approx((0.25 + 0.25 + 1 / 16 + 1 / 16) / 4)
    ce = Classification(2, "object")
    expected = -(soft * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert ce.loss(logits, soft).item() == pytest.approx(expected.item())  # cross-entropy against a distribution


def test_normals_l1_loss_by_hand():
    up = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    side = torch.tensor([2.0, 0.0, 0.0]).view(1, 3, 1, 1)  # unit (1, 0, 0): |1| + 0 + |-1| = 2
    assert SurfaceNormals(loss="l1").loss(side, up).item() == pytest.approx(2.0)
    assert SurfaceNormals().loss(side, up).item() == pytest.approx(1.0)  # 1 - cos 90


# --- soft targets through the whole task interface --------------------------------------------------------------


def test_soft_targets_in_metrics_masks_and_random_targets():
    task = Classification(3, "scene", loss="l2_soft")
    logits = torch.tensor([[5.0, 0.0, 1.0], [0.0, 0.0, 5.0], [0.0, 5.0, 1.0]])
    soft = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])  # argmax 0, 1, 1
    batch = {"scene": soft, "labelled": {"scene": torch.tensor([True, False, True])}}
    metric = task.new_metric()
    assert task.update_metric(metric, logits, batch) == 2
    assert metric.compute()["top1"] == pytest.approx(100.0)  # the unlabelled image (a miss) is not counted
    assert task.batch_loss(logits, batch).item() == pytest.approx(task.loss(logits[[0, 2]], soft[[0, 2]]).item())
    with pytest.raises(ValueError, match="soft labels"):
        task.loss(logits, soft[:, :2])
    real = torch.tensor([0.7, 0.2, 0.05, 0.05])
    fake = random_target("object", real, {"object": 4}, torch.Generator().manual_seed(1))
    assert fake.dtype == real.dtype and torch.equal(fake.sort().values, real.sort().values)
    hard = random_target("object", torch.tensor(2), {"object": 4}, torch.Generator().manual_seed(1))
    assert hard.dtype == torch.int64 and hard.dim() == 0


# --- metric conventions -----------------------------------------------------------------------------------------


def test_nddr_encoded_angle_by_hand():
    """The angle between the L2-normalised encodings (n + 1) * 127.5 of the unit prediction and target."""
    up = [0.0, 0.0, 1.0]
    target = torch.tensor([[up, up, [0.0, 0.0, 0.0]]]).permute(2, 0, 1).unsqueeze(0)  # third pixel invalid
    pred = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 1.0, 0.0]]]).permute(2, 0, 1).unsqueeze(0)
    unit, encoded = SurfaceNormals().new_metric(), SurfaceNormals(normal_angle="nddr_encoded").new_metric()
    unit.update(pred, target)
    encoded.update(pred, target)
    # (1, 0, 0) -> (255, 127.5, 127.5), (0, 0, 1) -> (127.5, 127.5, 255): cos = 127.5^2 * 5 / (127.5^2 * 6)
    expected = math.degrees(math.acos(5 / 6))
    assert unit.compute()["mean_angle"] == pytest.approx(45.0)  # (90 + 0) / 2
    assert encoded.compute()["mean_angle"] == pytest.approx(expected / 2, rel=1e-6)
    assert encoded.count == 2  # the invalid pixel is excluded either way


def _encode(normals: torch.Tensor) -> torch.Tensor:
    return F.normalize((F.normalize(normals, dim=-1) + 1) * 127.5, dim=-1)


def test_grey_normals_are_invalid_or_scored_by_hand():
    """A grey label pixel, kept by the nyuv2_nddr reader as its short decoding v / 127.5 - 1: invalid by default;
    scored, as the unit vector whose encoding points along the stored pixel, with nddr_grey_normals=score, so that the
    nddr_encoded angle is the authors' angle between the L2-normalised raw label and the encoded prediction."""
    raw = torch.tensor([[127.0, 127.0, 127.0], [127.0, 128.0, 126.0]])
    up = torch.tensor([0.0, 0.0, 1.0])
    pixels = torch.cat([up[None], raw / 127.5 - 1, torch.zeros(1, 3)])  # valid, two grey pixels, invalid
    pred = torch.tensor([[0.2, 0.1, 1.0], [1.0, 2.0, 0.5], [-0.3, 1.0, 0.8], [1.0, 0.0, 0.0]])
    image = lambda v: v.T.reshape(1, 3, 1, 4)  # noqa: E731
    metrics = {}
    for grey in ("invalid", "score"):
        for angle in ("unit", "nddr_encoded"):
            task = SurfaceNormals(normal_angle=angle, nddr_grey_normals=grey)
            metric = task.new_metric()
            metric.update(image(pred), image(pixels))
            metrics[grey, angle] = metric
            assert int(task.loss_normaliser(image(pixels))) == metric.count == (1 if grey == "invalid" else 3)
    labels = torch.cat([(up[None] + 1) * 127.5, raw])
    authors = torch.rad2deg(torch.arccos((F.normalize(labels, dim=-1) * _encode(pred[:3])).sum(-1).clamp(-1, 1)))
    assert metrics["invalid", "nddr_encoded"].compute()["mean_angle"] == pytest.approx(float(authors[0]), abs=1e-3)
    assert metrics["score", "nddr_encoded"].compute()["mean_angle"] == pytest.approx(float(authors.mean()), abs=1e-3)
    # the unit angle of the exact grey pixel is measured against (1, 1, 1) / sqrt(3)
    task = SurfaceNormals(nddr_grey_normals="score")
    scored = torch.cat([up[None], torch.ones(1, 3) / math.sqrt(3), pred[2:]])
    metric = task.new_metric()
    angles = metric.pixel_angles(image(scored), image(pixels))
    assert angles[:2].abs().max() < 1e-3 and angles[2] > 1
    assert task.loss(image(scored), image(pixels)).item() == pytest.approx(float(1 - torch.cos(torch.deg2rad(
        angles[2].double()))) / 3, rel=1e-4)


def test_miou_over_all_classes_counts_absent_ones_as_zero():
    target = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
    labels = torch.tensor([[[0, 1, 1], [1, 0, 2]]])
    logits = F.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    # IoU: class 0 1/3, class 1 2/3, class 2 0 (present: in the labels), class 3 absent (never labelled or predicted)
    present, every = Segmentation(4).new_metric(), Segmentation(4, miou_classes="all").new_metric()
    present.update(logits, target)
    every.update(logits, target)
    assert present.compute()["miou"] == pytest.approx(100 / 3)  # (1/3 + 2/3 + 0) / 3
    assert every.compute()["miou"] == pytest.approx(25.0)  # (1/3 + 2/3 + 0 + 0) / 4
    assert every.compute()["pixel_acc"] == present.compute()["pixel_acc"]


def test_align_corners_of_the_resize_to_the_label():
    # a 2 x 2 prediction with rows (1, 4), resized to 4 x 4: align_corners=True gives rows 1, 2, 3, 4;
    # False samples at 0, 1/4, 3/4, 1 of the way: 1, 1.75, 3.25, 4
    pred = torch.tensor([[1.0, 4.0], [1.0, 4.0]]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 2.0, 3.0, 4.0]).repeat(4, 1).view(1, 1, 4, 4)
    assert Depth(align_corners=True).loss(pred, target).item() == pytest.approx(0.0, abs=1e-6)
    assert Depth().loss(pred, target).item() == pytest.approx(0.125)  # (0 + 0.25 + 0.25 + 0) / 4
    for align, expected in ((True, 0.0), (False, 0.125)):
        metric = Depth(align_corners=align).new_metric()
        metric.update(pred, target)
        assert metric.compute()["abs_err"] == pytest.approx(expected, abs=1e-6)


def test_align_corners_of_the_dense_head():
    torch.manual_seed(0)
    heads = {}
    for align in (False, True):
        branch = build_branch("tiny_resnet", build_task("depth", NUM_CLASSES, align_corners=align)).eval()
        heads[align] = branch.head
    heads[True].load_state_dict(heads[False].state_dict())
    taps = [torch.randn(1, c, 4 // 2**i or 1, 4 // 2**i or 1) for i, c in enumerate(
        m.in_channels for m in heads[False].fusion.laterals)]
    out = {align: head(taps, (16, 16)) for align, head in heads.items()}
    assert not torch.allclose(out[False], out[True])
    low = heads[True].fusion.out(heads[True].fusion.fuse(sum(  # the same map before the final resize
        F.interpolate(lat(t), size=(4, 4), mode="bilinear", align_corners=False) for lat, t in
        zip(heads[True].fusion.laterals, taps))))
    assert torch.allclose(out[True], F.interpolate(low, size=(16, 16), mode="bilinear", align_corners=True), atol=1e-6)


# --- every result file records its conventions ------------------------------------------------------------------


def test_result_files_record_the_conventions(tmp_path, capsys):
    cfg = config_from_dict({
        "name": "conventions", "out_dir": str(tmp_path / "run"),
        "data": {"image_size": 32, "num_train": 24, "num_test": 8, "val_fraction": 0.25, "batch_size": 8},
        "tasks": {"primary": "normal", "aux": ["seg"], "losses": {"normal": "l1"}, "normal_angle": "nddr_encoded",
                  "miou_classes": "all", "align_corners": True},
        "method": {"name": "aux_head"}, "model": {"backbone": "tiny_resnet"},
        "train": {"epochs": 1, "max_steps_per_epoch": 1},
    })
    expected = {"normal": {"loss": "l1", "align_corners": True, "normal_angle": "nddr_encoded",
                           "nddr_grey_normals": "invalid"},
                "seg": {"loss": "cross_entropy", "align_corners": True, "miou_classes": "all"}}
    result = fit(cfg, progress=False)
    assert result.conventions == expected
    assert json.loads((result.out_dir / "metrics.json").read_text())["conventions"] == expected

    evaluated = evaluate(result.out_dir, device="cpu", progress=False)
    assert evaluated["conventions"] == expected
    assert evaluated["normal"] == pytest.approx(result.test_best["normal"])
    assert main(["evaluate", str(result.out_dir), "--json", "--quiet", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["conventions"] == expected
    assert main(["evaluate", str(result.out_dir), "--quiet", "--device", "cpu"]) == 0
    assert "normal: loss l1  align_corners True  normal_angle nddr_encoded" in capsys.readouterr().out

    report = export_primary(result.out_dir, tmp_path / "export")
    assert report["conventions"] == {"normal": expected["normal"]}
    spec = yaml.safe_load((tmp_path / "export" / "exported.yaml").read_text())
    assert spec["task_options"] == expected["normal"]
    assert load_exported(tmp_path / "export").head.fusion.align_corners is True
