"""Branches: forward shapes of every family, cells and stages, heads, pretrained loading."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models.vgg import VGG
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from auxnas.backbones import BACKBONE_NAMES, build_branch, build_head
from auxnas.backbones.vgg import TINY_VGG
from auxnas.backbones.vit import VITS


@dataclass
class StandIn:
    """The two attributes of a task that branches read."""

    kind: str
    out_channels: int
    name: str = "stand_in"


DENSE = StandIn("dense", 3)
IMAGE = StandIn("image", 5)


def run_cells(branch, x):
    """Drive the branch the way fusing methods do: stem, then every cell, keeping all outputs."""
    h = branch.stem(x)
    outputs = []
    for cell in branch.cells:
        h = cell(h)
        outputs.append(h)
    return outputs


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_vgg", "tiny_vit"])
@pytest.mark.parametrize("size", [32, 64])
def test_tiny_forward_shapes(name, size):
    x = torch.randn(2, 3, size, size)
    assert build_branch(name, DENSE, image_size=size)(x).shape == (2, 3, size, size)
    assert build_branch(name, IMAGE, image_size=size)(x).shape == (2, 5)


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_vgg", "tiny_vit", "resnet18", "vgg16_bn", "vit_small"])
@pytest.mark.parametrize("task", [DENSE, IMAGE], ids=["dense", "image"])
def test_cells_drive_the_same_network(name, task):
    branch = build_branch(name, task, image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outputs = run_cells(branch, x)
        assert torch.equal(branch.decode(outputs, (32, 32)), branch(x))
    assert len(branch.cells) == sum(branch.stage_depths) == len(branch.cell_channels) == len(branch.cell_stage)
    channel_dim = 1 if branch.feature_format == "map" else 2
    assert [out.shape[channel_dim] for out in outputs] == list(branch.cell_channels)
    ends = [sum(branch.stage_depths[: s + 1]) - 1 for s in range(len(branch.stage_depths))]
    assert list(branch.stage_ends) == ends
    assert [branch.cell_stage[e] for e in ends] == list(range(len(ends)))
    if branch.feature_format == "tokens":
        assert branch.num_prefix_tokens == 1
        assert all(out.shape[1] == 1 + (32 // branch.patch_size) ** 2 for out in outputs)
    else:  # a new stage never runs at a finer resolution than the one before
        sides = [outputs[e].shape[-1] for e in ends]
        assert sides == sorted(sides, reverse=True)


@pytest.mark.parametrize(("name", "depths", "last_channels"), [
    ("resnet18", (2, 2, 2, 2), 512), ("resnet50", (3, 4, 6, 3), 2048), ("tiny_resnet", (1, 1, 1, 1), 128),
    ("vgg16_bn", (2, 2, 3, 3, 3), 512), ("tiny_vgg", (1, 1, 2, 2, 2), 64),
    ("vit_tiny", (3, 3, 3, 3), 192), ("vit_base", (3, 3, 3, 3), 768), ("tiny_vit", (1, 1, 1, 1), 48),
])
def test_layouts(name, depths, last_channels):
    branch = build_branch(name, DENSE, image_size=32)
    assert branch.stage_depths == depths
    assert len(branch.cells) == sum(depths)
    assert branch.cell_channels[-1] == last_channels


def test_vgg_cells_are_conv_bn_relu_with_their_pool():
    branch = build_branch("vgg16_bn", IMAGE)
    assert isinstance(branch.stem, nn.Identity)
    first_of_stage = {0, *(e + 1 for e in branch.stage_ends[:-1])}
    for i, cell in enumerate(branch.cells):
        kinds = [type(m) for m in cell]
        pool = [nn.MaxPool2d] if i in first_of_stage and i > 0 else []
        assert kinds == [*pool, nn.Conv2d, nn.BatchNorm2d, nn.ReLU]


@pytest.mark.parametrize("name", ["tiny_resnet", "resnet18"])
def test_dilated_resnet_keeps_stride_8(name):
    x = torch.randn(1, 3, 64, 64)
    dilated = build_branch(name, DENSE, dilated=True).eval()
    plain = build_branch(name, DENSE).eval()
    with torch.no_grad():
        assert run_cells(dilated, x)[-1].shape[-1] == 64 // 8
        assert run_cells(plain, x)[-1].shape[-1] == 64 // 32
        assert dilated(x).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="only supported by ResNets"):
        build_branch("tiny_vit", DENSE, dilated=True)


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_vit"])
def test_extra_heads_read_the_same_taps(name):
    branch = build_branch(name, DENSE, image_size=32)
    outputs = run_cells(branch, torch.randn(2, 3, 32, 32))
    taps = [outputs[i] for i in branch.stage_ends]
    assert build_head(branch, StandIn("dense", 7), 32)(taps, (32, 32)).shape == (2, 7, 32, 32)
    assert build_head(branch, IMAGE, 32)(taps, (32, 32)).shape == (2, 5)


def test_vit_image_size_must_fit_patches():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        build_branch("tiny_vit", DENSE, image_size=36)


def test_pretrained_resnet_round_trip(tmp_path):
    state = timm.create_model("resnet18", pretrained=False).state_dict()  # with its fc: ignored
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": state}, path)
    branch = build_branch("resnet18", DENSE, pretrained=str(path))
    assert torch.equal(branch.stem[0].weight, state["conv1.weight"])
    assert torch.equal(branch.stem[1].running_mean, state["bn1.running_mean"])
    assert torch.equal(branch.cells[-1].conv2.weight, state["layer4.1.conv2.weight"])


def test_pretrained_vgg_round_trip(tmp_path):
    state = VGG(TINY_VGG, norm_layer=nn.BatchNorm2d).state_dict()  # timm's full-size pre-logits MLP: ignored
    path = tmp_path / "vgg.pt"
    torch.save({"model": state}, path)
    branch = build_branch("tiny_vgg", DENSE, pretrained=str(path))
    assert torch.equal(branch.cells[0][0].weight, state["features.0.weight"])
    assert torch.equal(branch.cells[-1][0].weight, state["features.25.weight"])


def test_pretrained_vit_round_trip_at_another_image_size(tmp_path):
    vit = VisionTransformer(**VITS["tiny_vit"], img_size=64)
    nn.init.normal_(vit.norm.weight)
    state = vit.state_dict()
    path = tmp_path / "vit.safetensors"
    save_file(state, str(path))
    branch = build_branch("tiny_vit", IMAGE, image_size=32, pretrained=str(path))
    assert torch.equal(branch.stem.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    assert torch.equal(branch.cells[2].attn.qkv.weight, state["blocks.2.attn.qkv.weight"])
    assert branch.stem.pos_embed.shape == (1, 1 + 4 * 4, 48)  # resampled from the 8 x 8 grid
    assert torch.equal(branch.stem.pos_embed[:, 0], state["pos_embed"][:, 0])  # class token position kept
    assert torch.equal(branch.head.last_norm.weight, state["norm.weight"])  # the final norm moved to the head


def test_pretrained_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_branch("tiny_resnet", DENSE, pretrained=str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        build_branch("tiny_resnet", DENSE, pretrained=str(garbage))
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    del state["layer2.0.conv1.weight"]
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    with pytest.raises(ValueError, match=r"partial\.pth.*missing keys \[layer2\.0\.conv1\.weight\]"):
        build_branch("resnet18", DENSE, pretrained=str(partial))
    with pytest.raises(ValueError, match="do not fit"):  # another architecture
        build_branch("resnet50", DENSE, pretrained=str(tmp_path / "partial.pth"))


def test_hub_weights_offline_fail_clearly(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(RuntimeError, match=r"resnet18: the hub is offline .*pass the local .* file"):
        build_branch("resnet18", DENSE, pretrained="hub")
    with pytest.raises(ValueError, match="tiny"):
        build_branch("tiny_resnet", DENSE, pretrained="timm")


def test_unknown_backbone():
    with pytest.raises(ValueError, match="valid: " + ", ".join(BACKBONE_NAMES)):
        build_branch("resnet9000", DENSE)


@pytest.mark.parametrize(("name", "path"), [
    ("tiny_resnet", "conv2"), ("resnet50", "conv3"), ("tiny_vgg", "0"), ("vgg16_bn", "0"), ("tiny_vit", "mlp.fc2"),
])
def test_last_layer_weight_is_the_last_weight_layer_before_the_head(name, path):
    """GradNorm's layer: a conv or linear weight (never a norm's bias), the last one the cell applies."""
    branch = build_branch(name, DENSE, image_size=32).eval()
    weight = branch.last_layer_weight()
    assert weight is branch.cells[-1].get_submodule(path).weight
    assert weight.ndim >= 2
    seen = []
    hook = branch.cells[-1].get_submodule(path).register_forward_hook(lambda m, i, o: seen.append(o.shape))
    branch(torch.randn(1, 3, 32, 32))
    hook.remove()
    assert seen  # the layer is on the forward path (not, e.g., an unused module)
