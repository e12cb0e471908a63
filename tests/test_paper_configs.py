"""Every configs/paper/*.yaml trains for two steps on a fixture of its dataset with a tiny backbone."""

from pathlib import Path

import pytest
from test_data_nddr import write_nddr
from test_data_taskonomy import write_taskonomy
from test_readers import write_dataset

from auxnas.config import load_config, resolve_config_path
from auxnas.train import fit

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"

#: config -> (fixture writer, overrides that shrink it)
CASES = {
    "nyuv2-vgg16-seg-normal": (write_nddr, ["model.backbone=tiny_vgg", "model.dilated=false"]),
    "nyuv2-vitb-normal-seg": (write_nddr, ["model.backbone=tiny_vit", "data.image_size=32"]),
    "nyuv2-vitb-normal-seg-depth": (write_nddr, ["model.backbone=tiny_vit", "data.image_size=32"]),
    "cityscapes-vgg16-seg-disparity": (lambda root: write_dataset(root, "cityscapes", classes=19),
                                       ["model.backbone=tiny_vgg", "model.dilated=false"]),
    # 6 training views in halves of 3: one batch of 3 each (a batch of 1 cannot train BatchNorm)
    "taskonomy-resnet50-object-scene": (write_taskonomy, ["model.backbone=tiny_resnet", "data.image_size=32",
                                                          "data.batch_size=3"]),
}


def test_every_paper_config_has_a_case_and_is_packaged():
    assert sorted(p.stem for p in PAPER.glob("*.yaml")) == sorted(CASES)
    for name in CASES:
        assert resolve_config_path(f"paper/{name}").resolve() == (PAPER / f"{name}.yaml").resolve()


@pytest.mark.parametrize("name", sorted(CASES))
def test_paper_config_runs_on_its_fixture(tmp_path, name):
    write, shrink = CASES[name]
    root = tmp_path / "data"
    write(root)
    cfg = load_config(PAPER / f"{name}.yaml", [
        f"data.root={root}", "data.num_workers=0", "data.batch_size=2", "train.epochs=1",
        "train.max_steps_per_epoch=2", "train.tensorboard=false", f"out_dir={tmp_path / 'run'}", *shrink,
    ])
    full = load_config(PAPER / f"{name}.yaml", [f"data.root={root}"])
    assert full.method.name == "aux_nas" and full.tasks.aux  # what the paper runs, before shrinking
    result = fit(cfg, progress=False)
    assert result.best_epoch == 1
    assert result.conventions[cfg.tasks.primary]  # the result file says which conventions produced it
