"""EfficientNet-Lite0: the packaged ImageNet weights land where they belong and classify real photos; every
method trains and exports on it at exactly single-task cost."""

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from auxnas.backbones import build_branch
from auxnas.backbones.efficientnet import (
    efficientnet_model,
    imagenet_classifier,
    packaged_weights_path,
    timm_state_from_efficientnet_pytorch,
)
from auxnas.backbones.weights import read_state_dict
from auxnas.config import ConfigError, config_from_dict
from auxnas.config.validate import validate
from auxnas.data.transforms import normalise
from auxnas.export import export_primary
from auxnas.tasks import build_task
from auxnas.train import fit

skimage_data = pytest.importorskip("skimage.data")

DEPTH = build_task("depth", {})


def test_packaged_weights_land_where_they_belong():
    """Every tensor of the packaged file is loaded, unchanged, into the timm parameter the name rules give; the
    rules agree with timm's parameter order, and cover every timm tensor."""
    source = read_state_dict(packaged_weights_path())
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    renamed = timm_state_from_efficientnet_pytorch(source, model)
    assert list(renamed) == list(model.state_dict())  # name rules == verified order, one to one
    loaded = efficientnet_model("efficientnet_lite0", "packaged").state_dict()
    for (src_key, value), key in zip(source.items(), renamed):
        assert torch.equal(loaded[key], value), f"{src_key} -> {key}"
    assert renamed["blocks.0.0.conv_pw.weight"].shape == (16, 32, 1, 1)  # separable block: project is conv_pw
    assert torch.equal(renamed["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"])
    assert torch.equal(renamed["bn2.running_var"], source["_bn1.running_var"])  # top-level _bn1 is the head's BN


def _photo(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1).float() / 255
    x = F.interpolate(x[None], size=(224, 224), mode="bilinear", antialias=True, align_corners=False)[0]
    return normalise(x)[None]  # the datasets' ImageNet normalisation: the branch's stem converts it


def test_pretrained_branch_classifies_real_photos():
    """The branch (stem + cells) with the packaged weights and the ImageNet classifier on top gets scikit-image's
    photos right: the only check that the weights, their padding and the input scaling are all right."""
    branch = build_branch("efficientnet_lite0", DEPTH, pretrained="packaged").eval()
    classifier = imagenet_classifier(efficientnet_model("efficientnet_lite0", "packaged")).eval()
    photos = {"chelsea": (skimage_data.chelsea(), {285}),  # Egyptian cat
              "coffee": (skimage_data.coffee(), {967}),  # espresso
              "motorcycle": (skimage_data.stereo_motorcycle()[0], {665, 670})}  # moped, motor scooter
    for name, (image, classes) in photos.items():
        with torch.no_grad():
            h = branch.stem(_photo(image))
            for cell in branch.cells:
                h = cell(h)
            top = int(classifier(h).argmax())
        assert top in classes, f"{name}: ImageNet class {top}, expected {sorted(classes)}"


def test_branch_taps_strides_4_to_32():
    branch = build_branch("efficientnet_lite0", DEPTH)
    assert branch.stage_depths == (3, 2, 6, 5) and len(branch.cells) == 16
    assert [branch.cell_channels[i] for i in branch.stage_ends] == [24, 40, 112, 320]
    h, sizes = branch.stem(torch.randn(2, 3, 64, 64)), []
    for i, cell in enumerate(branch.cells):
        h = cell(h)
        if i in branch.stage_ends:
            sizes.append(h.shape[-1])
    assert sizes == [16, 8, 4, 2]
    assert branch(torch.randn(2, 3, 64, 64)).shape == (2, 1, 64, 64)


def test_packaged_weights_only_for_efficientnet():
    with pytest.raises(ConfigError, match="model.pretrained: .*packaged.* efficientnet_lite0"):
        validate(config_from_dict({"model": {"backbone": "resnet18", "pretrained": "packaged"}}))
    with pytest.raises(ValueError, match="packaged"):
        build_branch("resnet18", DEPTH, pretrained="packaged")


@pytest.mark.parametrize("method", ["aux_head", "aux_g", "aux_nas"])
def test_methods_train_and_export_at_single_task_cost(tmp_path, method):
    cfg = config_from_dict({
        "name": "t", "out_dir": str(tmp_path / "run"),
        "data": {"image_size": 32, "num_train": 20, "num_test": 4, "val_fraction": 0.2, "batch_size": 8},
        "tasks": {"primary": "depth", "aux": ["disparity"]},
        "model": {"backbone": "efficientnet_lite0", "pretrained": "packaged"},
        "method": {"name": method},
        "train": {"epochs": 1, "lr": 0.001},
    })
    run = fit(cfg, progress=False).out_dir
    report = export_primary(run, tmp_path / "export")
    assert all(report["checks"].values())
    assert report["params"]["exported"] == report["params"]["single_task"]
    assert report["flops_per_image"]["exported"] == report["flops_per_image"]["single_task"] > 0
