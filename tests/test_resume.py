"""Exact resume: an interrupted run continued with --resume ends with the weights of an uninterrupted one."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import auxnas.engine.fit
from auxnas.cli import main
from auxnas.config import load_config
from auxnas.storage import load_checkpoint
from auxnas.train import Callback, RunDirectoryError, fit, resume_run

OVERRIDES = [
    "data.image_size=32", "data.num_train=40", "data.num_test=8", "data.val_fraction=0.2", "data.batch_size=8",
    "train.epochs=3", "tasks.primary=normal", "tasks.aux=[seg]", "data.augment=true", "train.lr=0.003",
]


class InterruptAtValidation(Callback):
    """Raise KeyboardInterrupt at epoch ``epoch``'s validation: after its training, before its checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validated(self, run, record) -> None:
        if record.epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", [
    # bilevel search, random task order in PCGrad; NHWC weights and optimiser state through the checkpoint; the
    # fusion projections' learning-rate group
    ["method.name=aux_nas", "weighting.name=pcgrad_aux", "train.channels_last=true", "method.fusion_lr_factor=10"],
    ["method.name=adashare_aux", "method.adashare_skip_downsample=true", "weighting.name=gradnorm"],  # sampled
    # a meta-learned weighting: its weights, Adam moments and cadence; SGD's momentum in its look-ahead
    ["method.name=aux_head", "weighting.name=auto_lambda", "weighting.options.every=2", "train.optimizer=sgd"],
    # a held-out auxiliary set and a learned non-linear combination with its own SGD's momentum
    ["method.name=aux_head", "weighting.name=auxilearn", "weighting.options={every: 2, combine: nonlinear}"],
])
def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch, method):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    whole = fit(load_config("demo", [*OVERRIDES, *method, f"out_dir={tmp_path / 'whole'}"]), progress=False)
    cut = load_config("demo", [*OVERRIDES, *method, f"out_dir={tmp_path / 'cut'}"])
    with pytest.raises(KeyboardInterrupt):  # epoch 2 trained, not saved: resumes after epoch 1
        fit(cut, progress=False, callbacks=[InterruptAtValidation(2)])
    interrupted = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert interrupted["epoch"] == 1 and interrupted["state"]["elapsed_s"] > 0
    began = time.perf_counter()
    resumed = resume_run(tmp_path / "cut", progress=False)
    resume_s = time.perf_counter() - began  # the wall time counts the first session up to its last epoch too
    assert resume_s < resumed.wall_time_s <= interrupted["state"]["elapsed_s"] + resume_s
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "whole" / name)
        b = load_checkpoint(tmp_path / "cut" / name)
        assert a["epoch"] == b["epoch"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
    assert resumed.test_best == whole.test_best and resumed.best_epoch == whole.best_epoch
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in whole.history]


def test_resume_from_the_command_line_and_refusals(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    args = ["train", "demo", *OVERRIDES, "method.name=aux_head", f"out_dir={run}", "--quiet"]
    with monkeypatch.context() as patch:  # the command line takes no callback: add one to fit's
        end_epoch = auxnas.engine.fit.end_epoch
        patch.setattr(auxnas.engine.fit, "end_epoch",
                      lambda run, record, callbacks: end_epoch(run, record, [*callbacks, InterruptAtValidation(3)]))
        assert main(args) == 130
    assert f"continue with: auxnas train --resume {run}" in capsys.readouterr().err
    # TensorBoard reads event files in name order: start second, host, process, then a per-process writer counter
    # compared as text (writer 10 sorts before writer 9); a resume within the interrupted run's first second, in
    # the same process, may sort first and have its epoch 3 dropped as out of order. Real resumes start later.
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.05)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert load_checkpoint(run / "last.pt")["epoch"] == 3
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/normal/mean_angle")] == [1, 2, 3]  # one log, across the restart
    assert main(["train", "--resume", str(run), "train.epochs=4"]) == 2
    assert "keeps its own config" in capsys.readouterr().err
    assert main(["train"]) == 2
    # a folder whose config.yaml and checkpoint belong to different runs is never resumed
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("tiny_resnet", "tiny_vgg"))
    with pytest.raises(RunDirectoryError, match="another config"):
        resume_run(run, progress=False)
    with pytest.raises(RunDirectoryError, match="no config.yaml"):
        resume_run(tmp_path / "nowhere", progress=False)


def test_sigterm_stops_a_training_process_resumably(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "AUXNAS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "auxnas", "train", "demo", *OVERRIDES, "train.epochs=50", "method.name=single",
            "tasks.aux=[]", f"out_dir={run}", "--quiet"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "last.pt").is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"continue with: auxnas train --resume {run}" in err and "Traceback" not in err
    assert load_checkpoint(run / "last.pt")["epoch"] >= 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_or_an_unknown_device_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", "demo", *OVERRIDES, "train.epochs=1", "method.name=single", "tasks.aux=[]",
                 "train.device=cuda", f"out_dir={run}", "--quiet"]) == 2
    assert "device 'cuda': CUDA is not available on this machine; use auto or cpu" in capsys.readouterr().err
    assert not run.exists()  # refused before anything is written
    assert main(["train", "demo", *OVERRIDES, "train.epochs=1", "method.name=single", "tasks.aux=[]", f"out_dir={run}",
                 "--quiet"]) == 0
    for device, message in (("cuda:1", "CUDA is not available"), ("gpu", "expected auto, cpu, cuda or cuda:N")):
        assert main(["evaluate", str(run), "--device", device]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_last_pt_holds_the_weighting_state_once(tmp_path, monkeypatch):
    """The weighting's state sits beside the training state in last.pt, not in it too; a resumed run reads it."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    cfg = load_config("demo", [*OVERRIDES, "train.epochs=1", "weighting.name=uncertainty", f"out_dir={tmp_path}"])
    fit(cfg, progress=False)
    last = load_checkpoint(tmp_path / "last.pt")
    assert "weighting" not in last["state"] and set(last["weighting"]) == {"log_vars.seg"}
