"""A loss weighting composed with a gradient method ("auto_lambda+cagrad"): the gradient method combines the gradients
of the weighted losses; options go to the part that takes them; only meaningful pairs are accepted; it trains in
``fit`` with both parts' statistics and the meta update."""

import math

import pytest
import torch
from weighting_cases import TASKS, linear_losses

from auxnas.config import load_config
from auxnas.train import fit
from auxnas.weighting import COMPOSED_NAMES, Composed, build_weighting


def test_the_gradient_method_combines_the_weighted_losses():
    base = {"p": 1.0, "a": 2.0}
    composed = build_weighting("uncertainty+cagrad", TASKS, "p", c=0.4)
    with torch.no_grad():
        composed.loss.log_vars["a"].fill_(0.7)  # a's weight exp(-0.7), not 1
    shared, _, losses = linear_losses([1.0, 0.0], [-0.5, 1.0])
    stats = composed.backward(losses, [shared], base)
    w = composed.loss.weights()
    reference, _, plain = linear_losses([1.0, 0.0], [-0.5, 1.0])
    build_weighting("cagrad", TASKS, "p", c=0.4).backward({t: w[t].detach() * plain[t] for t in TASKS}, [reference],
                                                          base)
    assert torch.allclose(shared.grad, reference.grad)
    assert stats["weight"]["a"] == pytest.approx(math.exp(-0.7)) and set(stats) == {"weight", "grad_norm",
                                                                                     "cos_primary"}
    assert composed.loss.log_vars["a"].grad is not None  # the weight is learned through the combined gradient


def test_options_go_to_their_part_and_only_meaningful_pairs_exist():
    composed = build_weighting("auto_lambda+pcgrad", TASKS, "p", lr=0.01, seed=3)
    assert isinstance(composed, Composed) and composed.loss.lr == 0.01 and composed.needs_meta_batch
    with pytest.raises(ValueError, match="weighting.options.temperature: not an option of exactly one part"):
        build_weighting("auto_lambda+pcgrad", TASKS, "p", temperature=2.0)
    for name in ("gradnorm+cagrad", "cagrad+auto_lambda", "equal+gcs", "auto_lambda+dwa"):
        assert name not in COMPOSED_NAMES
        with pytest.raises(ValueError, match="unknown method"):
            build_weighting(name, TASKS, "p")
    with pytest.raises(ValueError, match="cannot come first"):
        Composed(build_weighting("gradnorm", TASKS, "p"), build_weighting("cagrad", TASKS, "p"))
    assert len(COMPOSED_NAMES) == 12


def test_auto_lambda_with_cagrad_trains_with_both_parts(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    cfg = load_config("demo", [
        "data.image_size=32", "data.num_train=32", "data.num_test=8", "data.val_fraction=0.25", "data.batch_size=8",
        "train.epochs=2", "tasks.primary=normal", "tasks.aux=[seg]", "method.name=aux_head",
        "weighting.name=auto_lambda+cagrad", "weighting.options={lr: 0.01, c: 0.4}", f"out_dir={tmp_path / 'run'}"])
    history = fit(cfg, progress=False).history
    stats = history[-1].weighting
    assert set(stats) == {"weight", "meta_updated", "grad_norm", "cos_primary"}
    assert stats["meta_updated"] == {"normal": 1.0} and all(w != 0.1 for w in stats["weight"].values())
