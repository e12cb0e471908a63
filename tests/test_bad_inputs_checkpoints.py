"""Hostile checkpoints: a file that is not a checkpoint of its own config (weights that do not fit, a missing auxnas
key, a pickled module, garbage) is one line naming the path, never a traceback; a good one still loads."""

from pathlib import Path

import pytest
import torch
from bad_inputs import one_line_error

from auxnas.config import config_from_dict
from auxnas.methods import build_model
from auxnas.storage import CheckpointError
from auxnas.tasks import build_tasks
from auxnas.train import load_trained

NUM_CLASSES = {"seg": 13, "object": 10, "scene": 5}


def tiny(**sections) -> dict:
    """A tiny config as a dict, with ``sections`` merged in."""
    base = {
        "data": {"image_size": 32, "num_train": 16, "num_test": 8, "val_fraction": 0.25, "batch_size": 8},
        "tasks": {"primary": "normal", "aux": []}, "model": {"backbone": "tiny_resnet"},
        "train": {"epochs": 1, "max_steps_per_epoch": 1},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


def checkpoint(path: Path, config: dict | None = None, weights: dict | None = None, **payload) -> Path:
    """Save an auxnas checkpoint of the tiny config (or ``config``), with ``weights`` or fresh ones."""
    cfg = config_from_dict(tiny())
    if weights is None:
        weights = build_model(cfg, build_tasks(cfg, NUM_CLASSES)).state_dict()
    torch.save({"config": config or cfg.to_dict(), "model": weights, "epoch": 1, "num_classes": NUM_CLASSES,
                **payload}, path)
    return path


def test_weights_that_do_not_fit_their_config_are_one_line(tmp_path, capsys):
    vgg = config_from_dict(tiny(model={"backbone": "tiny_vgg"})).to_dict()
    seg = config_from_dict(tiny(tasks={"primary": "seg"})).to_dict()
    cases = [
        (checkpoint(tmp_path / "other-backbone.pt", config=vgg), "do not fit"),
        (checkpoint(tmp_path / "other-classes.pt", config=seg, num_classes={"seg": 4}), "do not fit"),
        (checkpoint(tmp_path / "classes-text.pt", config=seg, num_classes="many"), "num_classes"),
        (checkpoint(tmp_path / "not-weights.pt", weights=[1, 2]), "model"),
    ]
    for path, expected in cases:
        with pytest.raises(CheckpointError, match=expected) as info:
            load_trained(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        err = one_line_error(capsys, ["evaluate", str(path), "--quiet"])
        assert str(path) in err and expected in err


@pytest.mark.parametrize("missing", ["num_classes", "epoch", "config", "model"])
def test_a_checkpoint_without_an_auxnas_key_is_one_line(tmp_path, capsys, missing):
    path = checkpoint(tmp_path / "ckpt.pt")
    payload = torch.load(path, weights_only=True)
    del payload[missing]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=missing):
        load_trained(path)
    err = one_line_error(capsys, ["evaluate", str(path)])
    assert str(path) in err and missing in err


def test_a_pickled_module_or_garbage_is_one_line(tmp_path, capsys):
    module, garbage = tmp_path / "module.pt", tmp_path / "garbage.pt"
    torch.save(torch.nn.Linear(2, 2), module)  # torch's refusal of weights_only=True is many lines long
    garbage.write_bytes(bytes(range(256)))
    for path, expected in ((module, "holds Python objects"), (garbage, "cannot be read as a checkpoint")):
        err = one_line_error(capsys, ["evaluate", str(path)])
        assert str(path) in err and expected in err


def test_a_good_checkpoint_still_loads(tmp_path):
    cfg, model, payload = load_trained(checkpoint(tmp_path / "ok.pt"))
    assert cfg.model.backbone == "tiny_resnet" and payload["epoch"] == 1
    older = config_from_dict(tiny()).to_dict()
    older["tasks"]["aux"] = ["seg"]  # a single-task run of an older auxnas that listed (and never used) an aux task
    cfg, model, _ = load_trained(checkpoint(tmp_path / "older.pt", config=older))
    assert cfg.method.name == "single" and cfg.tasks.aux == [] and list(model.tasks) == ["normal"]
