"""Training diagnostics (``train.diagnose_every``): per-task gradients on the shared parameters and the validation
metrics with a2p links kept; they change nothing in training. And what a run's history says of a task that stopped
learning (``engine.record.stalled``)."""

import pytest

from auxnas.config import config_from_dict, replace
from auxnas.engine.record import EpochRecord, stalled
from auxnas.train import fit


def _config(tmp_path, method: str, diagnose_every: int, name: str, aux: tuple[str, ...] = ("disparity",)):
    return config_from_dict({
        "name": "t", "out_dir": str(tmp_path / name), "seed": 1,
        "data": {"image_size": 32, "num_train": 40, "num_test": 8, "val_fraction": 0.2, "batch_size": 8},
        "tasks": {"primary": "depth", "aux": list(aux)},
        "model": {"backbone": "tiny_resnet"}, "method": {"name": method},
        "train": {"epochs": 2, "diagnose_every": diagnose_every, "tensorboard": False},
    })


def test_diagnostics_change_no_result(tmp_path):
    plain = fit(_config(tmp_path, "aux_nas", 0, "plain"), progress=False)
    measured = fit(_config(tmp_path, "aux_nas", 1, "measured"), progress=False)
    assert measured.test_last == plain.test_last and measured.test_best == plain.test_best
    assert plain.history[-1].diagnostics is None
    record = measured.history[-1]
    assert set(record.diagnostics["shared_grad_norm"]) == {"depth", "disparity"}
    assert -1 <= record.diagnostics["shared_grad_cos_primary"]["disparity"] <= 1
    norms = record.diagnostics["projection_norm"]  # the zero-initialised fusion projections have grown
    assert set(norms) == {"p2a", "a2p"} and norms["p2a"] > 0 and norms["a2p"] > 0
    kept, cut = record.val_variants["a2p_kept"]["depth"], record.val["depth"]
    assert kept["num_images"] == cut["num_images"] == 8


@pytest.mark.parametrize("method", ["aux_head", "aux_g", "aux_nas"])
def test_first_step_auxiliary_gradient_reaches_only_a_shared_backbone(tmp_path, method):
    """The fusion ops start at zero: at the first step no auxiliary gradient reaches the primary branch of the
    linked methods (it arrives only as the p2a fusion weights grow), while hard sharing gets all of it."""
    result = fit(_config(tmp_path, method, 1000, method), progress=False)  # step 0 of 8 only
    norms = result.history[0].diagnostics["shared_grad_norm"]
    assert norms["depth"] > 0
    if method == "aux_head":
        assert norms["disparity"] > 0
    else:
        assert norms["disparity"] == 0
    later = result.history[1].diagnostics  # no step measured in epoch 2; linked branches' projection norms
    assert set(later) == (set() if method == "aux_head" else {"projection_norm"})


def test_single_task_has_no_shared_parameters_to_diagnose(tmp_path):
    cfg = _config(tmp_path, "single", 1, "single", aux=())
    assert fit(cfg, progress=False).history[-1].diagnostics == {}


def test_fusion_init_lets_the_auxiliary_gradient_reach_the_primary_from_the_first_step(tmp_path):
    cfg = replace(_config(tmp_path, "aux_nas", 1000, "init"), method={"fusion_init": 0.5})
    norms = fit(cfg, progress=False).history[0].diagnostics["shared_grad_norm"]
    assert norms["disparity"] > 0


def _history(losses: list[float]) -> list[EpochRecord]:
    return [EpochRecord(epoch=i + 1, train_loss=v, train_task_losses={"depth": v}, weighting={}, val={})
            for i, v in enumerate(losses)]


def test_a_task_whose_loss_stops_falling_after_the_first_epochs_stalled():
    falling = [2.0, 1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5]
    flat = [2.0, 1.05, 1.04, 1.05, 1.03, 1.04, 1.06, 1.03, 1.05, 1.04, 1.03, 1.04]
    rising = falling[:6] + [1.0, 1.02, 1.03, 1.02, 1.03, 1.03]  # learned, then died (Aux-Head seed 3 at SGD 0.1)
    assert not stalled(_history(falling), "depth")
    assert stalled(_history(flat), "depth") and stalled(_history(rising), "depth")
    assert not stalled(_history(flat[:9]), "depth")  # fewer than 10 epochs: no judgement
    assert not stalled(_history(flat), "seg")  # a task the history has no loss of
