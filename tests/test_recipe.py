"""The authors' recipe: single-task runs first, then the method initialised from them, continuing when rerun."""

import shutil

import pytest
import torch

import auxnas.recipe
from auxnas.cli import main
from auxnas.config import load_config
from auxnas.data import build_splits
from auxnas.io import load_checkpoint
from auxnas.methods import build_model
from auxnas.recipe import recipe_stages
from auxnas.train import build_tasks

OVERRIDES = [
    "data.image_size=32", "data.num_train=24", "data.num_test=8", "data.val_fraction=0.25", "data.batch_size=8",
    "train.epochs=1", "tasks.primary=normal", "tasks.aux=[seg]", "method.name=aux_g",
    "data.labelled_fraction={normal: 0.5}",
]


def test_recipe_trains_single_tasks_then_the_method_from_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "recipe"
    assert main(["recipe", "demo", *OVERRIDES, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for stage in ("single-normal", "single-seg", "aux_g"):
        assert f"{stage}: {out / stage}" in printed
    stages = dict(recipe_stages(load_config("demo", OVERRIDES), out))
    assert stages["single-normal"].data.labelled_fraction == {"normal": 0.5}  # the labels the method sees
    assert stages["single-seg"].data.labelled_fraction == {} and stages["single-seg"].tasks.aux == []
    final = stages["aux_g"]
    assert final.init.primary == str(out / "single-normal") and final.init.aux == {"seg": str(out / "single-seg")}
    # the method starts from the single-task runs' weights
    model = build_model(final, build_tasks(final, build_splits(final.data, progress=False).num_classes))
    for task in ("normal", "seg"):
        trained = load_checkpoint(out / f"single-{task}" / "best.pt")["model"]
        start = model.branches[task].state_dict()
        assert all(torch.equal(start[k.removeprefix("branch.")], v) for k, v in trained.items())

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(auxnas.recipe, "fit", no_training)
    assert main(["recipe", "demo", *OVERRIDES, "--out", str(out), "--quiet"]) == 0
    with pytest.raises(AssertionError, match="trained again"):  # another config is another run
        auxnas.recipe.run_recipe("demo", [*OVERRIDES, "train.lr=0.01"], out_dir=out, progress=False)


def test_a_run_initialised_from_others_evaluates_after_they_are_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "recipe"
    auxnas.recipe.run_recipe("demo", OVERRIDES, out_dir=out, progress=False)
    for stage in ("single-normal", "single-seg"):
        shutil.rmtree(out / stage)
    assert main(["evaluate", str(out / "aux_g"), "--json"]) == 0  # the checkpoint holds every weight
