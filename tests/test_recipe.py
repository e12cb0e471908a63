"""The authors' recipe: single-task runs first, then the method initialised from them, continuing when rerun."""

import json
import shutil

import torch
import yaml

import auxnas.recipe
from auxnas.cli import main
from auxnas.config import load_config
from auxnas.data import build_splits
from auxnas.methods import build_model
from auxnas.recipe import recipe_stages
from auxnas.storage import load_checkpoint
from auxnas.tasks import build_tasks

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


def test_a_rerun_with_another_config_never_replaces_finished_stages(tmp_path, monkeypatch, capsys):
    out = tmp_path / "recipe"
    stages = dict(recipe_stages(load_config("demo", OVERRIDES), out))
    for stage, cfg in stages.items():  # finished stages, as a finished recipe leaves them
        (out / stage).mkdir(parents=True)
        (out / stage / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        (out / stage / "metrics.json").write_text(json.dumps({"test_best": {cfg.tasks.primary: {"mean_angle": 30.0}}}))
        (out / stage / "best.pt").write_bytes(b"weights")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(auxnas.recipe, "fit", no_training)
    assert main(["recipe", "demo", *OVERRIDES, "--out", str(out), "--quiet"]) == 0  # the same config continues
    capsys.readouterr()
    assert main(["recipe", "demo", *OVERRIDES, "train.lr=0.01", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"auxnas: error: {out / 'single-normal'}: holds a run of another config")
    assert "train.lr: recorded 0.002, now 0.01" in err and "choose another --out" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_run_initialised_from_others_evaluates_after_they_are_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "recipe"
    auxnas.recipe.run_recipe("demo", OVERRIDES, out_dir=out, progress=False)
    for stage in ("single-normal", "single-seg"):
        shutil.rmtree(out / stage)
    assert main(["evaluate", str(out / "aux_g"), "--json"]) == 0  # the checkpoint holds every weight
