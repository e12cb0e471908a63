"""End-to-end single-task training: loss goes down, beats chance on held-out data, run directory is complete."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from auxnas.cli import main
from auxnas.config import config_from_dict, replace
from auxnas.data import build_splits
from auxnas.engine.evaluation import is_better
from auxnas.engine.loaders import steps_per_epoch
from auxnas.engine.optim import build_architecture_optimizer
from auxnas.storage import CheckpointError, load_checkpoint
from auxnas.train import Callback, RunDirectoryError, evaluate, fit


@pytest.fixture
def seg_config(tiny_config):
    return replace(tiny_config, tasks={"primary": "seg"}, data={"num_train": 160, "num_test": 64},
                   train={"epochs": 4, "lr": 0.005})


def test_training_lowers_loss_and_beats_chance(seg_config):
    result = fit(seg_config, progress=False)
    losses = [h.train_loss for h in result.history]
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
    assert result.val_best["seg"]["miou"] == max(h.val["seg"]["miou"] for h in result.history)

    again = evaluate(run, progress=False)
    assert again["seg"]["miou"] == pytest.approx(result.test_best["seg"]["miou"], abs=1e-6)


def test_training_is_reproducible(tiny_config):
    """The same config trains to the same weights, history and metrics, bit for bit, on one machine."""
    cfg = replace(tiny_config, train={"epochs": 2, "max_steps_per_epoch": 2})
    first = fit(cfg, progress=False)
    second = fit(replace(cfg, out_dir=cfg.out_dir + "-again"), progress=False)
    assert first.history == second.history and len(first.history) == 2
    assert (first.test_best, first.test_last, first.best_epoch) == (second.test_best, second.test_last,
                                                                    second.best_epoch)
    a, b = (load_checkpoint(run.out_dir / "last.pt")["model"] for run in (first, second))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert first.history[0].train_loss != first.history[1].train_loss  # it did train


class ConvLayouts(Callback):
    """The layouts of the 4-D parameters the network steps run with."""

    def __init__(self) -> None:
        self.channels_last: set[bool] = set()

    def on_losses(self, state, losses) -> None:
        self.channels_last |= {p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                               for p in state.model.parameters() if p.dim() == 4 and p.shape[-1] > 1}


def test_channels_last_trains_the_same_network_in_the_nhwc_layout(tiny_config):
    """``train.channels_last``: every convolution weight is NHWC while training, and the run ends where the default
    layout's does up to float rounding (the same computation in another memory order); its checkpoint loads into a
    model of the default layout (``evaluate``) with the same metrics."""
    # SGD: Adam's normalised steps would turn rounding-level differences of near-zero gradients into whole steps
    tiny_config = replace(tiny_config, tasks={"aux": ["seg"]}, method={"name": "aux_nas"},
                          train={"epochs": 1, "max_steps_per_epoch": 3, "optimizer": "sgd", "lr": 0.05})
    layouts = {}
    results = {}
    for channels_last in (False, True):
        cfg = replace(tiny_config, out_dir=f"{tiny_config.out_dir}-{channels_last}",
                      train={"channels_last": channels_last})
        layouts[channels_last] = ConvLayouts()
        results[channels_last] = fit(cfg, progress=False, callbacks=[layouts[channels_last]])
    assert (layouts[False].channels_last, layouts[True].channels_last) == ({False}, {True})
    default, nhwc = (load_checkpoint(results[c].out_dir / "last.pt")["model"] for c in (False, True))
    for key, value in default.items():
        assert torch.allclose(nhwc[key].float(), value.float(), rtol=1e-3, atol=1e-5), key
    assert results[True].history[0].train_loss == pytest.approx(results[False].history[0].train_loss, rel=1e-4)
    again = evaluate(results[True].out_dir, split="test", progress=False)
    for task, metrics in results[True].test_best.items():
        assert again[task] == pytest.approx(metrics, rel=1e-6)


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


def test_data_preview_command_prints_the_file_it_wrote(tmp_path, capsys):
    folder = tmp_path / "previews"
    folder.mkdir()
    for out, written in ((tmp_path / "p.png", tmp_path / "p.png"), (folder, folder / "preview.png"),
                         (tmp_path / "grid", tmp_path / "grid.png")):
        assert main(["data", "preview", "--out", str(out), "--num", "4", "--image-size", "32"]) == 0
        assert capsys.readouterr().out.strip() == f"wrote {written}"
        assert written.read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "file").write_text("x")
    assert main(["data", "preview", "--out", str(tmp_path / "file" / "p.png"), "--image-size", "32"]) == 2
    assert "file" in capsys.readouterr().err


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


def test_a_non_empty_out_dir_is_refused_unless_overwrite(tiny_config, capsys):
    tiny_config = replace(tiny_config, train={"epochs": 1, "max_steps_per_epoch": 1})
    fit(tiny_config, progress=False)
    with pytest.raises(RunDirectoryError, match="holds files"):
        fit(tiny_config, progress=False)
    assert main(["train", "quickstart", f"out_dir={tiny_config.out_dir}", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    again = fit(tiny_config, progress=False, overwrite=True)
    assert again.best_epoch == 1


class Diverged(Callback):
    """Every epoch's validation metric turns NaN, as a diverged run's does."""

    def on_validated(self, run, record):
        record.val["normal"]["mean_angle"] = float("nan")


def test_a_diverged_run_never_reports_an_older_checkpoint(tiny_config):
    tiny_config = replace(tiny_config, train={"epochs": 2, "max_steps_per_epoch": 1})
    fit(tiny_config, progress=False)  # an earlier, healthy run leaves best.pt behind
    with pytest.raises(FloatingPointError, match=r"never finite \(not finite from epoch 1 on\)"):
        fit(tiny_config, progress=False, overwrite=True, callbacks=[Diverged()])
    assert not (Path(tiny_config.out_dir) / "best.pt").exists()  # the older run's checkpoint is gone, not reused
    assert not is_better(float("inf"), None, higher_is_better=False)


@pytest.mark.parametrize("schedule", ["follow", "constant"])
def test_architecture_optimizer_settings(tiny_config, schedule):
    cfg = dataclasses.replace(tiny_config, method=dataclasses.replace(
        tiny_config.method, arch_lr=0.1, arch_betas=[0.5, 0.999], arch_weight_decay=1e-3, arch_schedule=schedule))
    logits = torch.nn.Parameter(torch.zeros(3))
    optimizer, lr_schedule = build_architecture_optimizer([logits], cfg, total_steps=10)
    group = optimizer.param_groups[0]
    assert group["betas"] == (0.5, 0.999) and group["weight_decay"] == 1e-3
    for _ in range(5):
        optimizer.step()
        lr_schedule.step()
    expected = 0.1 if schedule == "constant" else 0.1 * 0.5**0.9  # the network's default poly schedule
    assert group["lr"] == pytest.approx(expected)


def test_constant_architecture_rate_prunes_a2p_from_the_papers_init_in_a_short_run(tmp_path):
    """From a2p_init 0.5, following the network's poly decay leaves a2p above the export threshold; constant doesn't."""
    final = {}
    for schedule in ("follow", "constant"):
        cfg = config_from_dict({
            "out_dir": str(tmp_path / schedule),
            "data": {"image_size": 16, "num_train": 48, "num_test": 8, "val_fraction": 0.25, "batch_size": 2},
            "tasks": {"primary": "normal", "aux": ["seg"]},
            "model": {"backbone": "tiny_resnet"},
            "method": {"name": "aux_nas", "a2p_init": 0.5, "arch_lr": 0.35, "arch_schedule": schedule, "arch_every": 1},
            "train": {"epochs": 8, "max_steps_per_epoch": 10},
        })
        final[schedule] = max(fit(cfg, progress=False).history[-1].recorded["link_strengths"]["a2p/seg"])
    assert final["constant"] < 0.01 < final["follow"]


def aux_head_config(tiny_config, weighting: dict, epochs: int):
    return replace(tiny_config, method={"name": "aux_head"}, tasks={"aux": ["seg"]}, weighting=weighting,
                   train={"epochs": epochs, "max_steps_per_epoch": 2})


def test_metrics_show_what_the_weighting_did_and_checkpoints_keep_its_state(tiny_config):
    cfg = aux_head_config(tiny_config, {"name": "dwa", "options": {"fix_primary": False}}, epochs=3)
    result = fit(cfg, progress=False)
    weights = [h.weighting["weight"] for h in result.history]
    assert weights[0] == {"normal": 1.0, "seg": 1.0}  # DWA needs two epochs of history
    assert weights[2]["normal"] != pytest.approx(1.0) and sum(weights[2].values()) == pytest.approx(2.0)
    recorded = json.loads((result.out_dir / "metrics.json").read_text())["history"][2]["weighting"]
    assert recorded["weight"] == pytest.approx(weights[2])

    from auxnas.weighting import build_weighting

    state = load_checkpoint(result.out_dir / "last.pt")["weighting"]
    restored = build_weighting("dwa", ["normal", "seg"], "normal", fix_primary=False)
    restored.load_state_dict(state)
    fresh = build_weighting("dwa", ["normal", "seg"], "normal", fix_primary=False)
    assert {t: float(w) for t, w in restored.weights().items()} != {t: float(w) for t, w in fresh.weights().items()}


def test_metrics_show_gradient_norms_and_cosines_of_gradient_methods(tiny_config):
    result = fit(aux_head_config(tiny_config, {"name": "pcgrad_aux"}, epochs=1), progress=False)
    stats = result.history[0].weighting
    assert set(stats["grad_norm"]) == {"normal", "seg"} and all(v > 0 for v in stats["grad_norm"].values())
    assert set(stats["cos_primary"]) == {"seg"} and -1.0 <= stats["cos_primary"]["seg"] <= 1.0


def test_cli_bench_cost_passes_its_arguments_to_the_benchmark(tmp_path, monkeypatch, capsys):
    """The benchmark itself runs for real in tests/test_bench_cost.py; running it twice cost the suite ~25 s."""
    calls = []
    monkeypatch.setattr("auxnas.bench.cost.run_cost_benchmark", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main(["bench", "cost", "--preset", "tiny", "--out", str(tmp_path), "--quiet"]) == 0
    assert calls == [(("tiny", str(tmp_path)), {"device": "cpu", "progress": False})]
    with pytest.raises(SystemExit):
        main(["bench", "accuracy", "--preset", "nope"])


def test_a_trailing_batch_of_one_image_is_left_out(tmp_path, monkeypatch):
    """17 training images in batches of 8: 8, 8 and 1; BatchNorm cannot train on the last one."""
    from auxnas.config import load_config

    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    base = ["data.image_size=32", "data.num_train=21", "data.val_fraction=0.2", "data.num_test=4",
            "data.batch_size=8", "train.epochs=1", "tasks.primary=seg", "tasks.aux=[]", "method.name=single",
            "train.tensorboard=false"]
    cfg = load_config("demo", [*base, f"out_dir={tmp_path / 'run'}"])
    assert steps_per_epoch(17, cfg, bilevel=False) == 2 and steps_per_epoch(18, cfg, bilevel=False) == 3
    assert fit(cfg, progress=False).best_epoch == 1
    tiny = load_config("demo", [*base, "data.num_train=3", "data.val_fraction=0.5", f"out_dir={tmp_path / 'tiny'}"])
    with pytest.raises(ValueError, match="make no batch of at least 2 images"):
        fit(tiny, progress=False)


def test_epoch_records_round_trip_through_their_metrics_json_form():
    from pathlib import Path

    from auxnas.engine.record import EpochRecord

    record = EpochRecord(3, 0.5, {"normal": 0.4}, {"weight": {"normal": 1.0}}, {"normal": {"mean_angle": 30.0}},
                         {"a2p_kept": {"normal": {"mean_angle": 29.0}}}, {"shared_grad_norm": {"normal": 1.0}},
                         {"link_strengths": {"p2a/seg": [0.5]}})
    data = json.loads(json.dumps(record.to_dict()))
    assert data["val_a2p_kept"] == {"normal": {"mean_angle": 29.0}} and data["link_strengths"] == {"p2a/seg": [0.5]}
    assert EpochRecord.from_dict(data) == record
    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "records"
    path = next(committed.glob("central-tiny_resnet-64px-e30-lr0p002/ctrl-depth/aux_nas/seed0/metrics.json"), None)
    if path is not None:  # a committed Aux-NAS run of an earlier auxnas reads back the same
        history = json.loads(path.read_text())["history"]
        assert [EpochRecord.from_dict(h).to_dict() for h in history] == history
