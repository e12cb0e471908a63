"""Aux-Head, Aux-G and Aux-NAS: structure, the architecture step, the regulariser, and export."""

import dataclasses
import json

import pytest
import torch

from auxnas.backbones import build_branch
from auxnas.config import ConfigError, config_from_dict, replace
from auxnas.config.validate import validate
from auxnas.data import build_splits
from auxnas.engine.loaders import make_loader
from auxnas.engine.state import build_train_state
from auxnas.engine.steps import architecture_step
from auxnas.export import ExportError, export_primary, load_exported
from auxnas.measure import count_flops, count_parameters
from auxnas.methods import LinkedBranches, SharedBackbone, build_model
from auxnas.storage import load_checkpoint
from auxnas.tasks import build_tasks
from auxnas.train import fit, load_trained

NUM_CLASSES = {"seg": 9, "object": 6, "scene": 5}


def make_config(tmp_path, method: dict, aux=("seg",), backbone="tiny_resnet", epochs=2, **train):
    return config_from_dict({
        "name": "t", "out_dir": str(tmp_path / "run"),
        "data": {"image_size": 32, "num_train": 64, "num_test": 16, "val_fraction": 0.25, "batch_size": 8},
        "tasks": {"primary": "normal", "aux": list(aux)},
        "model": {"backbone": backbone},
        "method": method,
        "train": {"epochs": epochs, "lr": 0.003, **train},
    })


def model_for(cfg):
    return build_model(cfg, build_tasks(cfg, NUM_CLASSES))


def test_aux_head_shares_one_backbone(tmp_path):
    model = model_for(make_config(tmp_path, {"name": "aux_head"}, aux=("seg", "object")))
    assert isinstance(model, SharedBackbone)
    preds = model(torch.randn(2, 3, 32, 32))
    assert preds["normal"].shape == (2, 3, 32, 32)
    assert preds["seg"].shape == (2, 9, 32, 32)
    assert preds["object"].shape == (2, 6)
    assert count_parameters(model.primary_network()) < count_parameters(model)


@pytest.mark.parametrize(("granularity", "links"), [("stage", 4), ("layer", 4)])
def test_aux_g_has_fixed_p2a_links_only(tmp_path, granularity, links):
    model = model_for(make_config(tmp_path, {"name": "aux_g", "granularity": granularity}))
    assert isinstance(model, LinkedBranches)
    assert model.architecture_parameters() == []
    assert len(model.a2p) == 0 and len(model.primary_fusions) == 0
    assert len(model.p2a["seg"].links) == links  # tiny_resnet: 4 stages of 1 block
    assert model.p2a["seg"].strengths().tolist() == [1.0] * links


def test_aux_g_layer_on_deeper_stages_links_every_cell_in_the_window(tmp_path):
    model = model_for(make_config(tmp_path, {"name": "aux_g", "granularity": "layer"}, backbone="resnet18"))
    assert len(model.p2a["seg"].links) == 12  # stages [2,2,2,2]: 3 links each
    stage = model_for(make_config(tmp_path, {"name": "aux_g", "granularity": "stage"}, backbone="resnet18"))
    assert stage.p2a["seg"].links == [(1, 1), (3, 3), (5, 5), (7, 7)]


def test_aux_g_primary_receives_auxiliary_gradients(tmp_path):
    model = model_for(make_config(tmp_path, {"name": "aux_g"}))
    for fusion in model.p2a["seg"].fusions.values():  # open the links (they start at zero)
        torch.nn.init.normal_(fusion.proj.weight, std=0.1)
    preds = model(torch.randn(2, 3, 32, 32))
    preds["seg"].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.primary_branch.cells.parameters())


@pytest.mark.parametrize("backbone", ["tiny_resnet", "tiny_vit"])
def test_search_network_starts_as_single_task_networks(tmp_path, backbone):
    cfg = make_config(tmp_path, {"name": "aux_nas", "a2p_init": 0.5}, backbone=backbone)
    model = model_for(cfg).eval()
    task = model.tasks["normal"]
    single = build_branch(backbone, task, image_size=32).eval()
    single.load_state_dict(model.primary_branch.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fused = model(x, cut_a2p=False)["normal"]  # a2p links open at strength 0.5
    assert torch.allclose(fused, single(x), atol=1e-6)


def test_architecture_step_leaves_network_grads_empty(tmp_path):
    cfg = make_config(tmp_path, {"name": "aux_nas"})
    model = model_for(cfg)
    arch = model.architecture_parameters()
    assert len(arch) == 2  # p2a and a2p logits for one auxiliary task
    state = build_train_state(cfg, model, torch.device("cpu"), total_steps=10)
    batch = next(iter(make_loader(build_splits(cfg.data, progress=False).train, 4, False, 0)))
    before = [p.detach().clone() for p in arch]
    assert architecture_step(state, state.parallel.batch(batch, model.tasks), progress=0.9) > 0
    assert all(p.grad is None for p in model.network_parameters())
    assert all(p.grad is not None for p in arch)
    assert any(not torch.equal(b, p) for b, p in zip(before, arch))


def test_p2a_only_search_has_no_a2p_links(tmp_path):
    model = model_for(make_config(tmp_path, {"name": "aux_nas", "search": "p2a_only"}))
    assert len(model.a2p) == 0 and len(model.architecture_parameters()) == 1
    assert model.architecture_penalty(1.0) is None


def test_penalty_ramp_and_reduction(tmp_path):
    cfg = make_config(tmp_path, {"name": "aux_nas", "a2p_init": 0.5, "penalty_max": 100.0,
                                 "penalty_start": 0.5, "penalty_end": 0.8})
    model = model_for(cfg)
    assert float(model.architecture_penalty(0.3).detach()) == 0.0
    assert float(model.architecture_penalty(0.65).detach()) == pytest.approx(50 * 0.5)
    assert float(model.architecture_penalty(0.9).detach()) == pytest.approx(100 * 0.5)
    summed = model_for(dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, penalty_reduction="sum")))
    assert float(summed.architecture_penalty(0.9).detach()) == pytest.approx(100 * 0.5 * 4)


def trained_task(run_dir):
    return load_trained(run_dir)[1].tasks["normal"]


def search_config(tmp_path, penalty_max: float):
    return make_config(
        tmp_path, {"name": "aux_nas", "a2p_init": 0.5, "arch_lr": 0.3, "penalty_max": penalty_max,
                   "penalty_start": 0.0, "penalty_end": 0.1, "arch_every": 1},  # every step: 10 epochs of 3 steps
        epochs=10, schedule="constant",
    )


def test_regulariser_prunes_a2p_and_keeps_p2a_then_exports(tmp_path):
    cfg = search_config(tmp_path, penalty_max=1000.0)
    result = fit(cfg, progress=False)
    final = result.history[-1].recorded["link_strengths"]
    assert max(final["a2p/seg"]) < 0.01
    assert min(final["p2a/seg"]) > 0.05
    recorded = json.loads((result.out_dir / "metrics.json").read_text())["link_strengths"]
    assert len(recorded["steps"]) == len(recorded["values"]) > 10

    report = export_primary(result.out_dir, tmp_path / "export", threshold=0.01)
    assert all(report["checks"].values())
    assert report["max_abs_diff"] <= 1e-5
    assert report["params"]["extra"] == 0 and report["flops_per_image"]["extra"] == 0
    network = load_exported(tmp_path / "export")
    single = build_branch("tiny_resnet", trained_task(result.out_dir), image_size=32)
    assert set(network.state_dict()) == set(single.state_dict())  # no link, fusion op or auxiliary part
    x = torch.randn(2, 3, 32, 32)
    _, trained, _ = load_trained(result.out_dir)
    with torch.no_grad():
        assert torch.allclose(network(x), trained.eval()(x)["normal"], atol=1e-5)


def test_without_penalty_a2p_stays_and_export_refuses(tmp_path):
    result = fit(search_config(tmp_path, penalty_max=0.0), progress=False)
    assert max(result.history[-1].recorded["link_strengths"]["a2p/seg"]) > 0.05
    with pytest.raises(ExportError, match=r"seg\[\d+\]->primary\[\d+\]"):
        export_primary(result.out_dir, tmp_path / "export", threshold=0.01)
    report = export_primary(result.out_dir, tmp_path / "forced", threshold=0.01, force=True)
    assert report["forced"] and not report["checks"]["a2p_below_threshold"]
    assert (tmp_path / "forced" / "model.safetensors").is_file()


@pytest.mark.parametrize(("backbone", "method"), [
    ("tiny_vit", {"name": "aux_nas"}),
    ("tiny_resnet", {"name": "aux_g", "granularity": "stage"}),
    ("tiny_vgg", {"name": "aux_head"}),
    ("tiny_resnet", {"name": "single"}),
    ("tiny_resnet", {"name": "aux_module"}),
    ("tiny_vgg", {"name": "adashare_aux"}),
])
def test_export_matches_single_task_cost(tmp_path, backbone, method):
    aux = () if method["name"] == "single" else ("seg",)
    cfg = make_config(tmp_path, method, aux=aux, backbone=backbone, epochs=1, max_steps_per_epoch=2)
    fit(cfg, progress=False)
    report = export_primary(cfg.out_dir, tmp_path / "export")
    assert all(report["checks"].values())
    assert report["params"]["exported"] == report["params"]["single_task"]
    assert report["flops_per_image"]["exported"] == report["flops_per_image"]["single_task"] > 0
    assert report["params"]["train_time_model"] >= report["params"]["exported"]


def test_two_auxiliary_tasks_train_and_export(tmp_path):
    cfg = make_config(tmp_path, {"name": "aux_nas"}, aux=("seg", "depth"), epochs=1, max_steps_per_epoch=2)
    model = model_for(cfg)
    assert set(model.p2a) == set(model.a2p) == {"seg", "depth"}
    result = fit(cfg, progress=False)
    assert set(result.test_best) == {"normal", "seg", "depth"}
    report = export_primary(cfg.out_dir, tmp_path / "export")
    assert {link["aux"] for link in report["a2p_links"]} == {"seg", "depth"}
    assert all(report["checks"].values())


def test_bn_relu_fusion_export_reports_exact_extras(tmp_path):
    cfg = make_config(tmp_path, {"name": "aux_nas", "fusion_norm": "bn_relu"}, epochs=1, max_steps_per_epoch=2)
    fit(cfg, progress=False)
    report = export_primary(cfg.out_dir, tmp_path / "export")
    kept = report["kept_fusion_post"]
    assert report["params"]["extra"] == kept["expected_extra_params"] > 0
    assert kept["extra_elementwise_ops_per_image"] > 0
    assert report["checks"]["outputs_equal"]
    network = load_exported(tmp_path / "export")
    x = torch.randn(1, 3, 32, 32)
    assert count_flops(network, x) == report["flops_per_image"]["exported"]


def test_load_exported_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="exported.yaml"):
        load_exported(tmp_path)


def test_branches_start_from_single_task_runs(tmp_path):
    runs = {}
    for task in ("normal", "seg"):
        cfg = make_config(tmp_path / task, {"name": "single"}, aux=(), epochs=1, max_steps_per_epoch=1)
        runs[task] = fit(replace(cfg, tasks={"primary": task}), progress=False).out_dir
    cfg = make_config(tmp_path, {"name": "aux_nas"})
    cfg = replace(cfg, init={"primary": str(runs["normal"]), "aux": {"seg": str(runs["seg"])}})
    model = model_for(cfg)
    for task in ("normal", "seg"):
        trained = load_trained(runs[task])[1].branch.state_dict()
        for key, value in model.branches[task].state_dict().items():
            assert torch.equal(value, trained[key]), key
    cfg = replace(cfg, init={"primary": str(runs["seg"]), "aux": {}})
    with pytest.raises(ValueError, match="expected a single-task run on 'normal'"):
        model_for(cfg)


def test_single_level_search_updates_links_and_weights_on_one_batch(tmp_path):
    cfg = make_config(tmp_path, {"name": "aux_nas", "optimization": "single_level", "a2p_init": 0.5,
                                 "penalty_start": 0.0, "penalty_end": 0.0}, epochs=2, schedule="constant")
    result = fit(cfg, progress=False)
    first, last = result.history[0].recorded["link_strengths"], result.history[-1].recorded["link_strengths"]
    assert max(last["a2p/seg"]) < min(first["a2p/seg"]) < 0.5  # the penalty acts from the first step
    assert last["p2a/seg"] != first["p2a/seg"]


def test_aux_nas_shared_parameters_include_the_primary_fusion_ops(tmp_path):
    """Auxiliary losses reach the a2p fusion ops through the p2a links of later cells: gradient methods act on them."""
    model = model_for(make_config(tmp_path, {"name": "aux_nas"}))
    shared = {id(p) for p in model.shared_parameters()}
    fusion = list(model.primary_fusions.parameters())
    assert fusion and all(id(p) in shared for p in fusion)
    assert not any(id(p) in shared for p in model.p2a.parameters())
    assert not any(id(p) in shared for p in model.branches["seg"].parameters())
    with torch.no_grad():  # open the links so that gradients flow through the fusion ops
        for p in [*fusion, *model.p2a.parameters()]:
            p.normal_(std=0.1)
        for links in model.a2p.values():
            links.logits.fill_(0.0)
    preds = model(torch.randn(2, 3, 32, 32), cut_a2p=False)
    first = model.primary_fusions[min(model.primary_fusions, key=int)].proj.weight
    grad = torch.autograd.grad(preds["seg"].square().mean(), first)[0]
    assert grad.abs().sum() > 0


def test_bn_relu_fusion_is_refused_on_token_backbones(tmp_path):
    with pytest.raises(ValueError, match="bn_relu is for feature maps"):
        validate(make_config(tmp_path, {"name": "aux_nas", "fusion_norm": "bn_relu"}, backbone="tiny_vit"))
    cfg = make_config(tmp_path, {"name": "aux_nas"}, backbone="tiny_vit")
    cfg = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, fusion_norm="bn_relu"))  # unchecked: the
    # config check is bypassed on purpose, so that the model's own refusal is what is tested
    with pytest.raises(ValueError, match="bn_relu is for feature maps"):
        model_for(cfg)


def test_bn_relu_fusion_changes_the_primary_at_initialisation(tmp_path):
    """What the docs state: unlike norm none, bn_relu does not start from the single-task network."""
    x = torch.randn(4, 3, 32, 32)
    for norm, changes in (("none", False), ("bn_relu", True)):
        model = model_for(make_config(tmp_path, {"name": "aux_nas", "fusion_norm": norm})).train()
        with torch.no_grad():
            fused = model(x, cut_a2p=False)["normal"]
            plain = model.primary_branch(x)
        assert (not torch.allclose(fused, plain, atol=1e-6)) == changes


def test_arch_every_skips_architecture_steps(tmp_path):
    cfg = make_config(tmp_path, {"name": "aux_nas", "arch_every": 3}, epochs=2)  # 3 network steps per epoch
    fit(cfg, progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")["state"]
    assert state["step"] == 6
    # Adam counts its updates: network steps 0 and 3 of 6 took an architecture step
    assert {float(s["step"]) for s in state["arch_optimizer"]["state"].values()} == {2.0}


def test_a2p_weight_decay_puts_the_a2p_projections_in_their_own_group_and_shrinks_them(tmp_path):
    """``method.a2p_weight_decay`` decays the primary fusion ops' projections only: with the a2p links open and no
    penalty, they end smaller than without it."""
    method = {"name": "aux_nas", "a2p_init": 0.5, "penalty_max": 0.0}
    norms = {}
    for decay in (0.0, 0.5):
        cfg = make_config(tmp_path / str(decay), {**method, "a2p_weight_decay": decay}, epochs=2, weight_decay=1e-4)
        model = model_for(cfg)
        groups = build_train_state(cfg, model, torch.device("cpu"), total_steps=8).optimizer.param_groups
        a2p = {id(p) for p in model.a2p_projections()}
        assert len(a2p) == len(model.primary_fusions) > 0
        in_groups = [id(p) for group in groups for p in group["params"]]
        assert sorted(in_groups) == sorted(id(p) for p in model.network_parameters())  # each once
        if decay:
            assert [{id(p) for p in g["params"]} == a2p for g in groups] == [False, True]
            assert [g["weight_decay"] for g in groups] == [1e-4, pytest.approx(1e-4 + 0.5)]
        else:
            assert len(groups) == 1
        trained = load_trained(fit(cfg, progress=False).out_dir)[1]
        norms[decay] = sum(float(p.detach().norm()) for p in trained.a2p_projections())
    assert norms[0.0] > 0 and norms[0.5] < 0.5 * norms[0.0]


def test_a2p_weight_decay_needs_a2p_links(tmp_path):
    with pytest.raises(ConfigError, match="method.a2p_weight_decay: acts on Aux-NAS's a2p fusion ops"):
        make_config(tmp_path, {"name": "aux_nas", "search": "p2a_only", "a2p_weight_decay": 0.1})
