"""benchmarks/a2p_contribution.py: what the a2p links carry, measured through the fusion ops' own projections."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from auxnas.config import config_from_dict
from auxnas.data import build_splits
from auxnas.methods import build_model
from auxnas.tasks import build_tasks

ROOT = Path(__file__).parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("a2p_contribution", ROOT / "benchmarks" / "a2p_contribution.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def model_and_loader(tmp_path):
    cfg = config_from_dict({
        "name": "t", "out_dir": str(tmp_path / "run"),
        "data": {"image_size": 32, "num_train": 16, "num_test": 8, "val_fraction": 0.25, "batch_size": 4},
        "tasks": {"primary": "depth", "aux": ["disparity"]},
        "model": {"backbone": "tiny_resnet"},
        "method": {"name": "aux_nas"},
    })
    splits = build_splits(cfg.data, progress=False)
    torch.manual_seed(0)
    model = build_model(cfg, build_tasks(cfg, splits.num_classes))
    return model, DataLoader(splits.val, batch_size=4)


def test_zero_initialised_projections_carry_nothing(model_and_loader):
    model, loader = model_and_loader
    script = _script()
    cells = script.a2p_contributions(model, loader)
    assert set(cells) == set(model.primary_fusions)
    assert all(c["contribution"] == 0.0 and c["proj_norm"] == 0.0 for c in cells.values())
    assert all(c["a2p_max"] == pytest.approx(0.001) for c in cells.values())  # the released initial strength
    val = script.kept_and_cut(model, loader)
    assert val["kept"] == val["cut"]


def test_a_grown_projection_carries_in_proportion_to_its_weight(model_and_loader):
    model, loader = model_and_loader
    script = _script()
    last = list(model.primary_fusions)[-1]
    with torch.no_grad():
        model.primary_fusions[last].proj.weight.normal_()
    once = script.a2p_contributions(model, loader)[last]
    with torch.no_grad():
        model.primary_fusions[last].proj.weight.mul_(2)
    twice = script.a2p_contributions(model, loader)[last]
    assert once["contribution"] > 0
    assert twice["contribution"] == pytest.approx(2 * once["contribution"], rel=1e-4)
    assert twice["proj_norm"] == pytest.approx(2 * once["proj_norm"], rel=1e-5)
    assert all(c["contribution"] == 0.0 for cell, c in script.a2p_contributions(model, loader).items() if cell != last)
    val = script.kept_and_cut(model, loader)
    assert val["kept"] != val["cut"]
