"""The paper's CNN protocol: the fusion learning-rate group, the narrow VGG-16, and ``@paper_cnn``."""

import dataclasses

import pytest
import torch
from test_methods import make_config, model_for

from auxnas.backbones import build_branch
from auxnas.cli import main
from auxnas.config import ConfigError, expand_overrides, load_config, protocol_overrides
from auxnas.config.schema import ExperimentConfig
from auxnas.engine.optim import advance_schedule
from auxnas.engine.state import build_train_state
from auxnas.export import export_primary
from auxnas.tasks import build_task
from auxnas.train import fit, load_trained

SGD = {"optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-4, "schedule": "poly"}


def test_fusion_projections_train_at_the_factor_times_the_scheduled_lr(tmp_path):
    """Every network parameter in exactly one group; the p2a and a2p projections in theirs at 100x the network's
    learning rate at every step of the poly schedule, the a2p ones also decayed with ``a2p_weight_decay``."""
    cfg = make_config(tmp_path, {"name": "aux_nas", "fusion_lr_factor": 100.0, "a2p_weight_decay": 0.5}, **SGD)
    model = model_for(cfg)
    state = build_train_state(cfg, model, torch.device("cpu"), total_steps=10)
    groups = state.optimizer.param_groups
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.network_parameters())
    fusion, a2p = {id(p) for p in model.fusion_projections()}, {id(p) for p in model.a2p_projections()}
    assert a2p and a2p < fusion and len(fusion) == len(model.p2a["seg"].fusions) + len(model.primary_fusions)
    by_params = {frozenset(id(p) for p in g["params"]): g for g in groups}
    rest, p2a_group, a2p_group = by_params.values()
    assert set(by_params) == {frozenset(set(grouped) - fusion), frozenset(fusion - a2p), frozenset(a2p)}
    assert [g["weight_decay"] for g in (rest, p2a_group, a2p_group)] == [1e-4, 1e-4, pytest.approx(1e-4 + 0.5)]
    seen = []
    for _ in range(6):
        assert p2a_group["lr"] == a2p_group["lr"] == pytest.approx(100 * rest["lr"])
        seen.append(rest["lr"])
        advance_schedule(state.schedule)
    assert seen[0] == pytest.approx(0.01) and seen == sorted(seen, reverse=True) and seen[-1] < seen[0]


def test_without_a_factor_there_is_one_group_and_other_methods_have_no_fusion_projections(tmp_path):
    cfg = make_config(tmp_path, {"name": "aux_nas"}, **SGD)
    assert len(build_train_state(cfg, model_for(cfg), torch.device("cpu"), 10).optimizer.param_groups) == 1
    head = make_config(tmp_path, {"name": "aux_head", "fusion_lr_factor": 100.0}, **SGD)
    assert model_for(head).fusion_projections() == []
    assert len(build_train_state(head, model_for(head), torch.device("cpu"), 10).optimizer.param_groups) == 1
    with pytest.raises(ConfigError, match="method.fusion_lr_factor: must be positive"):
        make_config(tmp_path, {"name": "aux_nas", "fusion_lr_factor": 0.0})


def test_a_faster_fusion_lr_grows_the_projections_faster(tmp_path):
    """The group is what the optimiser steps: after the same steps the p2a projections (zero at the start) have
    grown more at 100x than at 1x, and the run records the factor."""
    norms = {}
    for factor in (1.0, 100.0):
        cfg = make_config(tmp_path / str(factor), {"name": "aux_g", "fusion_lr_factor": factor}, epochs=1, **SGD)
        result = fit(cfg, progress=False)
        trained_cfg, model = load_trained(result.out_dir)[:2]
        assert trained_cfg.method.fusion_lr_factor == factor
        norms[factor] = sum(float(p.detach().norm()) for p in model.fusion_projections())
    assert 0 < 10 * norms[1.0] < norms[100.0]


def test_the_narrow_vgg16_has_the_papers_search_space_and_exports_its_kept_norms(tmp_path):
    """13 cells in stages [2, 2, 3, 3, 3] at an eighth of VGG-16's widths: 24 links per direction with the
    authors' window; with bn_relu the export keeps one BatchNorm + ReLU per fused primary cell, and says so."""
    branch = build_branch("vgg16_narrow", build_task("depth", {}), image_size=32)
    assert branch.stage_depths == (2, 2, 3, 3, 3)
    assert branch.cell_channels == (8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64)
    vgg = build_branch("vgg16_bn", build_task("depth", {}), image_size=32)
    assert [c * 8 for c in branch.cell_channels] == list(vgg.cell_channels)
    cfg = make_config(tmp_path, {"name": "aux_nas", "fusion_norm": "bn_relu"}, backbone="vgg16_narrow", epochs=1,
                      max_steps_per_epoch=2)
    model = model_for(cfg)
    assert {k: len(v) for k, v in model.link_names().items()} == {"p2a/seg": 24, "a2p/seg": 24}
    fit(cfg, progress=False)
    report = export_primary(cfg.out_dir, tmp_path / "export")
    assert report["kept_fusion_post_cells"] == list(range(13))
    assert report["params"]["extra"] == report["kept_fusion_post"]["expected_extra_params"] == 2 * sum(
        branch.cell_channels)
    assert report["checks"]["outputs_equal"] and report["kept_fusion_post"]["extra_elementwise_ops_per_image"] > 0


def test_paper_cnn_sets_every_key_of_its_file_and_later_overrides_win():
    overrides = protocol_overrides("paper_cnn")
    cfg = load_config("bench/ctrl-depth", ["@paper_cnn", "train.lr=0.03", "method.penalty_max=50"])
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay) == ("sgd", 0.03, 0.00025)
    assert (cfg.method.fusion_norm, cfg.method.fusion_lr_factor, cfg.method.penalty_reduction) == (
        "bn_relu", 100.0, "sum")
    assert cfg.method.arch_betas == [0.5, 0.999] and cfg.method.penalty_max == 50
    assert expand_overrides(["a=1", "@paper_cnn", "b=2"]) == ["a=1", *overrides, "b=2"]
    assert load_config("bench/ctrl-depth", overrides) == load_config("bench/ctrl-depth", ["@paper_cnn"])
    with pytest.raises(ConfigError, match="@nope: no such protocol .packaged: @paper_cnn"):
        load_config("quickstart", ["@nope"])


def test_the_papers_cnn_configs_use_the_protocol():
    """configs/paper's CNN files spell the protocol out (and their own learning rate)."""
    default = dataclasses.asdict(ExperimentConfig())
    for name in ("nyuv2-vgg16-seg-normal", "cityscapes-vgg16-seg-disparity", "taskonomy-resnet50-object-scene"):
        cfg = load_config(f"paper/{name}", ["data.root=x"])
        protocol = load_config(f"paper/{name}", ["data.root=x", "@paper_cnn"])
        assert cfg == protocol, name
        assert (cfg.train.lr, cfg.method.fusion_lr_factor) != (default["train"]["lr"], 1.0)


def test_the_command_line_takes_a_protocol_after_options(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "quickstart", "--quiet", "@paper_cnn", "method.name=aux_g", "tasks.aux=[seg]",
                 "train.epochs=1", "train.max_steps_per_epoch=1", "data.num_train=20", "data.num_test=4",
                 "data.image_size=32", "data.batch_size=4", f"out_dir={out}", "train.lr=0.01"]) == 0
    cfg = load_config(out / "config.yaml")
    assert (cfg.train.optimizer, cfg.method.fusion_norm, cfg.method.fusion_lr_factor) == ("sgd", "bn_relu", 100.0)
