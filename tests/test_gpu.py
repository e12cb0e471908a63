"""CUDA checks (marker ``gpu``): a bfloat16 training run, an exact-enough resume and, on two GPUs, NCCL data
parallelism against one process. Skipped where there is no GPU (every CPU machine, CI); run them the day one is
lent: ``pytest -m gpu``."""

import pytest
import torch
from distributed_helpers import BASE, compare, run_single, run_workers
from test_resume import OVERRIDES, InterruptAtValidation

from auxnas.config import load_config
from auxnas.storage import load_checkpoint
from auxnas.train import fit, resume_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_a_bfloat16_run_trains_and_records_its_float_format(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    cfg = load_config("demo", [*OVERRIDES, "method.name=aux_nas", "train.device=cuda", "train.amp=true",
                               "train.channels_last=true", f"out_dir={tmp_path / 'run'}"])
    result = fit(cfg, progress=False)
    assert all(torch.isfinite(torch.tensor(h.train_loss)) for h in result.history)
    assert load_checkpoint(tmp_path / "run" / "best.pt")["model"]  # saved from CUDA, loads on the CPU


@pytest.mark.parametrize("weighting", [("weighting.name=auto_lambda",),
                                       ("weighting.name=auxilearn", "weighting.options={every: 1}")],
                         ids=["auto_lambda", "auxilearn"])
def test_the_meta_learned_weightings_step_in_bfloat16(tmp_path, monkeypatch, weighting):
    """Their look-ahead (``torch.func`` forwards under autocast, double backward for AuxiLearn) on CUDA."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    cfg = load_config("demo", [*OVERRIDES, "method.name=aux_head", *weighting, "train.device=cuda", "train.amp=true",
                               f"out_dir={tmp_path / 'run'}"])
    result = fit(cfg, progress=False)
    assert all(torch.isfinite(torch.tensor(h.train_loss)) for h in result.history)
    assert all(h.weighting["meta_updated"]["normal"] == 1.0 for h in result.history)


def test_an_interrupted_cuda_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    torch.use_deterministic_algorithms(True, warn_only=True)
    common = [*OVERRIDES, "method.name=aux_nas", "train.device=cuda", "train.amp=false"]
    fit(load_config("demo", [*common, f"out_dir={tmp_path / 'whole'}"]), progress=False)
    with pytest.raises(KeyboardInterrupt):
        fit(load_config("demo", [*common, f"out_dir={tmp_path / 'cut'}"]), progress=False,
            callbacks=[InterruptAtValidation(2)])
    resume_run(tmp_path / "cut", progress=False)
    a, b = (load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("whole", "cut"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5, msg=key)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_nccl_processes_train_like_one(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    overrides = [*BASE, "train.device=auto", "train.amp=false"]
    ddp = run_workers(tmp_path, "fit", [*overrides, f"out_dir={tmp_path / 'ddp-run'}"])
    single, weights = run_single(monkeypatch, [*overrides, "train.device=cuda:0", f"out_dir={tmp_path / 'one'}"])
    compare(ddp, single, {k: v.cpu() for k, v in weights.items()})
