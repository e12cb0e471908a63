"""End-to-end single-task training: loss goes down, beats chance on held-out data, run directory is complete."""

import dataclasses
import json

import pytest
import torch

from auxnas.cli import main
from auxnas.data import build_splits
from auxnas.io import CheckpointError, load_checkpoint
from auxnas.train import evaluate, fit


@pytest.fixture
def seg_config(tiny_config):
    cfg = dataclasses.replace(tiny_config)
    cfg.tasks = dataclasses.replace(cfg.tasks, primary="seg")
    cfg.data = dataclasses.replace(cfg.data, num_train=160, num_test=64)
    cfg.train = dataclasses.replace(cfg.train, epochs=4, lr=0.005)
    return cfg


def test_training_lowers_loss_and_beats_chance(seg_config):
    result = fit(seg_config, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]

    # chance: always predicting the most frequent class of the test set
    test = build_splits(seg_config.data, progress=False).test
    labels = torch.stack([test[i]["seg"] for i in range(len(test))])
    valid = labels[labels != 255]
    majority = torch.bincount(valid).max().item() / valid.numel() * 100
    assert result.test_best["seg"]["pixel_acc"] > majority + 5

    run = result.out_dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selection"] == "val seg/miou"
    assert metrics["best_epoch"] == result.best_epoch
    assert set(metrics["test_best"]) == {"seg"}
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == result.best_epoch
    assert load_checkpoint(run / "last.pt")["epoch"] == seg_config.train.epochs
    # the selected epoch has the best validation mIoU of the whole history
    assert result.val_best["seg"]["miou"] == max(h["val"]["seg"]["miou"] for h in result.history)

    again = evaluate(run, progress=False)
    assert again["seg"]["miou"] == pytest.approx(result.test_best["seg"]["miou"], abs=1e-6)


def test_training_is_reproducible(tiny_config):
    tiny_config.train = dataclasses.replace(tiny_config.train, epochs=1, max_steps_per_epoch=2)
    first = fit(tiny_config, progress=False).history[0]["train_loss"]
    tiny_config.out_dir = tiny_config.out_dir + "-again"
    second = fit(tiny_config, progress=False).history[0]["train_loss"]
    assert first == pytest.approx(second, rel=1e-5)


def test_cli_train_and_evaluate(tiny_config, tmp_path, capsys):
    out = tmp_path / "cli-run"
    code = main([
        "train", "quickstart", f"out_dir={out}", "data.image_size=32", "data.num_train=48", "data.num_test=16",
        "data.batch_size=16", "train.epochs=1", "train.max_steps_per_epoch=2", "--quiet",
    ])
    assert code == 0
    assert "test metrics of the selected checkpoint" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--json", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "mean_angle" in printed["normal"]


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert main(["train", "quickstart", "train.epochz=1"]) == 2
    assert "unknown key train.epochz" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_data_preview_command(tmp_path):
    out = tmp_path / "preview.png"
    assert main(["data", "preview", "--out", str(out), "--num", "4", "--image-size", "32"]) == 0
    assert out.stat().st_size > 1000


def test_cli_reports_offline_hub_weights_clearly(tmp_path, capsys, monkeypatch):
    import timm

    create = timm.create_model

    def no_network(*args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("network is unreachable")
        return create(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_network)
    code = main(["train", "quickstart", "model.backbone=resnet18", "model.pretrained=hub", f"out_dir={tmp_path}",
                 "data.num_train=8", "data.num_test=4", "--quiet"])
    assert code == 2
    assert "could not fetch timm hub weights for resnet18" in capsys.readouterr().err


def test_overrides_may_follow_options(tmp_path, capsys):
    code = main(["train", "quickstart", "--quiet", f"out_dir={tmp_path / 'run'}", "data.num_train=12",
                 "data.num_test=4", "data.image_size=32", "train.epochs=1", "train.max_steps_per_epoch=1"])
    assert code == 0 and (tmp_path / "run" / "metrics.json").is_file()
    with pytest.raises(SystemExit):
        main(["train", "quickstart", "--quiet", "--bogus"])
