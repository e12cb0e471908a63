"""Aux-Module: the train-time auxiliary module, its loss and gradients, and the plain hard-sharing export."""

import pytest
import torch

from auxnas.backbones import build_branch, build_head
from auxnas.measure import count_flops, count_parameters
from auxnas.methods.aux_module import MODULE_SUFFIX, AuxModuleNet
from auxnas.tasks import Classification, Segmentation, SurfaceNormals

SIZE = 32


def make_tasks():
    return {"normal": SurfaceNormals("normal"), "seg": Segmentation(6, "seg"), "scene": Classification(4, "scene")}


def make_model(backbone="tiny_resnet", module_weight=1.0):
    tasks = make_tasks()
    branch = build_branch(backbone, tasks["normal"], image_size=SIZE)
    aux_heads = {t: build_head(branch, tasks[t], SIZE) for t in ("seg", "scene")}
    module_heads = {t: build_head(branch, task, SIZE) for t, task in tasks.items()}
    return AuxModuleNet(tasks, "normal", branch, aux_heads, module_heads, module_weight=module_weight)


def make_batch(batch_size=4):
    gen = torch.Generator().manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(batch_size, 3, SIZE, SIZE, generator=gen), dim=1)
    return {
        "image": torch.randn(batch_size, 3, SIZE, SIZE, generator=gen),
        "normal": normal,
        "seg": torch.randint(0, 6, (batch_size, SIZE, SIZE), generator=gen),
        "scene": torch.randint(0, 4, (batch_size,), generator=gen),
    }


def total_loss(model, batch):
    preds = model(batch["image"])
    losses = sum(task.loss(preds[t], batch[t]) for t, task in model.tasks.items())
    return losses + model.auxiliary_loss(preds, batch)


def test_forward_has_module_predictions_in_training_only():
    model = make_model()
    x = torch.randn(2, 3, SIZE, SIZE)
    preds = model(x)
    assert set(preds) == {"normal", "seg", "scene"} | {f"{t}{MODULE_SUFFIX}" for t in ("normal", "seg", "scene")}
    for t in ("normal", "seg", "scene"):
        assert preds[f"{t}{MODULE_SUFFIX}"].shape == preds[t].shape
    model.eval()
    preds = model(x)
    assert set(preds) == {"normal", "seg", "scene"}
    assert model.auxiliary_loss(preds, make_batch(2)) is None
    assert set(model(x, with_module=True)) > set(preds)


def test_module_loss_trains_the_shared_cells_and_not_the_main_heads():
    model = make_model()
    batch = make_batch()
    loss = model.auxiliary_loss(model(batch["image"]), batch)
    assert loss.dim() == 0 and loss > 0
    loss.backward()
    for cell in model.branch.cells:  # every shared cell learns from the module
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in cell.parameters())
    assert all(p.grad is None for p in [*model.branch.head.parameters(), *model.aux_heads.parameters()])
    # the cross-task fusion projections start at zero but learn from the module loss
    assert all(f.proj.weight.grad.abs().sum() > 0 for fs in model.aux_module.fusions.values() for f in fs)


def test_module_weight_scales_the_module_loss():
    batch = make_batch()
    torch.manual_seed(0)
    one = make_model(module_weight=1.0)
    torch.manual_seed(0)
    half = make_model(module_weight=0.5)
    weights = {"normal": 1.0, "seg": 2.0, "scene": 0.0}
    with torch.no_grad():
        full = one.auxiliary_loss(one(batch["image"]), batch, weights)
        scaled = half.auxiliary_loss(half(batch["image"]), batch, weights)
    assert torch.allclose(scaled, 0.5 * full)


@pytest.mark.parametrize("backbone", ["tiny_resnet", "tiny_vit"])
def test_training_decreases_the_loss(backbone):
    torch.manual_seed(0)
    model = make_model(backbone)
    batch = make_batch()
    optimizer = torch.optim.Adam(model.network_parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = total_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("backbone", ["tiny_resnet", "tiny_vit"])
def test_primary_network_is_the_plain_single_task_network(backbone):
    torch.manual_seed(0)
    model = make_model(backbone)
    optimizer = torch.optim.Adam(model.network_parameters(), lr=3e-3)
    batch = make_batch()
    for _ in range(2):  # move the weights and the norm statistics away from their initial values
        loss = total_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    network = model.primary_network().eval()
    single = build_branch(backbone, model.tasks["normal"], image_size=SIZE)
    assert count_parameters(network) == count_parameters(single) == count_parameters(model.branch)
    assert count_parameters(model) - count_parameters(network) >= sum(p.numel() for p in model.module_parameters())
    module_ids = {id(p) for p in model.module_parameters()}
    assert not module_ids & {id(p) for p in network.parameters()}
    assert not any("aux_module" in name for name in network.state_dict())
    x = torch.randn(2, 3, SIZE, SIZE)
    assert count_flops(network, x[:1]) == count_flops(single, x[:1]) > 0
    model.eval()
    with torch.no_grad():
        assert torch.equal(network(x), model(x)["normal"])


def test_one_module_head_per_task_is_required():
    tasks = make_tasks()
    branch = build_branch("tiny_resnet", tasks["normal"], image_size=SIZE)
    aux_heads = {t: build_head(branch, tasks[t], SIZE) for t in ("seg", "scene")}
    with pytest.raises(ValueError, match="module head"):
        AuxModuleNet(tasks, "normal", branch, aux_heads, {"normal": build_head(branch, tasks["normal"], SIZE)})
