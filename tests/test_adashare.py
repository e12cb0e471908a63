"""AdaShare and AdaShare-Aux: skippable cells, Gumbel policies, regularisers, curriculum and the primary export."""

import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from auxnas.backbones import build_branch, build_head
from auxnas.config import ConfigError, config_from_dict
from auxnas.export import export_primary, load_exported
from auxnas.measure import count_flops, count_parameters
from auxnas.methods.adashare import AdaShare
from auxnas.tasks import Segmentation, SurfaceNormals
from auxnas.train import fit, load_trained

SIZE = 32
#: a CNN with both shape-preserving cells and downsampling cells
CNN = "tiny_vgg"


def make_model(backbone="tiny_vit", aux=("seg",), **options):
    tasks = {"normal": SurfaceNormals("normal")}
    if "seg" in aux:
        tasks["seg"] = Segmentation(6, "seg")
    branch = build_branch(backbone, tasks["normal"], image_size=SIZE)
    heads = {t: build_head(branch, tasks[t], SIZE) for t in aux}
    return AdaShare(tasks, "normal", branch, heads, image_size=SIZE, **options)


def make_batch(batch_size=2):
    gen = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(batch_size, 3, SIZE, SIZE, generator=gen),
        "normal": torch.nn.functional.normalize(torch.randn(batch_size, 3, SIZE, SIZE, generator=gen), dim=1),
        "seg": torch.randint(0, 6, (batch_size, SIZE, SIZE), generator=gen),
    }


def task_loss(model, batch):
    preds = model(batch["image"])
    return sum(task.loss(preds[t], batch[t]) for t, task in model.tasks.items())


def set_policy(model, task, executes):
    """Make ``task``'s policy execute exactly the skippable cells in ``executes`` (by a large logit margin)."""
    row = model.policy_tasks.index(task)
    with torch.no_grad():
        for k, cell in enumerate(model.skip_cells):
            model.policy_logits[row, k] = torch.tensor([50.0, -50.0] if cell in executes else [-50.0, 50.0])


def test_only_shape_preserving_cells_are_skippable():
    vit = make_model("tiny_vit")
    assert all(vit.skippable) and vit.skip_cells == list(range(len(vit.branch.cells)))
    cnn = make_model(CNN)
    assert any(cnn.skippable) and not all(cnn.skippable)
    assert cnn.policy_logits.shape == (2, len(cnn.skip_cells), 2)


def test_non_skippable_cells_always_execute():
    model = make_model(CNN, curriculum=False)
    with torch.no_grad():
        model.policy_logits[..., 0] = -50.0  # every policy says "skip"
    fixed = [i for i, s in enumerate(model.skippable) if not s]
    for mode in (True, False):
        model.train(mode)
        decisions = model.decisions()
        assert decisions[:, fixed].eq(1).all()
        assert decisions[:, model.skip_cells].eq(0).all()
    model.eval()
    with torch.no_grad():
        model(make_batch()["image"])  # the remaining path still runs


def test_training_decisions_are_hard_samples_with_straight_through_gradients():
    torch.manual_seed(0)
    model = make_model(curriculum=False)
    decisions = model.decisions()
    assert set(decisions.unique().tolist()) <= {0.0, 1.0}
    assert decisions.requires_grad
    task_loss(model, make_batch()).backward(inputs=model.architecture_parameters())
    assert model.policy_logits.grad is not None and model.policy_logits.grad.abs().sum() > 0


def test_evaluation_policy_is_the_deterministic_argmax():
    model = make_model(curriculum=False)
    torch.nn.init.normal_(model.policy_logits, std=2.0)
    model.eval()
    expected = (model.policy_logits.softmax(-1)[..., 0] >= 0.5).float()
    first = model.decisions()
    assert torch.equal(first, model.decisions())
    assert torch.equal(first[:, model.skip_cells], expected)
    assert model.policy()["seg"] == first[1].bool().tolist()


def test_a_skipped_cell_is_the_identity_in_training():
    model = make_model(aux=(), curriculum=False)  # one task: one pass over the cells
    n = len(model.branch.cells)
    set_policy(model, "normal", executes=[i for i in model.skip_cells if i != 1])
    inputs = {}
    for i in (1, 2):
        model.branch.cells[i].register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0]))
    model.train()
    model(make_batch()["image"])
    assert model.decisions()[0].tolist() == [float(i != 1) for i in range(n)]
    assert torch.equal(inputs[2], inputs[1])  # cell 2 receives what cell 1 received


def test_architecture_steps_change_the_policies():
    torch.manual_seed(0)
    model = make_model(curriculum=False)
    params = model.architecture_parameters()
    optimizer = torch.optim.Adam(params, lr=0.1)
    before = model.policy_logits.detach().clone()
    batch = make_batch()
    for _ in range(3):
        loss = task_loss(model, batch) + model.architecture_penalty(0.5)
        optimizer.zero_grad()
        loss.backward(inputs=params)
        optimizer.step()
    assert all(p.grad is None for p in model.network_parameters())
    assert (model.policy_logits - before).abs().min() > 0


def test_curriculum_learns_the_last_cells_first():
    model = make_model(curriculum_end=0.5)
    n = len(model.skip_cells)
    assert model.learnable_cells(0.0).tolist() == [False] * (n - 1) + [True]
    assert model.learnable_cells(0.5).all() and model.learnable_cells(1.0).all()
    assert model.learnable_cells(0.25).sum() == math.ceil(n / 2)
    with torch.no_grad():
        model.policy_logits[..., 0] = -50.0
    model.set_progress(0.0)
    assert model.decisions()[:, : n - 1].eq(1).all()  # not yet learned: executed
    model.set_progress(1.0)
    assert model.decisions().eq(0).all()
    assert make_model(curriculum=False).learnable_cells(0.0).all()


def test_temperature_anneals_from_start_to_end():
    model = make_model(temperature_start=5.0, temperature_end=0.5)
    temps = [model.temperature(p) for p in (0.0, 0.3, 0.7, 1.0)]
    assert temps[0] == pytest.approx(5.0) and temps[-1] == pytest.approx(0.5)
    assert temps == sorted(temps, reverse=True)


def test_sparsity_term_falls_when_execution_probability_falls():
    model = make_model(curriculum=False, sharing_weight=0.0, sparsity_weight=0.05)
    high = model.architecture_penalty(1.0)
    assert high.dim() == 0
    assert high.item() == pytest.approx(0.05 * 2 * len(model.skip_cells) * torch.log(torch.tensor(0.5)).item())
    with torch.no_grad():
        model.policy_logits[..., 0] -= 1.0
    assert model.architecture_penalty(1.0) < high


def test_sharing_term_weights_lower_cells_more():
    model = make_model(curriculum=False, sparsity_weight=0.0, sharing_weight=1.0)
    assert model.architecture_penalty(1.0).item() == 0.0  # identical policies
    n = len(model.branch.cells)
    with torch.no_grad():
        model.policy_logits[1, 0] = torch.tensor([-50.0, 50.0])  # seg never executes cell 0
    low = model.architecture_penalty(1.0).item()
    assert low == pytest.approx(0.5 * n / n)
    with torch.no_grad():
        model.policy_logits[1, 0] = 0.0
        model.policy_logits[1, -1] = torch.tensor([-50.0, 50.0])  # seg never executes the last cell
    high = model.architecture_penalty(1.0).item()
    assert high == pytest.approx(0.5 * 1 / n) and high < low


def test_adashare_aux_primary_always_executes_and_exports_the_single_task_network():
    torch.manual_seed(0)
    model = make_model(CNN, fix_primary=True, curriculum=False)
    assert model.policy_logits.shape[0] == 1 and model.policy_tasks == ["seg"]
    with torch.no_grad():
        model.policy_logits[..., 0] = -50.0  # seg skips everything; the primary is unaffected
    params = model.architecture_parameters()
    arch = torch.optim.Adam(params, lr=0.1)
    net = torch.optim.Adam(model.network_parameters(), lr=1e-3)
    batch = make_batch()
    for _ in range(2):
        assert model.decisions()[0].eq(1).all()
        loss = task_loss(model, batch) + model.architecture_penalty(0.5)
        arch.zero_grad()
        loss.backward(inputs=params)
        arch.step()
        loss = task_loss(model, batch)
        net.zero_grad()
        loss.backward()
        net.step()
    model.eval()
    assert model.skipped_cells() == [] and all(model.policy()["normal"])
    network = model.primary_network().eval()
    single = build_branch(CNN, model.tasks["normal"], image_size=SIZE)
    x = batch["image"]
    assert count_parameters(network) == count_parameters(single)
    assert count_flops(network, x[:1]) == count_flops(single, x[:1]) > 0
    with torch.no_grad():
        assert torch.equal(network(x), model(x)["normal"])


def test_adashare_aux_with_only_the_primary_has_no_policy():
    model = make_model(aux=(), fix_primary=True)
    assert model.architecture_parameters() == [] and model.architecture_penalty(1.0) is None


def test_plain_adashare_export_drops_the_skipped_cells():
    model = make_model(CNN, curriculum=False)
    skipped = model.skip_cells[-1]
    set_policy(model, "normal", executes=model.skip_cells[:-1])
    model.eval()
    assert model.skipped_cells() == [skipped]
    network = model.primary_network().eval()
    assert isinstance(network.cells[skipped], torch.nn.Identity)
    single = build_branch(CNN, model.tasks["normal"], image_size=SIZE)
    x = make_batch()["image"]
    assert count_parameters(network) < count_parameters(single)
    assert count_flops(network, x[:1]) < count_flops(single, x[:1])
    with torch.no_grad():
        assert torch.equal(network(x), model(x)["normal"])


def test_soft_sampling_gives_relaxed_samples_in_training_and_the_argmax_in_evaluation():
    model = make_model(curriculum=False, sampling="soft")
    torch.manual_seed(0)
    decisions = model.decisions()
    torch.manual_seed(0)
    soft = F.gumbel_softmax(model.policy_logits, tau=model.temperature(0.0), hard=False)[..., 0]
    assert torch.equal(decisions, soft)
    assert ((decisions > 0) & (decisions < 1)).all() and decisions.requires_grad
    task_loss(model, make_batch()).backward(inputs=model.architecture_parameters())
    assert model.policy_logits.grad.abs().sum() > 0
    model.eval()
    assert set(model.decisions().unique().tolist()) <= {0.0, 1.0}


def test_soft_sampling_mixes_the_cell_output_and_its_input():
    model = make_model(aux=(), curriculum=False, sampling="soft")
    decisions = torch.ones(1, len(model.branch.cells))
    decisions[0, 1] = 0.3
    model.decisions = lambda: decisions
    seen = {}
    model.branch.cells[1].register_forward_hook(lambda m, args, out: seen.update(x=args[0], y=out))
    model.branch.cells[2].register_forward_pre_hook(lambda m, args: seen.update(next=args[0]))
    model.train()
    model(make_batch()["image"])
    assert torch.allclose(seen["next"], 0.3 * seen["y"] + 0.7 * seen["x"])


def test_skip_downsample_makes_blocks_with_a_shortcut_skippable():
    assert make_model("tiny_resnet").skip_cells == []  # every tiny_resnet block has a shortcut
    assert make_model("tiny_resnet").policy_logits is None
    model = make_model("tiny_resnet", skip_downsample=True)
    assert model.skip_cells == model.shortcut_cells == [0, 1, 2, 3]
    assert model.policy_logits.shape == (2, 4, 2)
    resnet = make_model("resnet18", skip_downsample=True)
    assert all(resnet.skippable) and resnet.shortcut_cells == [2, 4, 6]
    vgg = make_model(CNN, skip_downsample=True)  # VGG convs have no shortcut: nothing changes
    assert vgg.shortcut_cells == [] and vgg.skippable == make_model(CNN).skippable


@pytest.mark.parametrize("training", [True, False])
def test_a_skipped_downsample_block_runs_its_shortcut(training):
    model = make_model("tiny_resnet", aux=(), curriculum=False, skip_downsample=True)
    set_policy(model, "normal", executes=[0, 2, 3])
    seen = {}
    model.branch.cells[0].register_forward_hook(lambda m, args, out: seen.update(x=out))  # cell 1's input
    model.branch.cells[2].register_forward_pre_hook(lambda m, args: seen.update(next=args[0]))
    model.train(training)
    model(make_batch()["image"])
    with torch.no_grad():
        expected = model.branch.cells[1].downsample(seen["x"])  # same batch: same BatchNorm statistics in training
    assert torch.allclose(seen["next"], expected)


def test_export_replaces_skipped_downsample_blocks_by_their_shortcut():
    model = make_model("resnet18", curriculum=False, skip_downsample=True)
    set_policy(model, "normal", executes=[0, 3, 5, 7])
    model.eval()
    assert model.skipped_cells() == [1, 2, 4, 6]
    network = model.primary_network().eval()
    assert isinstance(network.cells[1], torch.nn.Identity)
    for i in (2, 4, 6):
        assert isinstance(network.cells[i], torch.nn.Sequential) and len(network.cells[i]) == 2
    single = build_branch("resnet18", model.tasks["normal"], image_size=SIZE)
    saved = sum(count_parameters(single.cells[i]) for i in (1, 2, 4, 6))
    saved -= sum(count_parameters(single.cells[i].downsample) for i in (2, 4, 6))
    x = make_batch()["image"]
    assert count_parameters(network) == count_parameters(single) - saved
    assert count_flops(network, x[:1]) < count_flops(single, x[:1])
    with torch.no_grad():
        assert torch.equal(network(x), model(x)["normal"])


def test_bounded_sparsity_is_the_cross_entropy_towards_skip():
    model = make_model(curriculum=False, sharing_weight=0.0, sparsity_weight=0.05, sparsity="bounded")
    assert model.architecture_penalty(1.0).item() == pytest.approx(0.05 * 2 * math.log(2))  # mean over cells
    torch.nn.init.normal_(model.policy_logits, std=3.0)
    p_exec = model.policy_logits.softmax(-1)[..., 0]
    expected = 0.05 * -torch.log1p(-p_exec).mean(dim=1).sum()
    assert model.architecture_penalty(1.0).item() == pytest.approx(expected.item(), rel=1e-5)
    curriculum = make_model(curriculum_end=0.5, sharing_weight=0.0, sparsity="bounded")
    assert curriculum.architecture_penalty(0.0).item() == pytest.approx(0.05 * 2 * math.log(2))  # last cell only


def test_bounded_sparsity_is_bounded_below_and_its_gradient_pushes_towards_skipping():
    bounded = make_model(curriculum=False, sharing_weight=0.0, sparsity="bounded")
    log = make_model(curriculum=False, sharing_weight=0.0)
    with torch.no_grad():
        for model in (bounded, log):
            model.policy_logits[..., 0] = -50.0  # every cell all but surely skipped
            model.policy_logits[..., 1] = 50.0
    assert 0.0 <= bounded.architecture_penalty(1.0).item() < 1e-6
    assert log.architecture_penalty(1.0).item() < -1.0  # sum log p_exec keeps falling as p_exec -> 0
    model = make_model(curriculum=False, sharing_weight=0.0, sparsity="bounded")
    torch.nn.init.normal_(model.policy_logits, std=2.0)
    before = model.exec_probabilities(1.0).detach()
    model.architecture_penalty(1.0).backward()
    grad = model.policy_logits.grad
    assert (grad[..., 0] > 0).all() and (grad[..., 1] < 0).all()
    with torch.no_grad():
        model.policy_logits -= 10.0 * grad
    assert (model.exec_probabilities(1.0) < before)[:, model.skip_cells].all()


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="sampling"):
        make_model(sampling="gumbel")
    with pytest.raises(ValueError, match="sparsity"):
        make_model(sparsity="l1")
    for key, value in (("adashare_sampling", "gumbel"), ("adashare_sparsity", "l1"), ("adashare_skip_downsample", 1)):
        with pytest.raises(ConfigError, match=f"method.{key}"):
            config_from_dict({"method": {"name": "adashare", key: value}})


def test_released_code_options_train_and_export_through_shortcuts(tmp_path):
    """Soft sampling, bounded sparsity and shortcut skipping on tiny_resnet; the primary skips every block."""
    cfg = config_from_dict({
        "name": "t", "out_dir": str(tmp_path / "run"),
        "data": {"image_size": SIZE, "num_train": 32, "num_test": 8, "val_fraction": 0.25, "batch_size": 8},
        "tasks": {"primary": "normal", "aux": ["seg"]},
        "model": {"backbone": "tiny_resnet"},
        "method": {"name": "adashare", "adashare_sampling": "soft", "adashare_sparsity": "bounded",
                   "adashare_skip_downsample": True, "curriculum": False, "policy_init": 0.01},
        "train": {"epochs": 1, "max_steps_per_epoch": 2, "lr": 0.003},
    })
    fit(cfg, progress=False)
    report = export_primary(cfg.out_dir, tmp_path / "export")
    assert report["skipped_cells"] == report["shortcut_cells"] == [0, 1, 2, 3]
    assert report["checks"]["outputs_equal"]
    single = build_branch("tiny_resnet", SurfaceNormals("normal"), image_size=SIZE)
    saved = sum(count_parameters(c) - count_parameters(c.downsample) for c in single.cells)
    assert report["params"]["extra"] == -saved
    assert report["flops_per_image"]["extra"] < 0
    spec = yaml.safe_load((tmp_path / "export" / "exported.yaml").read_text())
    assert spec["shortcut_cells"] == [0, 1, 2, 3]
    network = load_exported(tmp_path / "export")
    _, trained, _ = load_trained(cfg.out_dir)
    x = make_batch()["image"]
    with torch.no_grad():
        assert torch.equal(network(x), trained.eval()(x)["normal"])
