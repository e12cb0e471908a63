"""Parity of ``weighting.name=auxilearn`` with the AuxiLearn reference (``AvivNavon/AuxiLearn``).

On one tiny auxnas model (tiny_resnet, Aux-Head, normals primary, segmentation and depth auxiliary, 32 px), one
network batch and one auxiliary-set batch, and the reference's NYUv2 optimiser for the network (Adam lr 1e-4) after a
few steps, one meta update of the loss combination is made twice from the same state, for the linear and the
non-linear (3 hidden units) combination: by the reference's ``MetaOptimizer.step`` (its ``Hypergrad``: Neumann series
with 3 terms at the network's lr; SGD lr 1e-3, momentum 0.9, weight decay 1e-4; clipping at 25) and ``clamp``, and
by auxnas's meta step. Compared: the hypergradient and the combination's parameters after the update. The
reference's code is imported from its repository at run time, never copied; its hypernetwork gets auxnas's
per-task losses of the batch as one row (auxnas combines the batch's losses, the reference per-image losses: with
one row the two are the same), and its primary loss a zero term that reaches every parameter (the reference fails on
a parameter the primary's loss does not reach, the auxiliary heads; auxnas takes their gradient as zeros).

    git -C /work/.mirror/AvivNavon+AuxiLearn/repo archive HEAD auxilearn | tar -x -C /tmp/auxilearn
    python benchmarks/parity_auxilearn.py --reference /tmp/auxilearn --out benchmarks/results/parity-auxilearn.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from parity_setup import reference_args, warmed_up

from auxnas.engine.steps import meta_problem, meta_step
from auxnas.storage import write_json

OVERRIDES = [
    "data.image_size=32", "data.num_train=64", "data.num_test=8", "data.val_fraction=0.25", "data.batch_size=8",
    "data.augment=false", "tasks.primary=normal", "tasks.aux=[seg, depth]",
    "tasks.loss_weights={normal: 1.0, seg: 1.0, depth: 1.0}", "method.name=aux_head", "weighting.name=auxilearn",
    "train.optimizer=adam", "train.lr=0.0001",
]
#: network steps before the compared meta update
WARMUP_STEPS = 3


def reference_update(modules: Any, run, combine: str, batch: dict, meta: dict) -> tuple[list, list]:
    """The reference's hypergradient and combination parameters after one update, from our combination's values."""
    ours = run.state.weighting
    tasks = list(run.model.tasks)  # the primary first: the reference's main_task=0
    if combine == "linear":
        net = modules.MonoLinearHyperNet(main_task=0, input_dim=len(tasks), weight_normalization=False)
        layers = {"w": net.linear.weight}
    else:
        net = modules.MonoNonlinearHyperNet(main_task=0, input_dim=len(tasks), hidden_sizes=3,
                                            weight_normalization=False)
        layers = {"w1": net.net[0].weight, "c1": net.net[0].bias, "w2": net.net[3].weight}
    with torch.no_grad():
        for name, p in layers.items():
            p.copy_(ours.phi[name].reshape(p.shape))
    optimizer = modules.MetaOptimizer(
        torch.optim.SGD(list(net.parameters()), lr=ours.lr, momentum=ours.MOMENTUM, weight_decay=ours.weight_decay),
        hpo_lr=run.state.optimizer.param_groups[0]["lr"], truncate_iter=ours.neumann_terms,
        max_grad_norm=ours.max_grad_norm)
    model = run.model
    val_loss = model.tasks[tasks[0]].batch_loss(model(meta["image"])[tasks[0]].float(), meta)
    preds = model(batch["image"])
    row = torch.stack([model.tasks[t].batch_loss(preds[t].float(), batch) for t in tasks]).unsqueeze(0)
    params = [p for group in run.state.optimizer.param_groups for p in group["params"]]
    # the reference needs every parameter reached by the primary's loss (its Neumann series feeds None onwards):
    # a zero term makes the auxiliary heads' gradients zeros, as auxnas takes them
    val_loss = val_loss + 0.0 * sum(p.sum() for p in params)
    grads = optimizer.step(train_loss=net(row), val_loss=val_loss, parameters=params,
                           aux_params=list(net.parameters()), return_grads=True)
    net.clamp()
    return [g.flatten().tolist() for g in grads], [p.detach().flatten().tolist() for p in net.parameters()]


def compare(modules: Any, combine: str) -> dict[str, Any]:
    run, batch, meta = warmed_up(
        [*OVERRIDES, f"weighting.options={{combine: {combine}}}", f"out_dir=/tmp/auxnas-parity-auxilearn-{combine}"],
        WARMUP_STEPS)
    ref_grads, ref_params = reference_update(modules, run, combine, batch.data, meta.data)
    ours = run.state.weighting
    grads = ours.hypergradient(meta_problem(run.state, batch, meta))  # changes nothing
    meta_step(run.state, batch, meta)
    names = ["w"] if combine == "linear" else ["w1", "c1", "w2"]  # the reference's parameter order
    norm = float(torch.cat([g.flatten() for g in grads.values()]).norm())
    clip = min(1.0, ours.max_grad_norm / (norm + 1e-6))  # the reference returns its gradients clipped in place
    our_grads = [(grads[n] * clip).flatten().tolist() for n in names]
    our_params = [ours.phi[n].detach().flatten().tolist() for n in names]
    flat = [(a, b) for ra, rb in zip(ref_grads, our_grads) for a, b in zip(ra, rb)]
    return {
        "parameters": names, "hypergradient_norm_before_clipping": norm,
        "hypergradient": {"reference": ref_grads, "auxnas": our_grads},
        "params_after": {"reference": ref_params, "auxnas": our_params},
        "max_rel_gradient_diff": max(abs(a - b) / max(abs(a), 1e-12) for a, b in flat),
        "max_param_diff": max(abs(a - b) for ra, rb in zip(ref_params, our_params) for a, b in zip(ra, rb)),
    }


def main() -> None:
    args = reference_args(__doc__, "auxilearn package")
    from auxilearn import hypernet, optim  # the reference

    class Modules:
        MonoLinearHyperNet = hypernet.MonoLinearHyperNet
        MonoNonlinearHyperNet = hypernet.MonoNonlinearHyperNet
        MetaOptimizer = optim.MetaOptimizer

    result = {"reference": "AvivNavon/AuxiLearn auxilearn/ (MetaOptimizer.step, Mono*HyperNet.clamp)",
              "setting": OVERRIDES, "warmup_steps": WARMUP_STEPS, "torch": torch.__version__,
              **{combine: compare(Modules, combine) for combine in ("linear", "nonlinear")}}
    write_json(Path(args.out), result)
    print({k: {m: v[m] for m in ("max_rel_gradient_diff", "max_param_diff")} for k, v in result.items()
           if k in ("linear", "nonlinear")})


if __name__ == "__main__":
    main()
