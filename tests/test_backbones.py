"""Branches: forward shapes of every family, cells and stages, pretrained loading."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from auxnas.backbones import BACKBONE_NAMES, build_branch, build_head
from auxnas.tasks import build_task

DENSE = build_task("normal", {})
IMAGE = build_task("object", {"object": 5})


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_vgg", "tiny_vit"])
@pytest.mark.parametrize("size", [32, 64])
def test_tiny_forward_shapes(name, size):
    x = torch.randn(2, 3, size, size)
    assert build_branch(name, DENSE, image_size=size)(x).shape == (2, 3, size, size)
    assert build_branch(name, IMAGE, image_size=size)(x).shape == (2, 5)


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_vgg", "tiny_vit", "resnet18", "vit_small"])
def test_cells_drive_the_same_network(name):
    branch = build_branch(name, DENSE, image_size=32).eval()
    assert len(branch.cells) == sum(branch.stage_depths)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        h = branch.stem(x)
        outputs = []
        for cell in branch.cells:
            h = cell(h)
            outputs.append(h)
        assert torch.equal(branch.decode(outputs, (32, 32)), branch(x))
    for out, channels in zip(outputs, branch.cell_channels):
        assert out.shape[1 if branch.feature_format == "map" else 2] == channels
    assert branch.stage_ends[-1] == len(branch.cells) - 1


@pytest.mark.parametrize(("name", "depths"), [
    ("resnet18", (2, 2, 2, 2)), ("resnet50", (3, 4, 6, 3)), ("vgg16_bn", (2, 2, 3, 3, 3)),
    ("vit_base", (3, 3, 3, 3)), ("tiny_vit", (1, 1, 1, 1)),
])
def test_real_layouts(name, depths):
    branch = build_branch(name, DENSE, image_size=32)
    assert branch.stage_depths == depths
    assert branch.stage_ends[0] == depths[0] - 1


def test_dilated_resnet_keeps_stride_8():
    branch = build_branch("resnet18", DENSE, dilated=True).eval()
    h = branch.stem(torch.randn(1, 3, 64, 64))
    for cell in branch.cells:
        h = cell(h)
    assert h.shape[-1] == 64 // 8
    with pytest.raises(ValueError, match="only supported by ResNets"):
        build_branch("tiny_vit", DENSE, dilated=True)


def test_extra_head_reads_the_same_taps():
    branch = build_branch("tiny_vit", DENSE, image_size=32)
    head = build_head(branch, build_task("seg", {"seg": 7}), 32)
    h = branch.stem(torch.randn(2, 3, 32, 32))
    outputs = []
    for cell in branch.cells:
        h = cell(h)
        outputs.append(h)
    assert head([outputs[i] for i in branch.stage_ends], (32, 32)).shape == (2, 7, 32, 32)


@pytest.mark.parametrize(("name", "timm_name", "suffix"), [
    ("resnet18", "resnet18", ".safetensors"), ("tiny_vit", None, ".pth"),
])
def test_pretrained_round_trip(tmp_path, name, timm_name, suffix):
    if timm_name is None:
        source = build_branch(name, DENSE, image_size=32)
        state = {f"blocks.{i}.{k}": v for i, cell in enumerate(source.cells) for k, v in cell.state_dict().items()}
        state.update({k: v for k, v in source.stem.state_dict().items() if not k.startswith("norm_pre")})
    else:
        state = timm.create_model(timm_name, pretrained=False).state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state}, path)
    if timm_name is None:  # tiny ViT: only the blocks and embeddings are in the file; the norm keys are missing
        with pytest.raises(ValueError, match="missing"):
            build_branch(name, DENSE, image_size=32, pretrained=str(path))
        return
    branch = build_branch(name, DENSE, image_size=32, pretrained=str(path))
    assert torch.equal(branch.stem[0].weight, state["conv1.weight"])
    assert torch.equal(branch.cells[-1].conv2.weight, state["layer4.1.conv2.weight"])


def test_pretrained_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_branch("tiny_resnet", DENSE, pretrained=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.pth"):
        build_branch("tiny_resnet", DENSE, pretrained=str(bad))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="offline"):
        build_branch("resnet18", DENSE, pretrained="hub")
    with pytest.raises(ValueError, match="tiny"):
        build_branch("tiny_resnet", DENSE, pretrained="hub")


def test_unknown_backbone():
    with pytest.raises(ValueError, match="valid: " + BACKBONE_NAMES[0]):
        build_branch("resnet9000", DENSE)
