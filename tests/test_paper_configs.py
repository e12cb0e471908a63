"""Every configs/paper/*.yaml trains for two steps on a fixture of its dataset with a tiny backbone."""

import math
from pathlib import Path

import pytest
from test_data_nddr import write_nddr
from test_data_taskonomy import write_taskonomy
from test_readers import write_dataset

from auxnas.config import load_config, resolve_config_path
from auxnas.storage import load_checkpoint
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
    assert (cfg.method, cfg.tasks, cfg.weighting) == (full.method, full.tasks, full.weighting)  # shrunk, not changed
    result = fit(cfg, progress=False)
    assert result.best_epoch == 1 and len(result.history) == 1
    assert result.conventions[cfg.tasks.primary]  # the result file says which conventions produced it
    # every task was trained on and evaluated, on every image of the test split
    losses = result.history[0].train_task_losses
    assert set(losses) == set(cfg.tasks.all) and all(math.isfinite(v) and v > 0 for v in losses.values())
    assert set(result.test_best) == set(cfg.tasks.all)
    assert len({m["num_images"] for m in result.test_best.values()}) == 1 and result.test_best[cfg.tasks.primary][
        "num_images"] > 0
    # the search ran: an architecture step before every network step (one or two: the fixtures are small), each
    # updating every link logit and the network step every weight of the network
    state = load_checkpoint(tmp_path / "run" / "last.pt")["state"]
    steps = float(state["step"])
    assert steps in (1.0, 2.0) and state["links"]["steps"][-1] == steps
    assert {float(s["step"]) for s in state["arch_optimizer"]["state"].values()} == {steps}
    assert len(state["arch_optimizer"]["state"]) == len(state["links"]["names"])  # one logit vector per link set
    assert state["optimizer"]["state"]  # Adam's moments or SGD's momentum: the network step updated the weights
